"""Block Kit rendering for Slack: rounds, digests, thread posts, replies and the modal.

Text travels as the person typed it: the adapter decodes Slack's ``&amp; &lt; &gt;`` on
the way in (``unescape``) and everything a user typed is escaped exactly once here
(``escape``), so echoed text can never ping ``@channel``/``@here``/users or break a block.

Nothing is cut silently. Long text is split across blocks and messages within Block
Kit's limits (https://docs.slack.dev/reference/block-kit/blocks/section-block: section
text 3,000 characters; .../header-block: 150; https://docs.slack.dev/reference/block-kit/blocks:
50 blocks a message). Where a view has to stop short (a header, a modal label, the five
replies a command may send), it says what was left out and where to see it.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from bot.core import render
from bot.core.events import PromptView, Reply, RoundPost, Summary, ThreadPost

SHARE_ACTION = "roundtable_share"
MODAL_CALLBACK = "roundtable_answers"
ANSWER_ACTION = "answer"
ANON_BLOCK = "anon"
ANON_ACTION = "anonymous"
ROUND_EVENT = "roundtable_round"
POST_EVENT = "roundtable_post"

SECTION_LIMIT = 3000
HEADER_LIMIT = 150
LABEL_LIMIT = 2000
CONTEXT_LIMIT = 3000
BLOCKS_PER_MESSAGE = 50
# Slack refuses some messages well under 50 × 3,000 characters (``msg_blocks_too_long``,
# slackapi/bolt-js#2509), so a message also stops at this much block text.
MESSAGE_CHARS = 12_000
TEXT_LIMIT = 3900  # ``text`` of a plain reply: Slack advises staying under 4,000
# A response_url takes at most 5 responses (https://docs.slack.dev/interactivity/handling-user-interaction)
RESPONSES_PER_COMMAND = 5

Block = dict[str, Any]

_BROADCAST = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)
_ENTITY = re.compile(r"&(amp|lt|gt);")
_DECODED = {"amp": "&", "lt": "<", "gt": ">"}


def escape(text: str) -> str:
    """Make user text inert in mrkdwn: no ``<!channel>``/``<@U…>``/links, no ``@here``.

    Slack only needs ``& < >`` escaped (https://docs.slack.dev/messaging/formatting-message-text#escaping);
    the zero-width joiner after ``@`` also keeps a literal ``@channel`` from being linked
    should ``link_names`` ever be turned on.
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub(lambda m: "@\u2060" + m.group(1), text)


def unescape(text: str) -> str:
    """What the person typed: Slack sends message and slash-command text with ``&``,
    ``<`` and ``>`` encoded as ``&amp;``, ``&lt;``, ``&gt;`` (one pass, so a typed
    ``&lt;`` arrives as ``&amp;lt;`` and comes back as ``&lt;``)."""
    return _ENTITY.sub(lambda m: _DECODED[m.group(1)], text)


def truncate(text: str, limit: int) -> str:
    """For plain text whose cut is said out loud by the caller (labels, titles)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _safe_cut(text: str, at: int) -> int:
    """Move a cut left so it never lands inside an ``&amp;``-style entity."""
    amp = text.rfind("&", max(0, at - 4), at)
    if amp != -1 and ";" not in text[amp:at]:
        return amp or at
    return at


def split_text(text: str, limit: int) -> list[str]:
    """Escaped mrkdwn in pieces of at most ``limit``: at a line break, else a space, else
    anywhere but inside an entity. Every character ends up in some piece."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit + 1)
        if cut < limit // 2:
            cut = text.rfind(" ", 0, limit + 1)
        if cut < limit // 2:
            cut = _safe_cut(text, limit)
        head, text = text[:cut], text[cut:]
        if text[:1] in ("\n", " "):
            text = text[1:]
        if head.strip():
            pieces.append(head)
    if text.strip() or not pieces:
        pieces.append(text)
    return pieces


def fallback(text: str, limit: int = SECTION_LIMIT) -> str:
    """Notification text for a message whose blocks carry everything: escaped, cut safely."""
    text = escape(text)
    if len(text) <= limit:
        return text
    return text[: _safe_cut(text, limit - 1)] + "…"


def plain(text: str, limit: int = SECTION_LIMIT) -> dict[str, Any]:
    return {"type": "plain_text", "text": truncate(text, limit), "emoji": True}


def section(mrkdwn: str) -> Block:
    """One section; callers split longer text first (``sections``)."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


def sections(mrkdwn: str) -> list[Block]:
    return [section(piece) for piece in split_text(mrkdwn, SECTION_LIMIT)]


def context(mrkdwn: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn}]}


def contexts(mrkdwn: str) -> list[Block]:
    return [context(piece) for piece in split_text(mrkdwn, CONTEXT_LIMIT)]


def header(title: str) -> list[Block]:
    """A header block; a title over 150 characters is shortened there and shown whole
    right below it, so nothing is lost."""
    if len(title) <= HEADER_LIMIT:
        return [{"type": "header", "text": plain(title, HEADER_LIMIT)}]
    return [{"type": "header", "text": plain(title, HEADER_LIMIT)}, *sections(f"*{escape(title)}*")]


def link(url: str, label: str) -> str:
    safe_url = url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")
    return f"<{safe_url}|{escape(label)}>"


def quote(text: str) -> str:
    return "\n".join("> " + escape(line) for line in (text.splitlines() or [""]))


def block_text(block: Block) -> int:
    """How much text a block carries (for the per-message budget)."""
    if block.get("type") == "context":
        return sum(len(e.get("text", "")) for e in block.get("elements", []))
    return len((block.get("text") or {}).get("text", ""))


def _pack(lines: list[str], first: str | None = None) -> list[Block]:
    """Lines packed into as few sections as fit; a line longer than a section is split."""
    out: list[Block] = []
    current = first or ""
    for line in lines:
        if current and len(current) + 1 + len(line) <= SECTION_LIMIT:
            current = f"{current}\n{line}"
            continue
        if current:
            out.append(section(current))
        pieces = split_text(line, SECTION_LIMIT)
        out.extend(section(p) for p in pieces[:-1])
        current = pieces[-1]
    if current:
        out.append(section(current))
    return out


# ---- rounds ---------------------------------------------------------------------------


def round_blocks(post: RoundPost) -> list[Block]:
    """Header, summary, source link, numbered questions, and the Share button.

    A long summary or question list takes as many sections as it needs, so the last
    questions are never lost to the 3,000-character section limit.
    """
    blocks = list(_prompt_blocks(post.prompt, post.preview))
    if not post.preview:
        blocks.append(
            {
                "type": "actions",
                "block_id": "roundtable_actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": SHARE_ACTION,
                        "text": plain("Share your thoughts"),
                        "style": "primary",
                        "value": str(post.round_id),
                    }
                ],
            }
        )
    hint = "Reply in this thread to answer"
    hint += "; start with `2:` to answer question 2." if len(post.prompt.questions) > 1 else "."
    if post.anonymous_allowed:
        hint += " Answer anonymously with the button or `/discuss answer --anonymous <text>`."
    blocks.append(context(hint))
    return blocks


@functools.lru_cache(maxsize=64)
def _prompt_blocks(prompt: PromptView, preview: bool) -> tuple[Block, ...]:
    """The blocks every channel's post of one prompt shares (built once per fan-out;
    the blocks are never changed after they are built)."""
    title = f"Preview: {prompt.title}" if preview else prompt.title
    source = link(prompt.url, prompt.source) if prompt.url else escape(prompt.source)
    lines = []
    for i, (text, origin) in enumerate(prompt.questions, 1):
        tag = " _(from the article)_" if origin == "article" else ""
        lines.append(f"{i}. {escape(text)}{tag}")
    return (
        *header(title),
        *sections(escape(prompt.summary)),
        *contexts(f"Source: {source}"),
        *_pack(lines, "*Questions*"),
    )


def round_metadata(post: RoundPost) -> dict[str, Any]:
    """Message metadata that lets ``find_post`` recognise the round after a crash."""
    return {
        "event_type": ROUND_EVENT,
        "event_payload": {"round_key": post.round_key, "round_id": post.round_id},
    }


def post_metadata(key: str) -> dict[str, Any]:
    return {"event_type": POST_EVENT, "event_payload": {"post_key": key}}


# ---- summaries and thread posts -------------------------------------------------------


@dataclass
class _Piece:
    block: Block
    completes: int = 0  # answers whose last line is in this block


def summary_messages(summary: Summary, max_messages: int | None = None) -> list[list[Block]]:
    """The summary as messages of at most 50 blocks (and ``MESSAGE_CHARS`` of text).

    Every answer is shown in full, split across sections when long. With
    ``max_messages`` (a command may reply only five times) the last message says how
    many answers did not fit and where they can be read.
    """
    people = f"{summary.respondents} {'person' if summary.respondents == 1 else 'people'}"
    if summary.final:
        head = f"Digest — {summary.title}"
        sub = f"{people} shared their thoughts."
    else:
        head = f"Results so far — {summary.title}"
        sub = f"{people} shared so far."
    pieces = [_Piece(b) for b in header(head)] + [_Piece(context(sub))]
    total = 0
    for group in summary.groups:
        label = (
            f"Q{group.number}. {group.question}" if group.number else (group.question or "Other")
        )
        label = f"*{escape(label)}*"
        if summary.show_counts:
            label += f" ({len(group.answers)})"
        pieces.extend(_answer_sections(label, [_answer_line(a) for a in group.answers]))
        total += len(group.answers)
    if summary.note:
        pieces.extend(_Piece(b) for b in contexts(escape(summary.note)))
    messages = _paginate(pieces, f"{head} (continued)")
    if max_messages is None or len(messages) <= max_messages:
        return [[p.block for p in m] for m in messages]
    return _cut_to(messages, max_messages, total, summary.final)


def _answer_sections(label: str, lines: list[str]) -> list[_Piece]:
    """Sections under 3,000 characters each; a long answer continues in the next one."""
    out: list[_Piece] = []
    current, done = label, 0
    for line in lines:
        if len(current) + 1 + len(line) <= SECTION_LIMIT:
            current, done = f"{current}\n{line}", done + 1
            continue
        out.append(_Piece(section(current), done))
        parts = split_text(line, SECTION_LIMIT)
        out.extend(_Piece(section(p)) for p in parts[:-1])
        current, done = parts[-1], 1
    out.append(_Piece(section(current), done))
    return out


def _paginate(pieces: list[_Piece], continued: str) -> list[list[_Piece]]:
    """Blocks into messages within the block and text budgets; later messages open
    with a note that they continue the first."""
    messages: list[list[_Piece]] = [[]]
    size = 0
    for piece in pieces:
        current = messages[-1]
        length = block_text(piece.block)
        if current and (len(current) >= BLOCKS_PER_MESSAGE or size + length > MESSAGE_CHARS):
            note = _Piece(context(escape(continued)))
            messages.append([note])
            size = block_text(note.block)
            current = messages[-1]
        current.append(piece)
        size += length
    return messages


def _cut_to(messages: list[list[_Piece]], limit: int, total: int, final: bool) -> list[list[Block]]:
    """The first ``limit`` messages; the last ends by saying how many answers are not
    shown and where every one of them can be read."""
    kept = [list(m) for m in messages[:limit]]
    last = kept[-1]
    note_room = 1
    while len(last) + note_room > BLOCKS_PER_MESSAGE or (
        sum(block_text(p.block) for p in last) > MESSAGE_CHARS - 300 and len(last) > 1
    ):
        last.pop()
    shown = sum(p.completes for m in kept for p in m)
    left = total - shown
    where = (
        "Every answer is in the digest posted in the round's thread."
        if final
        else "Every answer is saved and shown in full in the digest when the round closes."
    )
    note = (
        f"_{left} more answer{'s' * (left != 1)} did not fit here "
        f"(Slack allows {limit} replies to a command). {where}_"
    )
    last.append(_Piece(context(note)))
    return [[p.block for p in m] for m in kept]


def _answer_line(answer) -> str:
    who = f"*{escape(answer.author)}*: " if answer.author else "_(anonymous)_ "
    late = " _(late)_" if answer.late else ""
    text = escape(answer.text).replace("\n", "\n    ")
    return f"• {who}{text}{late}"


def thread_post_blocks(post: ThreadPost) -> list[Block]:
    text = escape(post.text)
    if post.quote is not None:
        text = f"{text}\n{quote(post.quote)}"
    return sections(text)


# ---- replies and the modal ------------------------------------------------------------


def reply_payloads(
    reply: Reply | Summary | RoundPost, max_messages: int | None = None
) -> list[dict[str, Any]]:
    """``text``/``blocks`` for a reply to the person who acted, as one or more messages."""
    if isinstance(reply, Reply):
        text = escape(reply.text)
        code = "\n  " in text  # aligned listings (help, sets) keep their layout
        room = TEXT_LIMIT - (6 if code else 0) - 120
        chunks = split_text(text, room)
        if max_messages is not None and len(chunks) > max_messages:
            left = sum(len(c) for c in chunks[max_messages:])
            chunks = chunks[:max_messages]
            chunks[-1] += (
                f"\n… about {left:,} more characters did not fit in the {max_messages} "
                "replies Slack allows a command."
            )
        return [{"text": f"```{c}```" if code else c} for c in chunks]
    if isinstance(reply, Summary):
        text = fallback(render.summary_text(reply))
        return [
            {"text": text if i == 0 else "Results (continued)", "blocks": m}
            for i, m in enumerate(summary_messages(reply, max_messages))
        ]
    return [{"text": escape(reply.prompt.title), "blocks": round_blocks(reply)}]


def reply_payload(reply: Reply | Summary | RoundPost) -> dict[str, Any]:
    """The first message of ``reply_payloads`` (kept for callers that send one)."""
    return reply_payloads(reply)[0]


def _label(n: int, question: str) -> dict[str, Any]:
    """An input label (2,000 characters at most); a cut says where the rest is."""
    text = f"{n}. {question}"
    if len(text) > LABEL_LIMIT:
        more = " … (the full question is in the round's post)"
        text = text[: LABEL_LIMIT - len(more)] + more
    return plain(text, LABEL_LIMIT)


def answer_modal(
    round_id: int, channel_id: str, title: str, questions: list[str], anonymous_allowed: bool
) -> dict[str, Any]:
    """A text area per question and, when allowed, an *answer anonymously* checkbox."""
    blocks: list[Block] = [*contexts(escape(title))]
    for n, question in enumerate(questions, 1):
        blocks.append(
            {
                "type": "input",
                "block_id": f"q{n}",
                "optional": True,
                "label": _label(n, question),
                "element": {
                    "type": "plain_text_input",
                    "action_id": ANSWER_ACTION,
                    "multiline": True,
                    "max_length": 3000,
                },
            }
        )
    if anonymous_allowed:
        blocks.append(
            {
                "type": "input",
                "block_id": ANON_BLOCK,
                "optional": True,
                "label": plain("Anonymity"),
                "element": {
                    "type": "checkboxes",
                    "action_id": ANON_ACTION,
                    "options": [
                        {
                            "text": plain("Answer anonymously"),
                            "description": plain("Stored without your name; re-posted by the bot."),
                            "value": "anonymous",
                        }
                    ],
                },
            }
        )
    return {
        "type": "modal",
        "callback_id": MODAL_CALLBACK,
        "title": plain("Share your thoughts", 24),
        "submit": plain("Send", 24),
        "close": plain("Cancel", 24),
        "private_metadata": json.dumps({"round": round_id, "channel": channel_id}),
        "blocks": blocks,
    }


def modal_answers(view: dict[str, Any]) -> tuple[dict[int, str], bool]:
    """Read the answers (by question number) and the anonymity box from a submitted view."""
    values = view.get("state", {}).get("values", {})
    answers: dict[int, str] = {}
    for block_id, actions in values.items():
        if block_id.startswith("q") and block_id[1:].isdigit():
            answers[int(block_id[1:])] = (actions.get(ANSWER_ACTION) or {}).get("value") or ""
    selected = (values.get(ANON_BLOCK, {}).get(ANON_ACTION) or {}).get("selected_options") or []
    return answers, any(o.get("value") == "anonymous" for o in selected)


def error_block(view: dict[str, Any]) -> str:
    """The input block a refusal is shown under (``response_action: errors`` needs one):
    the first question answered, else the first input of the form."""
    values = view.get("state", {}).get("values", {})
    answered = sorted(
        (int(b[1:]), b)
        for b, actions in values.items()
        if b.startswith("q")
        and b[1:].isdigit()
        and ((actions.get(ANSWER_ACTION) or {}).get("value") or "").strip()
    )
    if answered:
        return answered[0][1]
    inputs = [b.get("block_id") for b in view.get("blocks", []) if b.get("type") == "input"]
    return next((b for b in inputs if b), "q1")
