"""Test support: build a real runtime around a recording platform, and talk to it like
a person would (``await chat.say("/discuss now")``)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bot.core import render
from bot.core.clock import FakeClock
from bot.core.dispatch import ChannelPost, Dispatcher, Posted
from bot.core.events import (
    Actor,
    CommandInvoked,
    FormSubmitted,
    MessageDeleted,
    MessageEdited,
    MessagePosted,
    Reply,
    RoundPost,
    Summary,
    ThreadPost,
)
from bot.core.handlers import Handlers
from bot.core.rounds import RoundService
from bot.library import LibraryHolder, load_library
from bot.storage.store import Store

REPO = Path(__file__).resolve().parent.parent

MINI_SET = """\
title: Mini set
prompts:
  - id: alpha
    title: Alpha article
    source: Example
    url: https://example.org/alpha
    summary: Alpha is about things. It says things.
    questions:
      - {text: "What is alpha?", origin: article}
      - {text: "Why does alpha matter?", origin: ours}
  - id: beta
    title: Beta article
    source: Example
    summary: Beta is about other things.
    questions:
      - {text: "What is beta?", origin: ours}
  - id: gamma
    title: Gamma article
    source: Example
    summary: Gamma closes the set.
    questions:
      - {text: "What is gamma?", origin: ours}
"""

MINI_CONFIG = """\
timezone: UTC
prompts_dir: ../prompts
schedules:
  - name: weekly
    prompt_set: mini
    cron: "0 10 * * mon"
    channels: [console:general]
"""


def write_library(
    root: Path, config: str = MINI_CONFIG, sets: dict[str, str] | None = None
) -> Path:
    """Write a config and prompt sets under ``root``; return the config path."""
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "prompts").mkdir(parents=True, exist_ok=True)
    for name, text in (sets if sets is not None else {"mini": MINI_SET}).items():
        (root / "prompts" / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    path = root / "config" / "roundtable.yaml"
    path.write_text(textwrap.dedent(config), encoding="utf-8")
    return path


class RecordingPlatform:
    """A platform that keeps what the core posts, and can be told to fail."""

    def __init__(self, name: str = "console"):
        self.name = name
        self.posts: list[ChannelPost] = []
        self.fail_channels: set[str] = set()
        self._n = 0

    async def post(self, message: ChannelPost) -> Posted | None:
        if message.channel in self.fail_channels:
            raise RuntimeError("platform down")
        self.posts.append(message)
        if isinstance(message, RoundPost):
            self._n += 1
            return Posted(message_ref=f"msg-{self._n}")
        return None

    def rounds(self) -> list[RoundPost]:
        return [p for p in self.posts if isinstance(p, RoundPost)]

    def summaries(self) -> list[Summary]:
        return [p for p in self.posts if isinstance(p, Summary)]

    def thread_posts(self) -> list[ThreadPost]:
        return [p for p in self.posts if isinstance(p, ThreadPost)]


def show(reply: Reply | Summary | RoundPost) -> str:
    if isinstance(reply, Reply):
        return reply.text
    if isinstance(reply, Summary):
        return render.summary_text(reply)
    return render.round_text(reply)


@dataclass
class Chat:
    """A conversation with the bot in one channel, as one or more people."""

    dispatcher: Dispatcher
    store: Store
    clock: FakeClock
    platform: RecordingPlatform
    library: LibraryHolder
    channel: str = "console:general"
    admins: set[str] = field(default_factory=lambda: {"admin"})
    _n: int = 0

    def actor(self, who: str) -> Actor:
        return Actor("console", who, who.title(), is_admin=who in self.admins)

    async def say(self, text: str, who: str = "admin", *, thread: str | None = None) -> str:
        """Send a line as ``who``: a /discuss command or a message. Returns the replies."""
        if text.startswith("/discuss"):
            event = CommandInvoked(self.actor(who), self.channel, text)
        else:
            self._n += 1
            event = MessagePosted(self.actor(who), self.channel, text, f"m{self._n}", thread)
        return "\n".join(show(r) for r in await self.dispatcher.handle(event))

    async def edit(self, message_ref: str, text: str) -> None:
        await self.dispatcher.handle(MessageEdited(self.channel, message_ref, text))

    async def delete(self, message_ref: str) -> None:
        await self.dispatcher.handle(MessageDeleted(self.channel, message_ref))

    async def submit(
        self, round_id: int, answers: dict[int, str], who: str, anonymous=False
    ) -> str:
        event = FormSubmitted(self.actor(who), self.channel, round_id, answers, anonymous)
        return "\n".join(show(r) for r in await self.dispatcher.handle(event))


async def make_chat(config_path: Path, database_url: str, start: datetime | None = None) -> Chat:
    library = LibraryHolder(load_library(config_path))
    store = await Store.open(database_url)
    clock = FakeClock(start or datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    service = RoundService(store, library, clock)
    dispatcher = Dispatcher(Handlers(service), service)
    platform = RecordingPlatform()
    dispatcher.register(platform)
    return Chat(dispatcher, store, clock, platform, library)
