"""The dispatcher: runs handlers, then publishes their posts through the right adapter.

Adapters call ``Dispatcher.handle`` with a neutral event and render the replies they get
back to the person who acted. Posts for channels (rounds, digests, thread messages) go
out through ``publish``, after the handler's database work has been committed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from bot import metrics
from bot.core.events import Incoming, Outcome, Reply, RoundPost, Summary, ThreadPost, platform_of
from bot.core.handlers import Handlers
from bot.core.rounds import RoundService

log = logging.getLogger(__name__)

ChannelPost = RoundPost | Summary | ThreadPost


@dataclass(frozen=True)
class Posted:
    """Where a post landed: its message id, and the thread answers go to (if different)."""

    message_ref: str
    thread_ref: str | None = None


class PostFailed(Exception):
    """A platform refused a post for good (no access, unknown channel); do not retry."""


class Platform(Protocol):
    """What an adapter offers the core: a name and a way to post into its channels."""

    name: str

    async def post(self, message: ChannelPost) -> Posted | None:
        """Post into ``message.channel``; return where it landed (None if not a round).

        Raise ``PostFailed`` when the platform refuses for good (no access, unknown
        channel); other exceptions are treated as transient failures.
        """
        ...

    async def find_post(self, channel: str, round_key: str) -> Posted | None:
        """Find an earlier post of the round with this key (after a crash mid-post).

        Slack looks for message metadata carrying the key, Discord for the nonce.
        Platforms that cannot look return None.
        """
        ...


class Dispatcher:
    def __init__(self, handlers: Handlers, service: RoundService):
        self.handlers = handlers
        self.service = service
        self.platforms: dict[str, Platform] = {}

    def register(self, platform: Platform) -> None:
        self.platforms[platform.name] = platform

    async def handle(self, event: Incoming) -> list[Reply | Summary | RoundPost]:
        """Handle one event; returns what to show the person who acted."""
        started = metrics.event_received(platform_of(event.channel), type(event).__name__)
        outcome = await self.handlers.handle(event)
        failures = await self.publish(outcome.posts)
        replies = list(outcome.replies)
        replies.extend(Reply(f"Could not post in {ch}: {why}") for ch, why in failures)
        metrics.event_handled(platform_of(event.channel), started)
        return replies

    async def run(self, outcome: Outcome) -> None:
        """Publish an outcome that nobody is waiting on (scheduled work)."""
        await self.publish(outcome.posts)

    async def publish(self, posts: Iterable[ChannelPost]) -> list[tuple[str, str]]:
        """Post each message; a failure in one channel never stops the others."""
        failures: list[tuple[str, str]] = []
        for post in posts:
            platform = self.platforms.get(platform_of(post.channel))
            if platform is None:
                log.warning("no adapter running for %s; message not posted", post.channel)
                failures.append((post.channel, "that platform is not connected"))
                continue
            try:
                with metrics.sending():
                    posted = await platform.post(post)
            except PostFailed as exc:
                metrics.post_failed(post, permanent=True)
                log.error("cannot post in %s: %s (skipped)", post.channel, exc)
                failures.append((post.channel, str(exc)))
                continue
            except Exception as exc:  # an adapter bug or outage must not lose the rest
                metrics.post_failed(post, permanent=False)
                log.exception("posting in %s failed", post.channel)
                failures.append((post.channel, type(exc).__name__))
                continue
            if isinstance(post, RoundPost) and not post.preview and posted is not None:
                await self.service.mark_posted(post.round_id, posted.message_ref, posted.thread_ref)
                metrics.round_opened(platform_of(post.channel))
        return failures
