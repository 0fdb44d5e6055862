"""The narrow ports adapters get from the core, instead of the whole runtime.

An adapter may: register itself as the platform for its channels; submit what arrives
(``accept`` before it acknowledges, ``process`` after); look up the little it must know
about a round to build a form; keep a few named values (the Discord command-tree hash);
correct a display name learned after an answer was stored. Nothing here exposes the
database: adapters never import ``bot.storage``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.core.clock import Clock
from bot.core.dispatch import Dispatcher, Platform, Ticket
from bot.core.events import Incoming, Reply, RoundPost, Summary

if TYPE_CHECKING:
    from bot.config import Secrets
    from bot.library import LibraryHolder

Replies = list[Reply | Summary | RoundPost]


@dataclass(frozen=True)
class RoundInfo:
    """What an adapter needs to show a round's answer form."""

    id: int
    channel: str
    is_open: bool
    title: str
    questions: tuple[str, ...]
    anonymous_allowed: bool


class NameCache:
    """Display names by user key, bounded (least recently used names are dropped)."""

    def __init__(self, size: int = 10_000):
        self.size = size
        self._names: OrderedDict[str, str] = OrderedDict()

    def get(self, key: str) -> str | None:
        name = self._names.get(key)
        if name is not None:
            self._names.move_to_end(key)
        return name

    def forget(self, key: str) -> None:
        self._names.pop(key, None)

    def put(self, key: str, name: str) -> None:
        self._names[key] = name
        self._names.move_to_end(key)
        while len(self._names) > self.size:
            self._names.popitem(last=False)


class Ports:
    def __init__(
        self,
        dispatcher: Dispatcher,
        clock: Clock,
        library: LibraryHolder,
        secrets: Secrets,
    ):
        self._dispatcher = dispatcher
        self._store = dispatcher.service.store
        self.clock = clock
        self.library = library
        self.secrets = secrets

    def register(self, platform: Platform) -> None:
        """Deliver the core's posts for ``platform.name:`` channels through ``platform``."""
        self._dispatcher.register(platform)

    async def accept(self, key: str | None, event: Incoming) -> Ticket:
        """Store ``event`` durably under the platform's idempotency key. Call before
        acknowledging the platform; raises ``NotSaved`` (tell the person, do not ack ok)."""
        return await self._dispatcher.accept(key, event)

    async def process(self, ticket: Ticket) -> Replies:
        """Handle an accepted event; returns what to tell the person who acted."""
        return await self._dispatcher.process(ticket)

    async def handle(self, event: Incoming, key: str | None = None) -> Replies:
        return await self._dispatcher.handle(event, key)

    async def round_info(self, round_id: int) -> RoundInfo | None:
        round_ = await self._store.get_round(round_id)
        if round_ is None:
            return None
        snapshot = round_.prompt_snapshot or {}
        return RoundInfo(
            id=round_.id,
            channel=round_.channel,
            is_open=round_.is_open,
            title=snapshot.get("title") or round_.prompt_id,
            questions=tuple(q["text"] for q in snapshot.get("questions") or []),
            anonymous_allowed=round_.anonymous_allowed,
        )

    async def get_value(self, key: str) -> str | None:
        return await self._store.get_value(key)

    async def set_value(self, key: str, value: str) -> None:
        await self._store.set_value(key, value, self.clock.now())

    async def rename(self, names: Mapping[str, str]) -> None:
        """Display names (author key → name) learned after the answers were stored
        (names are never fetched before an answer is saved): correct them in the open
        rounds' answers, all in one transaction."""
        await self._store.rename_authors(dict(names))
