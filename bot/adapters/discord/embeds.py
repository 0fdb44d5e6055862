"""How the core's messages look on Discord: embeds and plain messages, each within
Discord's limits (Message resource → Embed limits; Create Message → content), cut
only where a reader would not notice.

``import discord`` below is the discord.py library (absolute import), not this package.
"""

from __future__ import annotations

import discord

from bot.core.events import RoundPost, Summary, ThreadPost

# Discord's limits (Message resource → Embed limits; Create Message → content)
MESSAGE_LIMIT = 2000  # characters of content per message
TITLE_LIMIT, DESCRIPTION_LIMIT = 256, 4096
FIELD_VALUE_LIMIT, FIELDS_PER_EMBED = 1024, 25  # field names are ours and short
EMBEDS_TOTAL = 6000  # characters across all embeds of one message
EMBEDS_PER_MESSAGE = 10
BUTTON_HINT = "Or press “Share your thoughts” under the round's message to answer in a form."


def escape(text: str) -> str:
    """User text in our layout: no markdown that breaks it (mentions are off anyway)."""
    return discord.utils.escape_markdown(text, as_needed=False)


def _safe_cut(text: str, cut: int) -> int:
    """Move ``cut`` left until the part before it does not end inside an escape (``\\x``)."""
    while cut > 1:
        run = len(text[:cut]) - len(text[:cut].rstrip("\\"))
        if run % 2 == 0:
            break
        cut -= 1
    return cut


def chunks(text: str, limit: int) -> list[str]:
    """Split long text at paragraph, line or word breaks, never losing a character and
    never ending a part on the lone backslash of an escape sequence."""
    out: list[str] = []
    while len(text) > limit:
        cut = -1
        for sep in ("\n\n", "\n", " "):
            found = text.rfind(sep, 0, limit + 1)
            if found > limit // 2:
                cut = found
                break
        if cut <= 0:
            cut = limit
        cut = _safe_cut(text, cut)
        out.append(text[:cut].rstrip("\n"))
        rest = text[cut:]
        text = rest[1:] if rest[:1] == " " else rest.lstrip("\n")
    if text or not out:
        out.append(text)
    return out


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def how_to_answer(reads_replies: bool, anonymous_allowed: bool, questions: int = 2) -> str:
    """The round's instructions: never invite an answer the bot cannot read."""
    if reads_replies:
        numbering = " (start with `2:` to answer question 2)" if questions > 1 else ""
        text = (
            f"Reply in this message's thread{numbering}, press **Share your thoughts**, "
            "or use `/discuss answer`."
        )
    else:
        text = (
            "Press **Share your thoughts** below or use `/discuss answer` to answer; "
            "the bot does not read replies in the thread, so they are not collected."
        )
    if anonymous_allowed:
        text += " You can choose to answer anonymously."
    return text


class _Packer:
    """Fills embeds and messages in order, each within Discord's embed limits."""

    def __init__(self, reserve: int):
        self.messages: list[list[discord.Embed]] = [[]]
        self.reserve = reserve  # kept free in the first message (its footer)

    def room(self) -> int:
        used = sum(len(e) for e in self.messages[-1])
        return EMBEDS_TOTAL - used - (self.reserve if len(self.messages) == 1 else 0)

    def new_embed(self, size: int) -> discord.Embed:
        full = len(self.messages[-1]) >= EMBEDS_PER_MESSAGE or self.room() < size
        if full and self.messages[-1]:
            self.messages.append([])
        embed = discord.Embed(colour=discord.Colour.blurple())
        self.messages[-1].append(embed)
        return embed

    def field(self, name: str, value: str) -> None:
        current = self.messages[-1][-1] if self.messages[-1] else None
        size = len(name) + len(value)
        if current is None or len(current.fields) >= FIELDS_PER_EMBED or self.room() < size:
            current = self.new_embed(size)
        current.add_field(name=name, value=value, inline=False)


def round_messages(post: RoundPost, reads_replies: bool = True) -> list[list[discord.Embed]]:
    """A round as one or more messages of embeds: the summary in descriptions, one field
    per question (a question longer than a field continues in the next), the instructions
    last; nothing is cut, and every message stays within Discord's limits."""
    prompt = post.prompt
    title = shorten(("Preview: " if post.preview else "") + prompt.title, TITLE_LIMIT)
    # the head embed (title, a full description, footer) must fit in 6,000 characters
    footer = shorten(
        f"Source: {prompt.source}", EMBEDS_TOTAL - DESCRIPTION_LIMIT - TITLE_LIMIT - 64
    )
    if not post.preview:
        footer += f" · {post.round_key}"  # lets find_post recognise the round after a crash
    packer = _Packer(reserve=len(footer))
    parts = chunks(escape(prompt.summary), DESCRIPTION_LIMIT) if prompt.summary else []
    head = packer.new_embed(len(title) + (len(parts[0]) if parts else 0))
    head.title, head.url = title, prompt.url
    if parts:
        head.description = parts[0]
    for part in parts[1:]:
        packer.new_embed(len(part)).description = part
    for i, (text, _) in enumerate(prompt.questions, 1):
        for j, piece in enumerate(chunks(escape(text), FIELD_VALUE_LIMIT)):
            packer.field(f"Question {i}" + (" (continued)" if j else ""), piece)
    packer.field(
        "How to answer", how_to_answer(reads_replies, post.anonymous_allowed, len(prompt.questions))
    )
    packer.messages[0][-1].set_footer(text=footer)
    return packer.messages


def summary_texts(summary: Summary) -> list[str]:
    people = f"{summary.respondents} {'person' if summary.respondents == 1 else 'people'}"
    verb = "shared their thoughts" if summary.final else "shared so far"
    head = "Digest" if summary.final else "Results so far"
    lines = [f"**{head} — {escape(summary.title)}**: {people} {verb}."]
    for group in summary.groups:
        label = f"Q{group.number}. {group.question}" if group.number else (group.question or "")
        count = f" ({len(group.answers)})" if summary.show_counts else ""
        lines += ["", f"**{escape(label)}**{count}"]
        for answer in group.answers:
            who = f"**{escape(answer.author)}**: " if answer.author else "*(anonymous)* "
            late = " *(late)*" if answer.late else ""
            lines.append(f"• {who}{escape(answer.text)}{late}")
    if summary.note:
        lines += ["", escape(summary.note)]
    return chunks("\n".join(lines), MESSAGE_LIMIT)


def thread_post_texts(post: ThreadPost) -> list[str]:
    text = escape(post.text)
    if post.quote is not None:
        text += "\n" + "\n".join("> " + escape(line) for line in post.quote.splitlines() or [""])
    return chunks(text, MESSAGE_LIMIT)
