"""The one place that talks to the database. Every method is one committed transaction.

Callers get plain ORM objects that stay readable after the session closes
(``expire_on_commit=False``); they never hold a session themselves.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.storage.engine import create_engine, migrate
from bot.storage.models import (
    CLAIMED,
    CLOSED,
    OPEN_STATUSES,
    POSTED,
    POSTING,
    AppState,
    ChannelState,
    ProcessedEvent,
    Response,
    RotationEntry,
    Round,
)


class ChannelBusy(Exception):
    """Another round was opened in this channel at the same moment (by another process)."""


class _Lost(Exception):
    """Internal: a claim found its key taken; rolls the transaction back."""


class Store:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    async def open(cls, url: str) -> Store:
        engine = create_engine(url)
        await migrate(engine)
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session whose work is committed on success and rolled back on error."""
        async with self._sessions() as session, session.begin():
            yield session

    def _insert(self, table):
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    # ---- rounds -------------------------------------------------------------------------

    async def open_round(
        self, new: Round, *, rotation: RotationEntry | None, now: datetime
    ) -> tuple[Round, list[Round]]:
        """Close whatever is open in the channel and insert ``new``, atomically.

        Returns the new round and the rounds this closed (for their digests).
        """
        try:
            async with self.session() as s:
                closed = await self._close_open_rounds(s, new.channel, now)
                s.add(new)
                if rotation is not None:
                    await self._use_prompt(s, rotation)
        except IntegrityError as exc:
            raise ChannelBusy(new.channel) from exc
        return new, closed

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

    async def _close_open_rounds(self, s: AsyncSession, channel: str, now: datetime) -> list[Round]:
        rows = (
            await s.scalars(
                select(Round).where(Round.channel == channel, Round.status.in_(OPEN_STATUSES))
            )
        ).all()
        for r in rows:
            r.status, r.closed_at, r.anon_key, r.lease_until = CLOSED, now, None, None
        await s.flush()
        return list(rows)

    async def close_round(self, round_id: int, now: datetime) -> Round | None:
        """Close one open round and erase its anonymity key. None if it was not open.

        A conditional UPDATE, so when several processes close the same round at once
        exactly one of them gets it back (and posts the digest).
        """
        async with self.session() as s:
            result = await s.execute(
                update(Round)
                .where(Round.id == round_id, Round.status.in_(OPEN_STATUSES))
                .values(status=CLOSED, closed_at=now, anon_key=None, lease_until=None)
            )
            if result.rowcount != 1:
                return None
            return await s.get(Round, round_id)

    async def close_channel(self, channel: str, now: datetime) -> list[Round]:
        async with self.session() as s:
            return await self._close_open_rounds(s, channel, now)

    async def mark_posted(
        self, round_id: int, message_ref: str | None, thread_ref: str | None, now: datetime
    ) -> None:
        # Two conditional UPDATEs rather than read-then-write: another process may close
        # this round between our read and our write, and a closed round must stay closed.
        async with self.session() as s:
            await s.execute(
                update(Round)
                .where(Round.id == round_id)
                .values(
                    message_ref=message_ref,
                    thread_ref=thread_ref or message_ref,
                    posted_at=now,
                    lease_until=None,
                )
            )
            await s.execute(
                update(Round)
                .where(Round.id == round_id, Round.status.in_(OPEN_STATUSES))
                .values(status=POSTED)
            )

    async def update_round(self, round_id: int, **values: Any) -> None:
        async with self.session() as s:
            await s.execute(update(Round).where(Round.id == round_id).values(**values))

    async def get_round(self, round_id: int) -> Round | None:
        async with self.session() as s:
            return await s.get(Round, round_id)

    async def open_round_in(self, channel: str) -> Round | None:
        async with self.session() as s:
            return await s.scalar(
                select(Round).where(Round.channel == channel, Round.status.in_(OPEN_STATUSES))
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
        async with self.session() as s:
            query = select(Round).order_by(Round.created_at, Round.id)
            if channel:
                query = query.where(Round.channel == channel)
            if since:
                query = query.where(Round.created_at >= since)
            return list((await s.scalars(query)).all())

    async def count_respondents(self, round_ids: Iterable[int]) -> dict[int, int]:
        """Number of distinct people who answered, per round (never who)."""
        ids = list(round_ids)
        if not ids:
            return {}
        who = func.coalesce(Response.author_id, Response.pseudonym)
        async with self.session() as s:
            rows = await s.execute(
                select(Response.round_id, func.count(func.distinct(who)))
                .where(Response.round_id.in_(ids))
                .group_by(Response.round_id)
            )
            return {rid: n for rid, n in rows.all()}

    # ---- scheduling ---------------------------------------------------------------------

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
            async with self.session() as s:
                closed = list(
                    (
                        await s.scalars(
                            update(Round)
                            .where(Round.channel == new.channel, Round.status.in_(OPEN_STATUSES))
                            .values(status=CLOSED, closed_at=now, anon_key=None, lease_until=None)
                            .returning(Round)
                        )
                    ).all()
                )
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
        return claimed, closed

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

    async def occurrence_exists(self, schedule_name: str, channel: str, occurrence: str) -> bool:
        async with self.session() as s:
            found = await s.scalar(
                select(Round.id).where(
                    Round.schedule_name == schedule_name,
                    Round.channel == channel,
                    Round.occurrence == occurrence,
                )
            )
            return found is not None

    async def last_due(self, schedule_name: str, channel: str) -> datetime | None:
        """When the newest recorded occurrence of a schedule in a channel was due."""
        async with self.session() as s:
            return await s.scalar(
                select(func.max(Round.due_at)).where(
                    Round.schedule_name == schedule_name, Round.channel == channel
                )
            )

    async def start_posting(self, round_id: int, lease_until: datetime) -> bool:
        """claimed → posting, renewing the lease; False if the round is no longer claimed."""
        async with self.session() as s:
            result = await s.execute(
                update(Round)
                .where(Round.id == round_id, Round.status == CLAIMED)
                .values(status=POSTING, lease_until=lease_until)
            )
            return result.rowcount == 1

    async def stale_posting(self, now: datetime) -> list[Round]:
        """Rounds claimed or being posted whose lease ran out (their poster died)."""
        async with self.session() as s:
            return list(
                (
                    await s.scalars(
                        select(Round)
                        .where(
                            Round.status.in_((CLAIMED, POSTING)),
                            (Round.lease_until.is_(None)) | (Round.lease_until < now),
                        )
                        .order_by(Round.id)
                    )
                ).all()
            )

    async def take_lease(self, round_id: int, now: datetime, lease_until: datetime) -> bool:
        """Take over a round whose lease expired; exactly one process succeeds."""
        async with self.session() as s:
            result = await s.execute(
                update(Round)
                .where(
                    Round.id == round_id,
                    Round.status.in_((CLAIMED, POSTING)),
                    (Round.lease_until.is_(None)) | (Round.lease_until < now),
                )
                .values(status=POSTING, lease_until=lease_until)
            )
            return result.rowcount == 1

    async def give_up(self, round_id: int, status: str, reason: str, now: datetime) -> bool:
        """End a round that never got posted (recorded as missed, with the reason)."""
        async with self.session() as s:
            result = await s.execute(
                update(Round)
                .where(Round.id == round_id, Round.status.in_((CLAIMED, POSTING)))
                .values(
                    status=status,
                    status_reason=reason,
                    closed_at=now,
                    anon_key=None,
                    lease_until=None,
                )
            )
            return result.rowcount == 1

    async def due_reminders(self, now: datetime) -> list[Round]:
        async with self.session() as s:
            return list(
                (
                    await s.scalars(
                        select(Round)
                        .where(
                            Round.status == POSTED,
                            Round.remind_at.is_not(None),
                            Round.remind_at <= now,
                            Round.reminded_at.is_(None),
                        )
                        .order_by(Round.id)
                    )
                ).all()
            )

    async def claim_reminder(self, round_id: int, now: datetime) -> bool:
        """Mark a round reminded; exactly one process wins (and posts the reminder)."""
        async with self.session() as s:
            result = await s.execute(
                update(Round)
                .where(Round.id == round_id, Round.status == POSTED, Round.reminded_at.is_(None))
                .values(reminded_at=now)
            )
            return result.rowcount == 1

    async def due_closes(self, now: datetime) -> list[Round]:
        async with self.session() as s:
            return list(
                (
                    await s.scalars(
                        select(Round)
                        .where(
                            Round.status.in_(OPEN_STATUSES),
                            Round.close_at.is_not(None),
                            Round.close_at <= now,
                        )
                        .order_by(Round.id)
                    )
                ).all()
            )

    async def setdefault_value(self, key: str, value: str, now: datetime) -> str:
        """Store ``value`` under ``key`` unless one is there; return the stored value."""
        async with self.session() as s:
            await s.execute(
                self._insert(AppState)
                .values(key=key, value=value, updated_at=now)
                .on_conflict_do_nothing()
            )
            row = await s.get(AppState, key)
            return row.value if row else value

    # ---- responses ----------------------------------------------------------------------

    async def save_response(
        self, response: Response, *, replace_same_question: bool
    ) -> tuple[Response, bool]:
        """Insert an answer, or update the one it replaces. Returns (row, was_update).

        A message-backed answer (thread reply, console line) is keyed by its message id, so
        a redelivered event updates instead of duplicating. A form or command answer
        replaces the same person's earlier form answer to the same question.
        """
        async with self.session() as s:
            existing = None
            if response.message_ref is not None:
                existing = await s.scalar(
                    select(Response).where(
                        Response.round_id == response.round_id,
                        Response.message_ref == response.message_ref,
                    )
                )
            elif replace_same_question:
                who = (
                    Response.pseudonym == response.pseudonym
                    if response.anonymous
                    else Response.author_id == response.author_id
                )
                existing = await s.scalar(
                    select(Response).where(
                        Response.round_id == response.round_id,
                        Response.message_ref.is_(None),
                        Response.anonymous == response.anonymous,
                        who,
                        Response.question.is_(None)
                        if response.question is None
                        else Response.question == response.question,
                    )
                )
            if existing is not None:
                existing.text = response.text
                existing.edited_at = response.created_at
                return existing, True
            s.add(response)
            return response, False

    async def round_of_response(self, channel: str, message_ref: str) -> Round | None:
        """The round an answer posted as message ``message_ref`` belongs to."""
        async with self.session() as s:
            return await s.scalar(
                select(Round)
                .join(Response)
                .where(Round.channel == channel, Response.message_ref == message_ref)
            )

    async def edit_response(
        self, channel: str, message_ref: str, text: str, question: int | None, now: datetime
    ) -> Response | None:
        """Follow an edit, only while the round is open (its digest is final)."""
        async with self.session() as s:
            row = await s.scalar(
                select(Response)
                .join(Round)
                .where(
                    Round.channel == channel,
                    Response.message_ref == message_ref,
                    Round.status.in_(OPEN_STATUSES),
                )
            )
            if row is None:
                return None
            row.text, row.question, row.edited_at = text, question, now
            return row

    async def delete_response_by_message(self, channel: str, message_ref: str) -> bool:
        """Follow a deletion, only while the round is open (its digest is final)."""
        async with self.session() as s:
            ids = (
                select(Response.id)
                .join(Round)
                .where(
                    Round.channel == channel,
                    Response.message_ref == message_ref,
                    Round.status.in_(OPEN_STATUSES),
                )
            )
            result = await s.execute(delete(Response).where(Response.id.in_(ids)))
            return result.rowcount > 0

    async def delete_responses_of(
        self, round_id: int, *, author_id: str, pseudonym: str | None
    ) -> int:
        """Withdraw everything one person answered in a round (named and anonymous)."""
        async with self.session() as s:
            who = Response.author_id == author_id
            if pseudonym is not None:
                who = who | (Response.pseudonym == pseudonym)
            result = await s.execute(delete(Response).where(Response.round_id == round_id, who))
            return result.rowcount

    async def responses(self, round_id: int) -> list[Response]:
        async with self.session() as s:
            return list(
                (
                    await s.scalars(
                        select(Response).where(Response.round_id == round_id).order_by(Response.id)
                    )
                ).all()
            )

    # ---- rotation -----------------------------------------------------------------------

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

    # ---- channel state, events, app state -----------------------------------------------

    async def channel_state(self, channel: str) -> ChannelState | None:
        async with self.session() as s:
            return await s.get(ChannelState, channel)

    async def set_channel_state(self, channel: str, now: datetime, **values: Any) -> None:
        async with self.session() as s:
            state = await s.get(ChannelState, channel)
            if state is None:
                state = ChannelState(channel=channel, paused=False, skips_pending=0, updated_at=now)
                s.add(state)
            for key, value in values.items():
                setattr(state, key, value)
            state.updated_at = now

    async def first_time(self, key: str, now: datetime) -> bool:
        """Record a platform event id; False if it was already recorded (a redelivery)."""
        async with self.session() as s:
            result = await s.execute(
                self._insert(ProcessedEvent).values(key=key, seen_at=now).on_conflict_do_nothing()
            )
            return result.rowcount == 1

    async def get_value(self, key: str) -> str | None:
        async with self.session() as s:
            row = await s.get(AppState, key)
            return row.value if row else None

    async def set_value(self, key: str, value: str, now: datetime) -> None:
        async with self.session() as s:
            await s.execute(
                self._insert(AppState)
                .values(key=key, value=value, updated_at=now)
                .on_conflict_do_update(
                    index_elements=[AppState.key], set_={"value": value, "updated_at": now}
                )
            )
