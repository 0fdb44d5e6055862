"""Block Kit rendering for Slack: rounds, digests, thread posts, replies and the modal.

Everything a user typed is escaped here (``escape``), so echoed text can never ping
``@channel``/``@here``/users or break a block. Limits from Slack's Block Kit reference:
3000 characters per section, 150 per header, 2000 per input label, 50 blocks a message.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bot.core import render
from bot.core.events import Reply, RoundPost, Summary, ThreadPost

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
BLOCKS_PER_MESSAGE = 45  # under Slack's 50, leaving room for a header and a note

Block = dict[str, Any]

_BROADCAST = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)


def escape(text: str) -> str:
    """Make user text inert in mrkdwn: no ``<!channel>``/``<@U…>``/links, no ``@here``.

    Slack only needs ``& < >`` escaped; the zero-width joiner after ``@`` also keeps a
    literal ``@channel`` from being linked should ``link_names`` ever be turned on.
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub(lambda m: "@\u2060" + m.group(1), text)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain(text: str, limit: int = SECTION_LIMIT) -> dict[str, Any]:
    return {"type": "plain_text", "text": truncate(text, limit), "emoji": True}


def section(mrkdwn: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(mrkdwn, SECTION_LIMIT)}}


def context(mrkdwn: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(mrkdwn, 3000)}]}


def link(url: str, label: str) -> str:
    safe_url = url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")
    return f"<{safe_url}|{escape(label)}>"


def quote(text: str) -> str:
    return "\n".join("> " + escape(line) for line in (text.splitlines() or [""]))


# ---- rounds ---------------------------------------------------------------------------


def round_blocks(post: RoundPost) -> list[Block]:
    """Header, summary, source link, numbered questions, and the Share button."""
    prompt = post.prompt
    title = f"Preview: {prompt.title}" if post.preview else prompt.title
    source = link(prompt.url, prompt.source) if prompt.url else escape(prompt.source)
    lines = ["*Questions*"]
    for i, (text, origin) in enumerate(prompt.questions, 1):
        tag = " _(from the article)_" if origin == "article" else ""
        lines.append(f"{i}. {escape(text)}{tag}")
    blocks: list[Block] = [
        {"type": "header", "text": plain(title, HEADER_LIMIT)},
        section(escape(prompt.summary)),
        context(f"Source: {source}"),
        section("\n".join(lines)),
    ]
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


def round_metadata(post: RoundPost) -> dict[str, Any]:
    """Message metadata that lets ``find_post`` recognise the round after a crash."""
    return {
        "event_type": ROUND_EVENT,
        "event_payload": {"round_key": post.round_key, "round_id": post.round_id},
    }


def post_metadata(key: str) -> dict[str, Any]:
    return {"event_type": POST_EVENT, "event_payload": {"post_key": key}}


# ---- summaries and thread posts -------------------------------------------------------


def summary_messages(summary: Summary) -> list[list[Block]]:
    """The summary as one or more messages of at most ``BLOCKS_PER_MESSAGE`` blocks."""
    people = f"{summary.respondents} {'person' if summary.respondents == 1 else 'people'}"
    if summary.final:
        head = f"Digest — {summary.title}"
        sub = f"{people} shared their thoughts."
    else:
        head = f"Results so far — {summary.title}"
        sub = f"{people} shared so far."
    blocks: list[Block] = [{"type": "header", "text": plain(head, HEADER_LIMIT)}, context(sub)]
    for group in summary.groups:
        label = (
            f"Q{group.number}. {group.question}" if group.number else (group.question or "Other")
        )
        label = f"*{escape(label)}*"
        if summary.show_counts:
            label += f" ({len(group.answers)})"
        blocks.extend(_chunked_sections(label, [_answer_line(a) for a in group.answers]))
    if summary.note:
        blocks.append(context(escape(summary.note)))
    return [blocks[i : i + BLOCKS_PER_MESSAGE] for i in range(0, len(blocks), BLOCKS_PER_MESSAGE)]


def _answer_line(answer) -> str:
    who = f"*{escape(answer.author)}*: " if answer.author else "_(anonymous)_ "
    late = " _(late)_" if answer.late else ""
    text = escape(answer.text).replace("\n", "\n    ")
    return f"• {who}{text}{late}"


def _chunked_sections(label: str, lines: list[str]) -> list[Block]:
    """Sections under 3000 characters each; a very long answer is cut, never dropped whole."""
    out: list[Block] = []
    current = label
    for line in lines:
        line = truncate(line, SECTION_LIMIT - 100)
        if len(current) + 1 + len(line) > SECTION_LIMIT:
            out.append(section(current))
            current = line
        else:
            current = f"{current}\n{line}"
    out.append(section(current))
    return out


def thread_post_blocks(post: ThreadPost) -> list[Block]:
    text = escape(post.text)
    if post.quote is not None:
        text = f"{text}\n{quote(post.quote)}"
    return [section(text)]


# ---- replies and the modal ------------------------------------------------------------


def reply_payload(reply: Reply | Summary | RoundPost) -> dict[str, Any]:
    """``text``/``blocks`` for a reply to the person who acted (``respond``/postEphemeral)."""
    if isinstance(reply, Reply):
        text = escape(reply.text)
        if "\n  " in text:  # aligned listings (help, sets) keep their layout
            text = f"```{text}```"
        return {"text": truncate(text, 3900)}
    if isinstance(reply, Summary):
        return {
            "text": escape(render.summary_text(reply))[:3000],
            "blocks": summary_messages(reply)[0],
        }
    return {"text": escape(reply.prompt.title), "blocks": round_blocks(reply)}


def answer_modal(
    round_id: int, channel_id: str, title: str, questions: list[str], anonymous_allowed: bool
) -> dict[str, Any]:
    """A text area per question and, when allowed, an *answer anonymously* checkbox."""
    blocks: list[Block] = [context(escape(title))]
    for n, question in enumerate(questions, 1):
        blocks.append(
            {
                "type": "input",
                "block_id": f"q{n}",
                "optional": True,
                "label": plain(f"{n}. {question}", LABEL_LIMIT),
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
