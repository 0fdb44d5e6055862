"""The dispatcher: the core's front door for adapters and the scheduler.

Adapters hand it neutral events through the inbox (``accept`` before they acknowledge
the platform, ``process`` after) and get back what to show the person who acted.
Posts for channels (rounds, digests, thread messages) are outbox rows written in the
handler's transaction and delivered through the adapter registered for the channel.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bot.core.events import Incoming, Outcome, Reply, RoundPost, Summary, ThreadPost
from bot.core.handlers import Handlers
from bot.core.inbox import Inbox, NotSaved, Ticket
from bot.core.outbox import Outbox, Platform, Posted, PostFailed
from bot.core.rounds import RoundService

log = logging.getLogger(__name__)

ChannelPost = RoundPost | Summary | ThreadPost

__all__ = [
    "ChannelPost",
    "Dispatcher",
    "NotSaved",
    "Platform",
    "PostFailed",
    "Posted",
    "Ticket",
]


class Dispatcher:
    def __init__(self, handlers: Handlers, service: RoundService):
        self.handlers = handlers
        self.service = service
        self.platforms: dict[str, Platform] = {}
        self.outbox = Outbox(service.store, service.clock, self.platforms)
        self.inbox = Inbox(
            service.store,
            service.clock,
            handlers.handle,
            self.outbox,
            keyring=lambda: service.keyring,  # inbox payloads sealed at rest
        )

    def register(self, platform: Platform) -> None:
        self.platforms[platform.name] = platform

    async def accept(self, key: str | None, event: Incoming) -> Ticket:
        """Store an incoming event before acknowledging it (raises NotSaved)."""
        return await self.inbox.accept(key, event)

    async def process(self, ticket: Ticket) -> list[Reply | Summary | RoundPost]:
        return await self.inbox.process(ticket)

    async def handle(
        self, event: Incoming, key: str | None = None
    ) -> list[Reply | Summary | RoundPost]:
        """Store, handle and deliver one event; returns what to show the person who acted."""
        return await self.inbox.handle(event, key)

    async def run(self, outcome: Outcome) -> None:
        """Publish an outcome that nobody is waiting on (scheduled work)."""
        await self.publish(outcome.posts)

    async def publish(self, posts: Iterable[ChannelPost]) -> list[tuple[str, str]]:
        """Write posts to the outbox and deliver them; returns (channel, why) failures."""
        posts = list(posts)
        if not posts:
            return []
        async with self.service.store.transaction():
            written = await self.outbox.write(posts)
        return (await self.outbox.deliver(written)).failures
