"""Plain-text rendering of outgoing messages: the console's look, and every adapter's
fallback text (Slack notification text, logs)."""

from __future__ import annotations

import textwrap

from bot.core.events import PromptView, RoundPost, Summary, ThreadPost

WIDTH = 78


def prompt_text(prompt: PromptView) -> str:
    lines = [prompt.title, f"Source: {prompt.source}" + (f" — {prompt.url}" if prompt.url else "")]
    lines.append("")
    lines.extend(textwrap.wrap(prompt.summary, WIDTH))
    lines.append("")
    lines.append("Questions:")
    for i, (text, origin) in enumerate(prompt.questions, 1):
        tag = "from the article" if origin == "article" else "ours"
        wrapped = textwrap.wrap(f"{i}. {text} ({tag})", WIDTH - 2, subsequent_indent="   ")
        lines.extend("  " + w for w in wrapped)
    return "\n".join(lines)


def round_text(post: RoundPost) -> str:
    head = "Preview" if post.preview else f"Round {post.round_id}"
    bar = f"== {head} · {post.channel} "
    hint = "Reply to share your thoughts"
    hint += '; start with "2:" to answer question 2.' if len(post.prompt.questions) > 1 else "."
    if post.anonymous_allowed:
        hint += "\nTo answer anonymously: /discuss answer --anonymous <text>"
    return "\n".join([bar + "=" * max(3, WIDTH - len(bar)), prompt_text(post.prompt), "", hint])


def summary_text(summary: Summary) -> str:
    people = f"{summary.respondents} {'person' if summary.respondents == 1 else 'people'}"
    if summary.final:
        head = f"Digest — {summary.title}: {people} shared their thoughts."
    else:
        head = f"Results so far — {summary.title}: {people} shared."
    lines = [head]
    for group in summary.groups:
        label = (
            f"Q{group.number}. {group.question}" if group.number else (group.question or "Other")
        )
        if summary.show_counts:
            label += f" ({len(group.answers)})"
        lines.append("")
        lines.append(label)
        for answer in group.answers:
            who = f"{answer.author}: " if answer.author else "(anonymous) "
            late = " [late]" if answer.late else ""
            lines.append(f"  - {who}{answer.text}{late}")
    if summary.note:
        lines.extend(["", summary.note])
    return "\n".join(lines)


def thread_post_text(post: ThreadPost) -> str:
    if post.quote is None:
        return post.text
    return f"{post.text}\n> " + "\n> ".join(post.quote.splitlines() or [""])
