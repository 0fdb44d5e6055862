"""The neutral language between adapters and the core.

Adapters translate platform payloads into ``Incoming`` events and render ``Outgoing``
messages back (Block Kit, embeds, plain text). Nothing here knows any platform.
A channel is a string ``"<platform>:<id>"`` such as ``slack:C0123`` or ``console:general``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


def platform_of(channel: str) -> str:
    return channel.split(":", 1)[0]


@dataclass(frozen=True)
class Actor:
    """Who did something. ``user_id`` is the platform's own id (no platform prefix)."""

    platform: str
    user_id: str
    display_name: str
    is_admin: bool = False

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.user_id}"


# ---- incoming ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TypedAnswer:
    """``/discuss answer`` from a platform with typed options (Discord's slash command).

    The options are the only source of question and anonymity; ``text`` is stored as
    typed, never re-parsed by the text-command grammar (``3 teams…`` stays text).
    """

    text: str
    question: int | None = None
    anonymous: bool = False


@dataclass(frozen=True)
class CommandInvoked:
    """``/discuss <text>``: ``text`` is everything after ``/discuss``.

    ``answer`` carries an already-structured ``/discuss answer``; when set, ``text`` is
    only for logs and is not parsed.
    """

    actor: Actor
    channel: str
    text: str
    answer: TypedAnswer | None = None


@dataclass(frozen=True)
class MessagePosted:
    """A plain message that may be an answer.

    ``thread_ref`` is the platform id of the message it replies to in a thread; adapters
    without threads (the console) leave it None, meaning "the channel's open round".
    """

    actor: Actor
    channel: str
    text: str
    message_ref: str
    thread_ref: str | None = None
    # False when the platform withheld the text (Discord without the Message Content
    # intent): the author is told how to answer instead, nothing is stored.
    readable: bool = True


@dataclass(frozen=True)
class MessageEdited:
    channel: str
    message_ref: str
    text: str


@dataclass(frozen=True)
class MessageDeleted:
    channel: str
    message_ref: str


@dataclass(frozen=True)
class FormSubmitted:
    """The "Share your thoughts" form: answers keyed by question number (1-based)."""

    actor: Actor
    channel: str
    round_id: int
    answers: dict[int, str]
    anonymous: bool = False


Incoming = CommandInvoked | MessagePosted | MessageEdited | MessageDeleted | FormSubmitted


# ---- outgoing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptView:
    """A prompt as posted; rounds keep this snapshot so later YAML edits change nothing."""

    prompt_id: str
    title: str
    source: str
    url: str | None
    summary: str
    questions: tuple[tuple[str, str], ...]  # (text, origin)

    def to_json(self) -> dict:
        return {
            "prompt_id": self.prompt_id,
            "title": self.title,
            "source": self.source,
            "url": self.url,
            "summary": self.summary,
            "questions": [{"text": t, "origin": o} for t, o in self.questions],
        }

    @classmethod
    def from_json(cls, data: dict) -> PromptView:
        return cls(
            prompt_id=data["prompt_id"],
            title=data["title"],
            source=data["source"],
            url=data.get("url"),
            summary=data["summary"],
            questions=tuple((q["text"], q["origin"]) for q in data["questions"]),
        )


@dataclass(frozen=True)
class Reply:
    """An answer to the person who acted; ephemeral where the platform allows it.

    ``confirms_save`` marks "your answer was saved" replies, which an adapter may leave
    unsaid where the saved message is already visible (a thread reply).
    """

    text: str
    ephemeral: bool = True
    confirms_save: bool = False


@dataclass(frozen=True)
class RoundPost:
    """Post a round into its channel. The adapter returns the posted message's id."""

    round_id: int
    round_key: str  # stable per round: use as idempotency key (Discord nonce, Slack metadata)
    channel: str
    prompt: PromptView
    anonymous_allowed: bool
    preview: bool = False


@dataclass(frozen=True)
class AnswerGroup:
    number: int | None  # question number; None for answers that name no question
    question: str | None
    answers: tuple[Answer, ...]


@dataclass(frozen=True)
class Answer:
    text: str  # user text: adapters must escape it
    author: str | None  # display name; None when anonymous
    late: bool = False


@dataclass(frozen=True)
class Summary:
    """Results so far (``final=False``) or a closing digest (``final=True``)."""

    round_id: int
    channel: str
    thread_ref: str | None
    title: str
    respondents: int
    groups: tuple[AnswerGroup, ...]
    final: bool
    show_counts: bool = True
    note: str | None = None
    key: str | None = None  # idempotency key of this post (set by the outbox)
    resume: bool = False  # a re-send (set by the outbox): skip the parts that landed


@dataclass(frozen=True)
class ThreadPost:
    """A bot message in a round's thread: a re-posted anonymous answer, or a notice.

    ``quote`` is user text the adapter must escape (no pings, no broken layout).
    """

    round_id: int
    channel: str
    thread_ref: str | None
    kind: Literal["anonymous_answer", "reminder", "notice"]
    text: str
    quote: str | None = None
    question: int | None = None
    key: str | None = None  # idempotency key of this post (set by the outbox)
    resume: bool = False  # a re-send (set by the outbox): skip the parts that landed


Outgoing = Reply | RoundPost | Summary | ThreadPost


@dataclass
class Outcome:
    """What handling one event produced: replies for the actor, posts for channels.

    Replies go only to the person who acted (ephemeral where possible); a reply may be
    a ``Summary`` (``/discuss results``) or a preview ``RoundPost``.
    """

    replies: list[Reply | Summary | RoundPost] = field(default_factory=list)
    posts: list[RoundPost | Summary | ThreadPost] = field(default_factory=list)

    def reply(self, text: str, *, ephemeral: bool = True, confirms_save: bool = False) -> Outcome:
        self.replies.append(Reply(text, ephemeral, confirms_save))
        return self

    def extend(self, other: Outcome) -> Outcome:
        self.replies.extend(other.replies)
        self.posts.extend(other.posts)
        return self
