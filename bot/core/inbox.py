"""The inbox: what arrives is stored before the platform hears "got it".

``accept`` INSERTs the neutral event under the platform's own idempotency key and
commits; only then does the adapter acknowledge (a redelivery inserts nothing).
``process`` runs the handler, writes its channel posts to the outbox and marks the row
done, all in one transaction, so a crash or a redelivery never loses or doubles an
answer. Rows left pending by a crash are processed by ``process_due`` (at start and on
every sweep). A row that keeps failing is given up after ``MAX_ATTEMPTS`` with its
reason, logged once, and never blocks the rows behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from bot import metrics
from bot.anonymity import Keyring, open_payload, seal_payload
from bot.core import commands
from bot.core.batching import Batcher
from bot.core.clock import Clock
from bot.core.codec import decode_incoming, encode_incoming
from bot.core.commands import CommandError
from bot.core.events import (
    CommandInvoked,
    FormSubmitted,
    Incoming,
    MessageDeleted,
    MessageEdited,
    MessagePosted,
    Outcome,
    Reply,
    RoundPost,
    Summary,
    platform_of,
)
from bot.core.outbox import Delivery, Outbox
from bot.storage.models import OutboxEntry
from bot.storage.store import Store

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
BATCH = 200  # inbox rows per group commit
TRANSIENT_RETRIES = 4  # in-process retries of a transient database error, with backoff
NOT_SAVED = (
    "Sorry, that was not saved: the bot's database is not responding. Please try again in a moment."
)
DELAYED = (
    "The bot's database is not responding right now. What you sent was received and "
    "will be carried out as soon as it is back; no need to send it again."
)
FAILED = "Sorry, that failed on our side; please try again."

Replies = list[Reply | Summary | RoundPost]


class _RowFailed(Exception):
    """A row of a batch raised: the batch is redone with a savepoint per row."""


class NotSaved(Exception):
    """The event could not be stored: tell the person, never acknowledge success."""


def transient(exc: BaseException) -> bool:
    """A database that is briefly away (restart, failover, lock timeout), not a bug."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, ConnectionError | TimeoutError | OSError)


def order_keys(event: Incoming) -> list[str]:
    """Events sharing a key are processed in the order they were accepted: one person's
    events in a channel (a reply, then their ``/discuss results``), and everything that
    touches one message (a reply, then its edit). Sorted: locks are taken in order."""
    match event:
        case MessagePosted():
            keys = [
                f"{event.channel}|a|{event.actor.key}",
                f"{event.channel}|m|{event.message_ref}",
            ]
        case MessageEdited() | MessageDeleted():
            keys = [f"{event.channel}|m|{event.message_ref}"]
        case CommandInvoked() | FormSubmitted():
            keys = [f"{event.channel}|a|{event.actor.key}"]
        case _:
            keys = [event.channel]
    return sorted(keys)


# Commands that change nothing and read nothing a person's earlier events could have
# changed: answered at once, never stored (the inbox holds what can change state).
STATELESS_COMMANDS = frozenset({"help", "preview", "sets"})


def stateless(event: Incoming) -> bool:
    """A ``/discuss`` command that changes no state (help, preview, sets, a typo)."""
    if not isinstance(event, CommandInvoked):
        return False
    try:
        return commands.parse(event.text).name in STATELESS_COMMANDS
    except CommandError:
        return True  # answered with what to type instead


@dataclass(frozen=True)
class Ticket:
    """An accepted event. ``entry_id`` is None for a redelivery (nothing to do), or for a
    ``direct`` event that changes no state and is handled without being stored."""

    entry_id: int | None
    event: Incoming
    direct: bool = False
    accepted_at: float = field(default_factory=time.monotonic)  # processing lag (metrics)

    @property
    def duplicate(self) -> bool:
        return self.entry_id is None and not self.direct


