"""The outbox: every message the bot owes a channel, delivered at least once and, thanks
to idempotency keys, posted once.

Rows are written in the transaction that decides them (a claimed round and its post, a
closed round and its digest, an anonymous answer and its re-post), leased to the writer,
which delivers them right after the commit. Rows nobody delivered (a crash, a transient
failure) are taken by ``deliver_due`` on the next sweep, on any instance. Before posting
a round again after its sender died, the platform is asked whether the post landed
(``Platform.find_post``). A permanent refusal (``PostFailed``) ends the row and, for a
round post, the round (``failed``); it is never retried.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol

from bot import metrics
from bot.core.clock import Clock
from bot.core.codec import ChannelPost, decode_post, encode_post
from bot.core.events import RoundPost, Summary, ThreadPost, platform_of
from bot.core.lifecycle import WAITING_TO_POST, Lifecycle
from bot.core.rounds import build_summary, round_post
from bot.storage.models import FAILED, MISSED, SENDING, SKIPPED, OutboxEntry, Round
from bot.storage.store import Store

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)  # how long a sender may take before another takes over
MAX_BACKOFF = timedelta(minutes=10)
MAX_ATTEMPTS = 12  # for posts other than rounds (rounds are bounded by their window)
DEFAULT_GRACE = timedelta(hours=6)


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
        """Find an earlier post of the round with this key (after a crash mid-post)."""
        ...


@dataclass
class Delivery:
    """What one delivery pass did."""

    failures: list[tuple[str, str]] = field(default_factory=list)  # (channel, why)
    rounds: list[int] = field(default_factory=list)  # round posts delivered or found
    # recorded together after the pass (one transaction, not one per post): a crash
    # before that is safe, the rows are re-delivered and the keys find the posts
    sent: list[int] = field(default_factory=list)
    posted: dict[int, Posted] = field(default_factory=dict)  # round id → where it landed


def post_key(post: ChannelPost) -> str:
    """The idempotency key (≤ 25 characters: Discord's nonce limit)."""
    if isinstance(post, RoundPost):
        return post.round_key
    if isinstance(post, Summary) and post.final:
        return f"rt-{post.round_id}-digest"  # one digest per round, ever
    return f"rt-o-{uuid.uuid4().hex[:20]}"


def retry_after(exc: BaseException) -> float | None:
    """Seconds a platform asked us to wait (Slack's Retry-After header, discord.py)."""
    value = getattr(exc, "retry_after", None)
    if value is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None) or {}
        value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class Outbox:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        platforms: Mapping[str, Platform],
        *,
        concurrency: int = 20,
        lease: timedelta = LEASE,
        grace_for: Callable[[Round], timedelta] | None = None,
    ):
        self.store = store
        self.clock = clock
        self.platforms = platforms
        self.lifecycle = Lifecycle(store)
        self.lease = lease
        self.grace_for = grace_for or (lambda _: DEFAULT_GRACE)
        self._limit = asyncio.Semaphore(concurrency)

    # ---- writing (inside the caller's transaction) ---------------------------------------

    async def write(self, posts: Iterable[ChannelPost]) -> list[OutboxEntry]:
        """Add rows for ``posts``, leased to this process (it delivers them next, once
        the transaction has committed). Returns the rows added; a post whose key is
        there already adds none."""
        now = self.clock.now()
        rows: list[dict[str, Any]] = []
        for post in posts:
            key = post_key(post)
            if isinstance(post, Summary | ThreadPost):
                post = replace(post, key=key)
            payload = encode_post(post)
            rows.append(
                {
                    "key": key,
                    "channel": post.channel,
                    "round_id": post.round_id or None,
                    "kind": payload["type"],
                    "payload": payload,
                    "status": SENDING,
                    "attempts": 0,
                    "not_before": now,
                    "lease_until": now + self.lease,
                    "created_at": now,
                }
            )
        if not rows:
            return []
        ids = await self.store.outbox_add(rows)
        return [OutboxEntry(id=ids[row["key"]], **row) for row in rows if row["key"] in ids]

    # ---- delivering ----------------------------------------------------------------------

    async def deliver(self, rows: Iterable[OutboxEntry]) -> Delivery:
        """Deliver rows this process wrote (``write``: it holds their lease), as written:
        nobody else touches a leased row, so they are not read back."""
        return await self._deliver([r for r in rows if r.status == SENDING], recovering=False)

    async def deliver_due(self, now: datetime | None = None) -> Delivery:
        """Deliver rows nobody delivered: retries that are due, and rows whose sender
        died (lease expired). Rounds stranded without a row get one first."""
        now = now or self.clock.now()
        stranded = await self.store.stranded_rounds(now)
        rows: list[OutboxEntry] = []
        if stranded:
            async with self.store.transaction():
                rows = await self.write([round_post(r) for r in stranded])
        rows += await self.store.outbox_lease_due(now, self.clock.now() + self.lease)
        if not rows:
            return Delivery()
        return await self._deliver(rows, recovering=True)

    async def _deliver(self, rows: list[OutboxEntry], *, recovering: bool) -> Delivery:
        """One channel's rows in order (a round before its thread posts); channels in
        parallel, at most ``concurrency`` at a time."""
        by_channel: dict[str, list[OutboxEntry]] = defaultdict(list)
        for row in rows:
            by_channel[row.channel].append(row)
        delivery = Delivery()
        # the rounds these rows belong to, in one query (not one per row)
        rounds = await self.store.rounds_by_id({r.round_id for r in rows if r.round_id})

        async def channel_rows(items: list[OutboxEntry]) -> None:
            async with self._limit:
                for row in items:
                    try:
                        await self._one(row, rounds.get(row.round_id or 0), recovering, delivery)
                    except Exception:  # a bug in one row must not stop the others
                        log.exception("delivering outbox row %s failed", row.id)
                        delivery.failures.append((row.channel, "internal error"))

        await asyncio.gather(*(channel_rows(items) for items in by_channel.values()))
        await self._record(delivery)
        return delivery

    async def _record(self, delivery: Delivery) -> None:
        """Rounds posted and rows sent in this pass, in one transaction (rounds first:
        lock order)."""
        if not delivery.sent:
            return
        now = self.clock.now()
        late: list[OutboxEntry] = []
        async with self.store.transaction():
            await self.lifecycle.posted_many(delivery.posted, now)
            await self.store.outbox_sent_many(delivery.sent, now)
            # a round ended while its post was in flight, and the post landed: it was
            # seen, so it is closed with its digest rather than left "missed"
            seen = await self.store.close_landed(sorted(delivery.posted), now)
            for closed in seen:
                self.store.on_commit(partial(metrics.round_closed, platform_of(closed.channel)))
            if seen:
                answers = await self.store.responses_of([r.id for r in seen])
                late = await self.write(
                    [build_summary(r, answers.get(r.id, []), final=True) for r in seen]
                )
        if late:
            await self._deliver(late, recovering=False)

    async def _one(
        self, row: OutboxEntry, round_: Round | None, recovering: bool, delivery: Delivery
    ) -> None:
        post = decode_post(row.payload)
        now = self.clock.now()
        platform = self.platforms.get(platform_of(row.channel))
        if platform is None:
            log.warning("no adapter running for %s; message kept for later", row.channel)
            await self.store.outbox_retry(
                row.id, "platform not connected", now + timedelta(seconds=30)
            )
            delivery.failures.append((row.channel, "that platform is not connected"))
            return
        if isinstance(post, RoundPost):
            if round_ is None or round_.status not in WAITING_TO_POST:
                await self.store.outbox_give_up(row.id, "the round is no longer waiting to post")
                return
            if round_.due_at is not None and now - round_.due_at > self.grace_for(round_):
                async with self.store.transaction():
                    await self.lifecycle.overdue(round_, "missed: could not be posted in time", now)
                    await self.store.outbox_give_up(row.id, "not posted in time")
                return
            if recovering or row.attempts:
                found = await platform.find_post(row.channel, post.round_key)
                if found is not None:
                    self._sent(delivery, row, post, found)
                    metrics.round_opened(platform_of(row.channel))
                    log.info("round %s was already posted; recorded it", round_.id)
                    delivery.rounds.append(round_.id)
                    return
        elif round_ is not None and round_.id in delivery.posted:  # posted in this pass
            landed = delivery.posted[round_.id]
            post = replace(post, thread_ref=landed.thread_ref or landed.message_ref)
        elif round_ is not None:
            if round_.status in (FAILED, MISSED, SKIPPED):
                await self.store.outbox_give_up(row.id, f"the round {round_.status}")
                return
            if round_.thread_ref is None and round_.message_ref is None:
                # its round post is still owed: try again after it
                await self.store.outbox_retry(
                    row.id, "waiting for the round post", now + timedelta(seconds=5)
                )
                return
            post = replace(post, thread_ref=round_.thread_ref or round_.message_ref)
        if not isinstance(post, RoundPost) and (recovering or row.attempts):
            # tried before (its sender died, or a failure after it may have landed): the
            # platform skips the parts (a digest's chunks) whose keys it finds
            post = replace(post, resume=True)
        try:
            posted = await platform.post(post)
        except PostFailed as exc:
            metrics.post_failed(post, permanent=True)
            reason = str(exc) or "the platform refused"
            log.error("cannot post in %s: %s (not retried)", row.channel, reason)
            async with self.store.transaction():  # rounds before outbox rows: lock order
                if isinstance(post, RoundPost) and round_ is not None:
                    await self.lifecycle.refused(round_, reason, now)
                await self.store.outbox_give_up(row.id, reason)
            delivery.failures.append((row.channel, reason))
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # transient: back off and let a later sweep retry
            metrics.post_failed(post, permanent=False)
            await self._retry(row, exc, now)
            delivery.failures.append((row.channel, type(exc).__name__))
            return
        self._sent(delivery, row, post, posted)
        if isinstance(post, RoundPost):
            delivery.rounds.append(post.round_id)
            metrics.round_opened(platform_of(row.channel))

    @staticmethod
    def _sent(
        delivery: Delivery, row: OutboxEntry, post: ChannelPost, posted: Posted | None
    ) -> None:
        delivery.sent.append(row.id)
        if isinstance(post, RoundPost) and posted is not None:
            delivery.posted[post.round_id] = posted

    async def _retry(self, row: OutboxEntry, exc: Exception, now: datetime) -> None:
        attempts = row.attempts + 1
        if row.kind != "round" and attempts >= MAX_ATTEMPTS:
            log.error("giving up on a post in %s after %d attempts: %s", row.channel, attempts, exc)
            await self.store.outbox_give_up(row.id, f"gave up after {attempts} attempts: {exc}")
            return
        wait = timedelta(seconds=min(MAX_BACKOFF.total_seconds(), 30 * 2 ** (attempts - 1)))
        asked = retry_after(exc)
        if asked is not None:
            wait = max(wait, timedelta(seconds=asked))
        log.warning("posting in %s failed (%s); retrying in %s", row.channel, exc, wait)
        await self.store.outbox_retry(row.id, f"{type(exc).__name__}: {exc}", now + wait)
