"""The ``/discuss`` command grammar, parsed once here for every platform.

Adapters pass the text after ``/discuss`` (the console passes the whole line); the
parser returns a ``Command`` or raises ``CommandError`` with a message fit for users.
"""

from __future__ import annotations

import difflib
import shlex
from dataclasses import dataclass, field

PREFIX = "/discuss"
# The last line of the help; an adapter that cannot read thread replies replaces it.
THREAD_HINT = "Or simply reply in the round's thread to share your thoughts."


@dataclass(frozen=True)
class CommandSpec:
    name: str
    usage: str
    summary: str
    admin: bool = False


SPECS: tuple[CommandSpec, ...] = (
    CommandSpec("help", "help", "list the commands"),
    CommandSpec(
        "now", "now [PROMPT_ID]", "open a round here now (closes the open one first)", True
    ),
    CommandSpec(
        "answer",
        "answer [N] [--anonymous] <text>",
        "answer the open round, optionally question N, optionally anonymously",
    ),
    CommandSpec("results", "results", "show the answers of the open round so far"),
    CommandSpec("next", "next", "which prompt comes next here, and when"),
    CommandSpec("sets", "sets", "list the live prompt sets, and any errors in the files", True),
    CommandSpec("reload", "reload", "re-read the prompt sets and config now", True),
    CommandSpec("preview", "preview [PROMPT_ID]", "show a prompt as a round would post it"),
    CommandSpec(
        "withdraw", "withdraw", "remove your answers (named and anonymous) from the open round"
    ),
    CommandSpec(
        "forget-me",
        "forget-me [confirm]",
        "delete all your answers here (named; anonymous ones in open rounds)",
    ),
    CommandSpec("close", "close", "close the open round now and post its digest", True),
    CommandSpec("skip", "skip", "skip the next scheduled round here", True),
    CommandSpec("pause", "pause", "pause scheduled rounds here", True),
    CommandSpec("resume", "resume", "resume scheduled rounds here", True),
)
SPEC_BY_NAME = {s.name: s for s in SPECS}


class CommandError(ValueError):
    """A user typed something we cannot run; the message says what to type instead."""


@dataclass(frozen=True)
class Command:
    name: str
    prompt_id: str | None = None
    question: int | None = None
    anonymous: bool = False
    text: str = ""
    args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def spec(self) -> CommandSpec:
        return SPEC_BY_NAME[self.name]


def is_command(line: str) -> bool:
    """True when a console line is a ``/discuss`` command rather than an answer."""
    stripped = line.lstrip()
    return stripped == PREFIX or stripped.startswith(PREFIX + " ")


def parse(text: str) -> Command:
    """Parse ``now intro-article`` or ``/discuss now intro-article``."""
    body = text.strip()
    if body == PREFIX or body.startswith(PREFIX + " "):
        body = body[len(PREFIX) :].strip()
    if not body:
        return Command("help")
    name, _, rest = body.partition(" ")
    name = name.lower()
    rest = rest.strip()
    if name not in SPEC_BY_NAME:
        close = difflib.get_close_matches(name, list(SPEC_BY_NAME), n=1, cutoff=0.5)
        hint = f" Did you mean `/discuss {close[0]}`?" if close else ""
        raise CommandError(
            f"Unknown command `{name}`.{hint} Type `/discuss help` to see every command."
        )
    if name == "answer":
        return _parse_answer(rest)
    if name in ("now", "preview"):
        parts = _split(rest)
        if len(parts) > 1:
            raise CommandError(f"Usage: /discuss {SPEC_BY_NAME[name].usage}")
        return Command(name, prompt_id=parts[0] if parts else None)
    if name == "forget-me" and rest.lower() in ("", "confirm"):
        return Command(name, args=(rest.lower(),) if rest else ())
    if rest:
        raise CommandError(
            f"`/discuss {name}` takes no arguments. Usage: /discuss {SPEC_BY_NAME[name].usage}"
        )
    return Command(name)


def _split(rest: str) -> list[str]:
    try:
        return shlex.split(rest)
    except ValueError:
        return rest.split()


def _parse_answer(rest: str) -> Command:
    question: int | None = None
    anonymous = False
    words = rest.split(" ")
    # Leading tokens may be a question number and/or --anonymous, in any order.
    while words:
        head = words[0]
        if head == "":
            words.pop(0)
        elif head in ("--anonymous", "--anon", "-a") and not anonymous:
            anonymous = True
            words.pop(0)
        elif head.isdigit() and question is None:
            question = int(head)
            words.pop(0)
        else:
            break
    text = " ".join(words).strip()
    return Command("answer", question=question, anonymous=anonymous, text=text)


def split_numbered(text: str) -> tuple[int | None, str]:
    """``"2: teams need room"`` → ``(2, "teams need room")``; otherwise ``(None, text)``."""
    head, sep, tail = text.partition(":")
    head = head.strip().lstrip("Qq#")
    if sep and head.isdigit() and len(head) <= 2:
        return int(head), tail.strip()
    return None, text.strip()


def help_text(*, is_admin: bool) -> str:
    width = max(len(s.usage) for s in SPECS) + 2
    lines = ["Roundtable commands:"]
    for spec in SPECS:
        suffix = " (admin)" if spec.admin else ""
        lines.append(f"  /discuss {spec.usage.ljust(width)}{spec.summary}{suffix}")
    if not is_admin:
        lines.append("Commands marked (admin) are for the admins listed in the config.")
    lines.append(THREAD_HINT)
    return "\n".join(lines)
