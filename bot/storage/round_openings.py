"""Opening rounds: by hand (``/discuss now``) or by claiming a scheduled occurrence in
one or many channels, with the prompt rotation each opening advances.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.models import (
    CLOSED,
    MISSED,
    OPEN_STATUSES,
    POSTED,
    ChannelState,
    RotationEntry,
    Round,
)
from bot.storage.outbox_rows import cancel_posts
from bot.storage.privacy import close_anonymity
from bot.storage.round_rows import REPLACED, ChannelBusy, RoundRows


class _Lost(Exception):
    """Internal: a claim found its key taken; rolls the transaction back."""


class RoundOpenings(RoundRows):
    """A new round closes the channel's open one in the same transaction."""

    async def open_round(
        self, new: Round, *, rotation: RotationEntry | None, now: datetime
    ) -> tuple[Round, list[Round]]:
        """Close whatever is open in the channel and insert ``new``, atomically.

        Returns the new round and the rounds this closed (for their digests).
        """
        try:
            async with self.session() as s, self.savepoint():
                closed = await self._close_open_rounds(s, new.channel, now)
                s.add(new)
                if rotation is not None:
                    await self._use_prompt(s, rotation)
                await s.flush()
        except IntegrityError as exc:
            raise ChannelBusy(new.channel) from exc
        await self._scrub()
        return new, closed

    async def claim_occurrence(
        self, new: Round, *, rotation: RotationEntry | None, now: datetime
    ) -> tuple[Round | None, list[Round]]:
        """Claim one (schedule, channel, occurrence) and close the channel's open round.

        ``INSERT … ON CONFLICT DO NOTHING`` on the unique key decides who posts: when the
        row already exists (another process, an earlier run) or another round was opened
        in the channel at the same moment, nothing changes and (None, []) comes back.
        """
        values = {c.key: getattr(new, c.key) for c in Round.__table__.columns if c.key != "id"}
        try:
            async with self.session() as s, self.savepoint():
                closed = await self._close_open_rounds(s, new.channel, now)
                round_id = (
                    await s.execute(
                        self._insert(Round)
                        .values(**values)
                        .on_conflict_do_nothing()
                        .returning(Round.id)
                    )
                ).scalar()
                if round_id is None:
                    raise _Lost
                if rotation is not None:
                    await self._use_prompt(s, rotation)
                claimed = await s.get(Round, round_id)
        except _Lost:
            return None, []
        await self._scrub()
        return claimed, closed

    async def claim_many(
        self, news: list[Round], rotation: list[RotationEntry], now: datetime
    ) -> tuple[list[Round], list[Round]]:
        """``claim_occurrence`` for many channels in a few statements: close their open
        rounds (posted → closed, unposted → missed), insert the new rounds (a taken key
        inserts nothing), mark the prompts used. Returns (claimed, closed-with-digest).
        Ids come back in no particular order.

        The caller has checked, in this transaction and under ``lock_occurrence``, that
        the occurrence is not taken in these channels.
        """
        if not news:
            return [], []
        columns = [c.key for c in Round.__table__.columns if c.key != "id"]
        async with self.session() as s:
            channels = [n.channel for n in news]
            open_rows = list(
                (
                    await s.scalars(
                        select(Round).where(
                            Round.channel.in_(channels), Round.status.in_(OPEN_STATUSES)
                        )
                    )
                ).all()
            )
            posted = [r for r in open_rows if r.status == POSTED]
            unposted = [r.id for r in open_rows if r.status != POSTED]
            gone = {"closed_at": now, "lease_until": None}  # close_anonymity erases anon_key
            if posted:
                await s.execute(
                    update(Round)
                    .where(Round.id.in_([r.id for r in posted]))
                    .values(status=CLOSED, **gone)
                    .execution_options(synchronize_session=False)
                )
                for r in posted:
                    r.status, r.closed_at, r.lease_until = CLOSED, now, None
            if unposted:
                await s.execute(
                    update(Round)
                    .where(Round.id.in_(unposted))
                    .values(status=MISSED, status_reason=REPLACED, **gone)
                    .execution_options(synchronize_session=False)
                )
                await cancel_posts(s, unposted, REPLACED)
            values = [{c: getattr(n, c) for c in columns} for n in news]
            rounds = Round.__table__
            result = await (await s.connection()).execute(
                self._insert(rounds)
                .on_conflict_do_nothing()
                .returning(rounds.c.id, rounds.c.channel),
                values,
            )
            ids = {channel: round_id for round_id, channel in result.all()}
            claimed = []
            for new in news:  # transient objects: given their ids, they are the rows
                if new.channel in ids:
                    new.id = ids[new.channel]
                    claimed.append(new)
            used = [
                {
                    "channel": e.channel,
                    "prompt_set": e.prompt_set,
                    "cycle": e.cycle,
                    "prompt_id": e.prompt_id,
                    "used_at": e.used_at,
                }
                for e in rotation
                if e.channel in ids
            ]
            if used:
                await (await s.connection()).execute(
                    self._insert(RotationEntry.__table__).on_conflict_do_nothing(), used
                )
            if open_rows:
                await close_anonymity(s, [r.id for r in open_rows], rows=posted)
                self._closed_something()
        await self._scrub()
        return claimed, posted

    async def lock_occurrence(self, schedule_name: str, occurrence: str) -> None:
        """Serialise claimers of one occurrence for the rest of the transaction (SQLite's
        BEGIN IMMEDIATE already does; PostgreSQL takes a transaction advisory lock)."""
        if self.dialect == "postgresql":
            async with self.session() as s:
                await s.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                    {"k": f"occurrence:{schedule_name}:{occurrence}"},
                )

    async def record_occurrence(self, row: Round, *, consume_skip: bool = False) -> bool:
        """Record an occurrence that posts nothing (skipped, missed), at most once.

        With ``consume_skip`` a pending ``/discuss skip`` is used up in the same
        transaction, only by the process whose row was inserted.
        """
        values = {c.key: getattr(row, c.key) for c in Round.__table__.columns if c.key != "id"}
        async with self.session() as s:
            result = await s.execute(self._insert(Round).values(**values).on_conflict_do_nothing())
            if result.rowcount != 1:
                return False
            if consume_skip:
                await s.execute(
                    update(ChannelState)
                    .where(ChannelState.channel == row.channel, ChannelState.skips_pending > 0)
                    .values(skips_pending=ChannelState.skips_pending - 1, updated_at=row.created_at)
                )
            return True

    async def occurrences_taken(
        self, schedule_name: str, occurrence: str, channels: list[str]
    ) -> set[str]:
        """The channels where this occurrence is already decided (one query for all)."""
        async with self.session() as s:
            rows = await s.scalars(
                select(Round.channel).where(
                    Round.schedule_name == schedule_name,
                    Round.occurrence == occurrence,
                    Round.channel.in_(channels),
                )
            )
            return set(rows.all())

    async def last_dues(self) -> dict[tuple[str, str], datetime]:
        """When the newest recorded occurrence was due, per (schedule, channel)."""
        async with self.session() as s:
            rows = await s.execute(
                select(Round.schedule_name, Round.channel, func.max(Round.due_at))
                .where(Round.schedule_name.is_not(None))
                .group_by(Round.schedule_name, Round.channel)
            )
            return {(name, channel): due for name, channel, due in rows.all() if due is not None}

    async def _use_prompt(self, s: AsyncSession, entry: RotationEntry) -> None:
        """Mark a prompt as seen in the channel's current pass (idempotent)."""
        await s.execute(
            self._insert(RotationEntry)
            .values(
                channel=entry.channel,
                prompt_set=entry.prompt_set,
                cycle=entry.cycle,
                prompt_id=entry.prompt_id,
                used_at=entry.used_at,
            )
            .on_conflict_do_nothing()
        )

    async def rotation(self, channel: str, prompt_set: str) -> tuple[int, set[str]]:
        """The current pass number and the prompt ids already used in it."""
        async with self.session() as s:
            cycle = await s.scalar(
                select(func.max(RotationEntry.cycle)).where(
                    RotationEntry.channel == channel, RotationEntry.prompt_set == prompt_set
                )
            )
            if cycle is None:
                return 0, set()
            used = await s.scalars(
                select(RotationEntry.prompt_id).where(
                    RotationEntry.channel == channel,
                    RotationEntry.prompt_set == prompt_set,
                    RotationEntry.cycle == cycle,
                )
            )
            return cycle, set(used.all())

    async def rotations(
        self, channels: list[str], prompt_set: str
    ) -> dict[str, tuple[int, set[str]]]:
        """``rotation`` for many channels in one query."""
        async with self.session() as s:
            rows = (
                await s.execute(
                    select(
                        RotationEntry.channel, RotationEntry.cycle, RotationEntry.prompt_id
                    ).where(
                        RotationEntry.channel.in_(channels),
                        RotationEntry.prompt_set == prompt_set,
                    )
                )
            ).all()
        state: dict[str, tuple[int, set[str]]] = {}
        for channel, cycle, prompt_id in rows:
            current, used = state.get(channel, (cycle, set()))
            if cycle > current:
                current, used = cycle, set()
            if cycle == current:
                used.add(prompt_id)
            state[channel] = (current, used)
        return state