class Inbox:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        handle: Callable[[Incoming], Awaitable[Outcome]],
        outbox: Outbox,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        keyring: Callable[[], Keyring] | None = None,
    ):
        self.keyring = keyring  # seals payloads at rest (docs/privacy.md); None: plain
        self.store = store
        self.clock = clock
        self._handle = handle
        self.outbox = outbox
        self._sleep = sleep
        self._locks: dict[str, asyncio.Lock] = {}
        # group commit; eager: an ack that finds no batch being written does not wait
        # for the writer task's turn of the loop
        self._inserts = Batcher(self._store_many, limit=BATCH, eager=True)
        self._work: list[tuple[int, Incoming, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None
        self._waiting: dict[str, int] = {}

    # ---- the port adapters call -----------------------------------------------------------

    async def accept(self, key: str | None, event: Incoming) -> Ticket:
        """Store ``event`` durably under ``key`` (None: a generated key). Raises NotSaved."""
        if stateless(event):
            return Ticket(None, event, direct=True)
        key = key or f"gen:{uuid.uuid4().hex}"
        payload = encode_incoming(event)
        if self.keyring is not None:
            payload = seal_payload(self.keyring(), payload)
        last: BaseException | None = None
        for attempt in range(2):  # one quick retry: a pooled connection may have gone stale
            try:
                entry_id = await self._inserts.submit((key, payload))
                if entry_id is None:
                    log.info("ignored a redelivered event (%s)", key.split(":", 1)[0])
                else:  # counted once the ack has been sent (the loop's next turn)
                    asyncio.get_running_loop().call_soon(
                        metrics.event_received, platform_of(event.channel), type(event).__name__
                    )
                return Ticket(entry_id, event)
            except Exception as exc:
                last = exc
                if not transient(exc):
                    break
                if attempt == 0:
                    await self._sleep(0.05)
        log.error("could not store an incoming event: %s", type(last).__name__)
        raise NotSaved(str(last)) from last

    async def _store_many(self, items: list[tuple[str, dict]]) -> list[int | None]:
        """One batch of ``accept`` (``Batcher``: one transaction for all of them): each
        row's id, or None for a key already stored (a redelivery, or twice in a batch)."""
        ids = await self.store.inbox_add_many(items, self.clock.now())
        seen: set[str] = set()
        results: list[int | None] = []
        for key, _ in items:
            results.append(None if key in seen else ids.get(key))
            seen.add(key)
        return results

    async def process(self, ticket: Ticket) -> Replies:
        """Handle an accepted event; returns what to tell the person who acted."""
        if ticket.direct:
            outcome = await self._handle(ticket.event)  # writes nothing, posts nothing
            return list(outcome.replies)
        if ticket.entry_id is None:
            return []
        outcome, written = await self._run(ticket.entry_id, ticket.event)
        if outcome is None:
            return []
        delivery = await self.outbox.deliver(written) if written else Delivery()
        replies: Replies = list(outcome.replies)
        replies.extend(Reply(f"Could not post in {ch}: {why}") for ch, why in delivery.failures)
        metrics.event_handled(platform_of(ticket.event.channel), ticket.accepted_at)
        return replies

    async def handle(self, event: Incoming, key: str | None = None) -> Replies:
        """Accept and process in one go (the console, tests, and anything synchronous)."""
        try:
            ticket = await self.accept(key, event)
        except NotSaved:
            return [Reply(NOT_SAVED)]
        return await self.process(ticket)

    # ---- processing -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _ordered(self, keys: list[str]) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for key in keys:
                await stack.enter_async_context(self._ordered_one(key))
            yield

    @contextlib.asynccontextmanager
    async def _ordered_one(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:  # nobody else queued: forget it (bounded memory)
                del self._waiting[key]
                self._locks.pop(key, None)

    async def _run(
        self, entry_id: int, event: Incoming
    ) -> tuple[Outcome | None, list[OutboxEntry]]:
        """Process one row exactly once. Returns (outcome, outbox rows written) or (None, [])
        when someone else did it already."""
        async with self._ordered(order_keys(event)):
            for attempt in range(TRANSIENT_RETRIES + 1):
                try:
                    return await self._in_batch(entry_id, event)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if transient(exc) and attempt < TRANSIENT_RETRIES:
                        await self._sleep(0.2 * 2**attempt)
                        continue
                    return await self._failed(entry_id, exc), []
        return None, []  # pragma: no cover (the loop always returns)

    async def _in_batch(
        self, entry_id: int, event: Incoming
    ) -> tuple[Outcome | None, list[OutboxEntry]]:
        """Rows ready at the same time are processed in one transaction (one commit and
        one fsync for all; a failing row rolls back alone, see ``_batch_isolated``)."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._work.append((entry_id, event, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._process_batches())
        return await future

    async def _process_batches(self) -> None:
        while self._work:
            batch, self._work = self._work[:BATCH], self._work[BATCH:]
            try:
                try:
                    results = await self._batch_fast(batch)
                except _RowFailed:  # one row raised: redo the batch, a savepoint each
                    results = await self._batch_isolated(batch)
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, _, future in batch:
                if future.done():
                    continue
                result = results.get(id(future), (None, []))
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _batch_fast(self, batch: list) -> dict[int, Any]:
        """The usual case, no row fails: all rows claimed in one UPDATE, no savepoints
        (each would cost two statements per row). Any row's exception rolls the whole
        transaction back (``_RowFailed``) and the batch is redone by ``_batch_isolated``."""
        results: dict[int, Any] = {}
        async with self.store.transaction():
            claimed = await self.store.inbox_claim_many(
                [entry_id for entry_id, _, _ in batch], self.clock.now()
            )
            for entry_id, event, future in batch:
                if entry_id not in claimed:
                    results[id(future)] = (None, [])  # done already
                    continue
                claimed.discard(entry_id)  # the same row twice in a batch: once
                try:
                    outcome = await self._handle(event)
                    written = await self.outbox.write(outcome.posts)
                except Exception as exc:
                    if transient(exc):
                        raise  # the database is away: the whole batch retries
                    raise _RowFailed from exc
                results[id(future)] = (outcome, written)
        return results

    async def _batch_isolated(self, batch: list) -> dict[int, Any]:
        """Each row in its own savepoint: a failing row rolls back alone."""
        results: dict[int, Any] = {}
        async with self.store.transaction():
            for entry_id, event, future in batch:
                try:
                    async with self.store.savepoint():
                        now = self.clock.now()
                        if not await self.store.inbox_claim(entry_id, now):
                            results[id(future)] = (None, [])  # done already
                            continue
                        outcome = await self._handle(event)
                        written = await self.outbox.write(outcome.posts)
                    results[id(future)] = (outcome, written)
                except Exception as exc:
                    if transient(exc):
                        raise  # the database is away: the whole batch retries
                    results[id(future)] = exc
        return results

    async def _failed(self, entry_id: int, exc: Exception) -> Outcome:
        now = self.clock.now()
        why = f"{type(exc).__name__}: {exc}"
        if transient(exc):
            # not the row's fault: it stays pending, uncounted, for the next sweep
            log.warning("database unavailable; inbox row %s stays pending (%s)", entry_id, why)
            return Outcome().reply(DELAYED)
        row = None
        with contextlib.suppress(Exception):
            row = await self.store.inbox_get(entry_id)
        attempts = (row.attempts if row else 0) + 1
        give_up = attempts >= MAX_ATTEMPTS
        retry_at = None if give_up else now + timedelta(seconds=30 * 2 ** (attempts - 1))
        with contextlib.suppress(Exception):
            await self.store.inbox_attempt_failed(entry_id, why, now, retry_at)
        if give_up:
            log.error("inbox row %s failed %d times and is given up: %s", entry_id, attempts, why)
        else:
            log.exception("processing inbox row %s failed (attempt %d)", entry_id, attempts)
        return Outcome().reply(FAILED)

    async def process_due(self, now: datetime | None = None) -> int:
        """Process rows left pending (a crash after the ack, a failed attempt). Nobody
        is waiting for these, so replies are dropped; channel posts still go out."""
        now = now or self.clock.now()
        done = 0
        for row in await self.store.inbox_due(now):
            try:
                payload = row.payload
                if self.keyring is not None:
                    payload = open_payload(self.keyring(), payload)
                event = decode_incoming(payload)
            except Exception as exc:
                await self._failed(row.id, exc)
                continue
            outcome, written = await self._run(row.id, event)
            if outcome is not None:
                done += 1
                if written:
                    await self.outbox.deliver(written)
        if done:
            log.info("processed %d event(s) left over in the inbox", done)
        return done
