"""The rounds table: a round's state after it is opened (posted, closed, missed,
failed, reminded) and the queries that find rounds.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import bindparam, case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.models import (
    CLAIMED,
    CLOSED,
    MISSED,
    OPEN_STATUSES,
    POSTED,
    POSTING,
    OutboxEntry,
    Round,
)
from bot.storage.outbox_rows import cancel_posts
from bot.storage.privacy import close_anonymity, respondent_counts
from bot.storage.transactions import StoreBase, ambient_session

REPLACED = "missed: never posted before the next round replaced it"


class ChannelBusy(Exception):
    """Another round was opened in this channel at the same moment (by another process)."""


_OPEN_ROUND = select(Round).where(
    Round.channel == bindparam("channel"), Round.status.in_(OPEN_STATUSES)
)


class RoundRows(StoreBase):
    """Rounds once they exist: their transitions and lookups."""

    async def _close_open_rounds(self, s: AsyncSession, channel: str, now: datetime) -> list[Round]:
        """Close the channel's open rounds; returns those that were posted (they get a
        digest). A round never posted ends ``missed`` and its pending post is cancelled."""
        rows = (
            await s.scalars(
                select(Round).where(Round.channel == channel, Round.status.in_(OPEN_STATUSES))
            )
        ).all()
        closed = []
        for r in rows:
            if r.status == POSTED:
                r.status = CLOSED
                closed.append(r)
            else:
                r.status, r.status_reason = MISSED, REPLACED
                await cancel_posts(s, [r.id], REPLACED)
            r.closed_at, r.lease_until = now, None  # close_anonymity erases anon_key
        await close_anonymity(s, rows)
        if rows:
            self._closed_something()
        return closed

    async def close_round(
        self, round_id: int, now: datetime, *, unposted_reason: str = REPLACED
    ) -> Round | None:
        """Close one posted round and erase its anonymity key; returns it (for its digest).

        A conditional UPDATE, so when several processes close the same round at once
        exactly one of them gets it back (and writes the digest). A round that was never
        posted gets no digest: it ends ``missed`` with ``unposted_reason`` and None
        comes back, as it does for a round that was not open.
        """
        async with self.session() as s:
            result = await s.execute(
                update(Round)
                .where(Round.id == round_id, Round.status == POSTED)
                .values(status=CLOSED, closed_at=now, lease_until=None)
            )
            if result.rowcount == 1:
                self._closed_something()
                await close_anonymity(s, [round_id])
                closed = await s.get(Round, round_id, populate_existing=True)
            else:
                closed = None
                result = await s.execute(
                    update(Round)
                    .where(Round.id == round_id, Round.status.in_((CLAIMED, POSTING)))
                    .values(
                        status=MISSED,
                        status_reason=unposted_reason,
                        closed_at=now,
                        lease_until=None,
                    )
                )
                if result.rowcount == 1:
                    await cancel_posts(s, [round_id], unposted_reason)
                    await close_anonymity(s, [round_id])
        if closed is not None:
            await self._scrub()
        return closed

    async def mark_posted(
        self, round_id: int, message_ref: str | None, thread_ref: str | None, now: datetime
    ) -> None:
        # One UPDATE rather than read-then-write: another process may close this round
        # between our read and our write, and a closed round must stay closed.
        async with self.session() as s:
            await s.execute(
                update(Round)
                .where(Round.id == round_id)
                .values(
                    message_ref=message_ref,
                    thread_ref=thread_ref or message_ref,
                    posted_at=now,
                    lease_until=None,
                    status=case((Round.status.in_((CLAIMED, POSTING)), POSTED), else_=Round.status),
                )
            )

    async def mark_posted_many(
        self, posted: dict[int, tuple[str | None, str | None]], now: datetime
    ) -> None:
        """``mark_posted`` for many rounds in one executemany: {round id: (message, thread)}."""
        if not posted:
            return
        table = Round.__table__
        stmt = (
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(
                message_ref=bindparam("b_message"),
                thread_ref=bindparam("b_thread"),
                posted_at=now,
                lease_until=None,
                # (no IN: an expanding parameter cannot be used with executemany)
                status=case(
                    ((table.c.status == CLAIMED) | (table.c.status == POSTING), POSTED),
                    else_=table.c.status,
                ),
            )
        )
        params = [
            {"b_id": rid, "b_message": message, "b_thread": thread or message}
            for rid, (message, thread) in sorted(posted.items())
        ]
        async with self.session() as s:
            await (await s.connection()).execute(stmt, params)

    async def close_landed(self, round_ids: list[int], now: datetime) -> list[Round]:
        """Rounds recorded ``missed`` (replaced or closed while their post was in flight)
        whose post then landed: people saw them, so they end ``closed`` (digest due)."""
        if not round_ids:
            return []
        async with self.session() as s:
            rows = await s.scalars(
                update(Round)
                .where(Round.id.in_(round_ids), Round.status == MISSED)
                .values(status=CLOSED, status_reason=None, closed_at=now)
                .returning(Round)
                .execution_options(populate_existing=True)
            )
            return list(rows.all())

    async def fail_round(self, round_id: int, status: str, reason: str, now: datetime) -> bool:
        """End a round that was never posted (failed or missed, with the reason), and
        cancel everything still owed to it. False if it was no longer waiting to post."""
        async with self.session() as s:
            result = await s.execute(
                update(Round)
                .where(Round.id == round_id, Round.status.in_((CLAIMED, POSTING)))
                .values(
                    status=status,
                    status_reason=reason[:200],
                    closed_at=now,
                    lease_until=None,
                )
            )
            await cancel_posts(s, [round_id], reason)
            if result.rowcount == 1:
                await close_anonymity(s, [round_id])
            return result.rowcount == 1

    async def claim_reminder(self, round_id: int, now: datetime) -> bool:
        """Mark a round reminded; exactly one process wins (and posts the reminder)."""
        async with self.session() as s:
            result = await s.execute(
                update(Round)
                .where(Round.id == round_id, Round.status == POSTED, Round.reminded_at.is_(None))
                .values(reminded_at=now)
            )
            return result.rowcount == 1

    async def get_round(self, round_id: int) -> Round | None:
        async with self.session() as s:
            return await s.get(Round, round_id)

    async def rounds_by_id(self, ids: Iterable[int]) -> dict[int, Round]:
        ids = list(ids)
        if not ids:
            return {}
        async with self.session() as s:
            rows = await s.scalars(
                select(Round).where(Round.id.in_(ids)).execution_options(populate_existing=True)
            )
            return {r.id: r for r in rows.all()}

    async def open_round_in(self, channel: str) -> Round | None:
        current = ambient_session()
        if current is None or self.dialect != "sqlite":
            async with self.session() as s:
                return await s.scalar(_OPEN_ROUND, {"channel": channel})
        # Inside one SQLite transaction (the write lock is ours: nobody else can change
        # a round meanwhile), a batch of answers to one channel asks once, until a
        # statement writes the rounds table or a Round is waiting to be flushed.
        cache: dict[str, tuple[int, Round | None]] = current.info.setdefault("open_rounds", {})
        known = cache.get(channel)
        pending = any(isinstance(o, Round) for o in (*current.new, *current.dirty))
        if known is not None and known[0] == self._rounds_written and not pending:
            return known[1]
        round_ = await current.scalar(_OPEN_ROUND, {"channel": channel})
        cache[channel] = (self._rounds_written, round_)
        return round_

    async def latest_round(self, channel: str) -> Round | None:
        async with self.session() as s:
            return await s.scalar(
                select(Round).where(Round.channel == channel).order_by(Round.id.desc()).limit(1)
            )

    async def round_by_message(self, channel: str, message_ref: str) -> Round | None:
        async with self.session() as s:
            return await s.scalar(
                select(Round)
                .where(
                    Round.channel == channel,
                    (Round.message_ref == message_ref) | (Round.thread_ref == message_ref),
                )
                .order_by(Round.id.desc())
                .limit(1)
            )

    async def rounds(
        self, *, channel: str | None = None, since: datetime | None = None
    ) -> list[Round]:
        query = select(Round).order_by(Round.created_at, Round.id)
        if channel:
            query = query.where(Round.channel == channel)
        if since:
            query = query.where(Round.created_at >= since)
        return await self._all(query)

    async def count_respondents(self, round_ids: Iterable[int]) -> dict[int, int]:
        """Number of distinct people who answered, per round (never who)."""
        ids = list(round_ids)
        if not ids:
            return {}
        async with self.session() as s:  # anonymous authors: tags opened in Python
            return {rid: n for rid, (n, _) in (await respondent_counts(s, ids)).items()}

    async def due_reminders(self, now: datetime) -> list[Round]:
        return await self._all(
            select(Round)
            .where(
                Round.status == POSTED,
                Round.remind_at.is_not(None),
                Round.remind_at <= now,
                Round.reminded_at.is_(None),
            )
            .order_by(Round.id)
        )

    async def due_closes(self, now: datetime) -> list[Round]:
        return await self._all(
            select(Round)
            .where(
                Round.status.in_(OPEN_STATUSES),
                Round.close_at.is_not(None),
                Round.close_at <= now,
            )
            .order_by(Round.id)
        )

    async def stranded_rounds(self, now: datetime) -> list[Round]:
        """Rounds waiting to be posted whose lease ran out and that have no outbox row
        (claimed by a version without the outbox): the sweep gives them one."""
        owed = select(OutboxEntry.id).where(OutboxEntry.round_id == Round.id)
        return await self._all(
            select(Round).where(
                Round.status.in_((CLAIMED, POSTING)),
                (Round.lease_until.is_(None)) | (Round.lease_until < now),
                ~owed.exists(),
            )
        )
