"""The one place that talks to the database. Every method is one committed transaction,
unless it runs inside ``Store.transaction()``: then it joins that one, so a handler's
writes, its outbox rows and its inbox row's "done" mark commit together.

Callers get plain ORM objects that stay readable after the session closes
(``expire_on_commit=False``); they never hold a session themselves.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, delete, event, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot.anonymity import Keyring
from bot.storage.engine import create_engine, migrate
from bot.storage.models import (
    CLAIMED,
    CLOSED,
    DONE,
    GAVE_UP,
    MISSED,
    NAMED_FORM_ANSWER,
    OPEN_STATUSES,
    PENDING,
    POSTED,
    POSTING,
    SENDING,
    SENT,
    AppState,
    ChannelState,
    InboxEntry,
    OutboxEntry,
    ProcessedEvent,
    Response,
    RotationEntry,
    Round,
)
from bot.storage.privacy import close_anonymity, respondent_counts, truncate_wal
from bot.storage.sqlite_driver import BUSY_CODES

# The session of the transaction the current task runs in (``Store.transaction``).
_ambient: ContextVar[AsyncSession | None] = ContextVar("roundtable_transaction", default=None)
# What to do once that transaction has committed (``Store.on_commit``).
_on_commit: ContextVar[list[Callable[[], None]] | None] = ContextVar(
    "roundtable_on_commit", default=None
)
REPLACED = "missed: never posted before the next round replaced it"
log = logging.getLogger(__name__)


class ChannelBusy(Exception):
    """Another round was opened in this channel at the same moment (by another process)."""


class _Lost(Exception):
    """Internal: a claim found its key taken; rolls the transaction back."""


# Statements of the answer path, built once: building a statement and its cache key
# cost more CPU per answer than executing it (values come in as bound parameters).
_responses = Response.__table__
_inbox = InboxEntry.__table__
_OPEN_ROUND = select(Round).where(
    Round.channel == bindparam("channel"), Round.status.in_(OPEN_STATUSES)
)
_WRITES_ROUNDS = ("INSERT INTO rounds ", "UPDATE rounds ", "DELETE FROM rounds ")
_RENAME = (
    update(_responses)
    .where(
        _responses.c.author_id == bindparam("who"),
        # no IN (…) of values: an expanding list cannot run as executemany
        _responses.c.round_id.in_(
            select(Round.id).where(or_(*(Round.status == status for status in OPEN_STATUSES)))
        ),
        _responses.c.author_name.is_distinct_from(bindparam("name")),
    )
    .values(author_name=bindparam("name"))
)
_CLAIM_MANY = (
    update(InboxEntry.__table__)
    .where(
        InboxEntry.__table__.c.id.in_(bindparam("ids", expanding=True)),
        InboxEntry.__table__.c.status == PENDING,
    )
    .values(status=DONE, processed_at=bindparam("now"), error=None, payload={})
    .returning(InboxEntry.__table__.c.id)
)
_SAVE_ANSWER: dict[tuple[str, str], Any] = {}


class _RawInsert:
    """An ``INSERT … ON CONFLICT DO NOTHING RETURNING id`` compiled by SQLAlchemy once,
    with each column's own conversion (JSON, UTC datetimes), to run on the DBAPI
    connection directly."""

    def __init__(self, table: Any, dialect: Any, columns: Sequence[str]):
        statement = sqlite.insert(table).on_conflict_do_nothing().returning(table.c.id)
        compiled = statement.compile(dialect=dialect, column_keys=list(columns))
        self.sql = str(compiled)
        self.names = list(compiled.positiontup or [])
        self._convert = {
            name: table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self.names
        }

    def params(self, rows: Sequence[Sequence[Any]], own: Sequence[str], shared: dict) -> list:
        """Each row's parameters in the statement's order: ``rows`` hold the values of
        the ``own`` columns, ``shared`` the values every row has (converted once)."""
        template = [self._db(name, shared[name]) if name in shared else None for name in self.names]
        slots = [(self.names.index(name), self._convert[name]) for name in own]
        params = []
        for row in rows:
            values = template.copy()
            for (where, to_db), value in zip(slots, row, strict=True):
                values[where] = value if to_db is None else to_db(value)
            params.append(tuple(values))
        return params

    def _db(self, name: str, value: Any) -> Any:
        to_db = self._convert[name]
        return value if to_db is None else to_db(value)


def _busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in BUSY_CODES


class WriterTurn:
    """SQLite's one writer, taken in turn in-process. An urgent turn (a person is
    waiting for the ack on it) goes before every queued ordinary one."""

    def __init__(self) -> None:
        self._held = False
        self._urgent: collections.deque[asyncio.Future[None]] = collections.deque()
        self._ordinary: collections.deque[asyncio.Future[None]] = collections.deque()

    @contextlib.asynccontextmanager
    async def hold(self, *, urgent: bool = False) -> AsyncIterator[None]:
        if self._held or self._urgent or (self._ordinary and not urgent):
            queue = self._urgent if urgent else self._ordinary
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            queue.append(turn)
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._pass_on()  # handed the turn just as we were cancelled
                else:
                    queue.remove(turn)
                raise
        else:
            self._held = True
        try:
            yield
        finally:
            self._pass_on()

    def _pass_on(self) -> None:
        for queue in (self._urgent, self._ordinary):
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)  # still held: it passes straight to them
                    return
        self._held = False


class Store:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        # the server secret, for opening anonymous answers' tags (bot.storage.privacy)
        self.keyring: Keyring | None = None
        self._sessions = async_sessionmaker(engine, expire_on_commit=False, info={"store": self})
        # SQLite has one writer and every transaction here begins IMMEDIATE: queueing them
        # in-process is far cheaper than letting connections meet SQLite's busy handler,
        # which sleeps in steps of up to 100 ms. (Other processes still wait on busy_timeout.)
        self._one_writer = WriterTurn() if engine.dialect.name == "sqlite" else None
        self._wal_dirty = False  # a round closed: truncate SQLite's WAL once committed
        # bumped by every statement that writes the rounds table (see open_round_in)
        self._rounds_written = 0
        self._unflushed_sqlite: AsyncConnection | None = None  # see _unflushed
        self._unflushed_driver: Any = None  # its InlineConnection
        self._inbox_insert: _RawInsert | None = None  # see _inbox_add_sqlite
        event.listen(engine.sync_engine, "before_cursor_execute", self._note_round_writes)

    def _note_round_writes(self, _conn, _cursor, statement: str, *_: Any) -> None:
        if statement.startswith(_WRITES_ROUNDS):
            self._rounds_written += 1

    def _closed_something(self) -> None:
        self._wal_dirty = True

    async def _scrub(self) -> None:
        """After a commit that closed rounds, outside any transaction: empty SQLite's WAL
        so the erased keys and pseudonyms survive in no file (bot.storage.privacy)."""
        if self._wal_dirty and _ambient.get() is None:
            self._wal_dirty = False
            async with self._turn():
                await truncate_wal(self.engine)

    @classmethod
    async def open(cls, url: str, keyring: object | None = None) -> Store:
        engine = create_engine(url)
        await migrate(engine, keyring)
        await truncate_wal(engine)  # no erased key bytes left behind by the migration
        store = cls(engine)
        store.keyring = keyring  # type: ignore[assignment]  (a Keyring, or None: loaded later)
        return store

    async def close(self) -> None:
        if self._unflushed_sqlite is not None:
            await self._unflushed_sqlite.close()
            self._unflushed_sqlite = None
        await self.engine.dispose()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session whose work is committed on success and rolled back on error.

        Inside ``transaction()`` this is the transaction's session (nothing commits yet).
        """
        current = _ambient.get()
        if current is not None:
            yield current
            return
        async with self._turn(), self._sessions() as session, session.begin():
            yield session

    def _turn(self, *, urgent: bool = False) -> contextlib.AbstractAsyncContextManager:
        if self._one_writer is None:
            return contextlib.nullcontext()
        return self._one_writer.hold(urgent=urgent)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """Run every store call inside the block in one transaction (all or nothing).

        Never start tasks inside the block: they would share its session.
        """
        current = _ambient.get()
        if current is not None:
            yield current
            return
        committed: list[Callable[[], None]] = []
        async with self._turn(), self._sessions() as session, session.begin():
            token, actions = _ambient.set(session), _on_commit.set(committed)
            try:
                yield session
            finally:
                _ambient.reset(token)
                _on_commit.reset(actions)
        for action in committed:
            try:  # committed already: a failing count must not look like a failed write
                action()
            except Exception:
                log.exception("an action after a commit failed")
        await self._scrub()

    def on_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the current transaction has committed (at once outside
        one): a count of what a transaction did must not count an attempt that rolled
        back, such as a batch redone row by row or a retry after the database went away."""
        pending = _on_commit.get()
        if pending is None:
            action()
        else:
            pending.append(action)

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """Inside ``transaction()``: a step that rolls back alone (an expected conflict,
        one row of a batch), and with it the ``on_commit`` actions it asked for. Outside
        one, nothing: the step's own session is its transaction."""
        session = _ambient.get()
        if session is None:
            yield
            return
        pending = _on_commit.get()
        mark = len(pending) if pending is not None else 0
        try:
            async with session.begin_nested():
                yield
        except BaseException:
            if pending is not None:
                del pending[mark:]
            raise

    async def exclusive(self, key: bytes) -> None:
        """Until the current transaction ends, other transactions that ask for the same
        ``key`` wait (several instances on PostgreSQL: a transaction-scoped advisory
        lock, held in the server's memory and written nowhere, named by a hash of
        ``key``). SQLite runs one write transaction at a time already."""
        if self.dialect != "postgresql":
            return
        async with self.session() as s:
            digest = hashlib.sha256(b"roundtable exclusive|" + key).digest()
            lock = int.from_bytes(digest[:8], "big", signed=True)
            await s.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": lock})

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
                await self._cancel_posts(s, [r.id], REPLACED)
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
                    await self._cancel_posts(s, [round_id], unposted_reason)
                    await close_anonymity(s, [round_id])
        if closed is not None:
            await self._scrub()
        return closed

    async def close_channel(self, channel: str, now: datetime) -> list[Round]:
        async with self.session() as s:
            closed = await self._close_open_rounds(s, channel, now)
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

    async def update_round(self, round_id: int, **values: Any) -> None:
        async with self.session() as s:
            await s.execute(update(Round).where(Round.id == round_id).values(**values))

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
        current = _ambient.get()
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
        async with self.session() as s:  # anonymous authors: tags opened in Python
            return {rid: n for rid, (n, _) in (await respondent_counts(s, ids)).items()}

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
                await self._cancel_posts(s, unposted, REPLACED)
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

    async def responses_of(self, round_ids: list[int]) -> dict[int, list[Response]]:
        if not round_ids:
            return {}
        async with self.session() as s:
            rows = await s.scalars(
                select(Response).where(Response.round_id.in_(round_ids)).order_by(Response.id)
            )
            out: dict[int, list[Response]] = {}
            for row in rows.all():
                out.setdefault(row.round_id, []).append(row)
            return out

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

    async def channel_states(self, channels: list[str]) -> dict[str, ChannelState]:
        async with self.session() as s:
            rows = await s.scalars(select(ChannelState).where(ChannelState.channel.in_(channels)))
            return {row.channel: row for row in rows.all()}

    async def values_with_prefix(self, prefix: str) -> dict[str, str]:
        async with self.session() as s:
            rows = await s.scalars(select(AppState).where(AppState.key.startswith(prefix)))
            return {row.key: row.value for row in rows.all()}

    async def last_due(self, schedule_name: str, channel: str) -> datetime | None:
        """When the newest recorded occurrence of a schedule in a channel was due."""
        async with self.session() as s:
            return await s.scalar(
                select(func.max(Round.due_at)).where(
                    Round.schedule_name == schedule_name, Round.channel == channel
                )
            )

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
        """Insert an answer, or update the one it replaces, in one statement. Returns
        (row, was_update).

        A message-backed answer (thread reply, console line) is keyed by its message id, so
        a redelivered event updates instead of duplicating. A named form or command answer
        replaces the same person's earlier form answer to the same question (a unique
        index holds this: migration 0005). The update sets ``edited_at``, which a new
        row never has: that is how the statement tells which one it did.
        """
        if response.message_ref is not None:
            kind = "message"
        elif replace_same_question and not response.anonymous and response.author_id:
            kind = "question"
        else:
            kind = "insert"
        values = {
            column.key: value
            for column in _responses.columns
            if column.key not in ("id", "edited_at")
            and ((value := getattr(response, column.key)) is not None or column.default is None)
        }
        async with self.session() as s:
            row_id, edited_at = (
                await (await s.connection()).execute(self._save_answer(kind), values)
            ).one()
        response.id = row_id
        if edited_at is not None:
            response.edited_at = edited_at
        return response, edited_at is not None

    def _save_answer(self, kind: str) -> Any:
        """The statement ``save_response`` runs, built once per dialect and kind."""
        key = (self.dialect, kind)
        if key not in _SAVE_ANSWER:
            insert_row = self._insert(_responses)
            if kind == "message":
                insert_row = insert_row.on_conflict_do_update(
                    index_elements=[_responses.c.round_id, _responses.c.message_ref],
                    set_={
                        "text": insert_row.excluded.text,
                        "edited_at": insert_row.excluded.created_at,
                    },
                )
            elif kind == "question":
                insert_row = insert_row.on_conflict_do_update(
                    index_elements=[
                        _responses.c.round_id,
                        _responses.c.author_id,
                        text("COALESCE(question, 0)"),
                    ],
                    index_where=text(NAMED_FORM_ANSWER),
                    set_={
                        "text": insert_row.excluded.text,
                        "edited_at": insert_row.excluded.created_at,
                    },
                )
            _SAVE_ANSWER[key] = insert_row.returning(_responses.c.id, _responses.c.edited_at)
        return _SAVE_ANSWER[key]

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
        self, round_id: int, *, author_id: str, anonymous_ids: Sequence[int] = ()
    ) -> int:
        """Withdraw everything one person answered in a round: named answers by author,
        anonymous ones by id (found by opening the round's tags)."""
        async with self.session() as s:
            who = Response.author_id == author_id
            if anonymous_ids:
                who = who | Response.id.in_(list(anonymous_ids))
            result = await s.execute(delete(Response).where(Response.round_id == round_id, who))
            return result.rowcount

    async def rename_authors(self, names: dict[str, str]) -> int:
        """Set display names (author id → name) of named answers in open rounds, all in
        one transaction that need not wait for the disk (a name is no promise)."""
        if not names:
            return 0
        async with self._unflushed() as connection:
            result = await connection.execute(
                _RENAME, [{"who": who, "name": name} for who, name in names.items()]
            )
            return result.rowcount or 0

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
        """Record a platform event id; False if it was already recorded (a redelivery).
        Not on the write path any more (the inbox's key dedups); kept for the rows of
        ``processed_events`` that forget-me and its tests deal with."""
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

    # ---- inbox --------------------------------------------------------------------------

    async def inbox_add(self, key: str, payload: dict, now: datetime) -> int | None:
        """Store an incoming event durably; None if its key is known (a redelivery)."""
        async with self.session() as s:
            return (
                await s.execute(
                    self._insert(InboxEntry)
                    .values(
                        key=key,
                        payload=payload,
                        status=PENDING,
                        attempts=0,
                        not_before=now,
                        created_at=now,
                    )
                    .on_conflict_do_nothing()
                    .returning(InboxEntry.id)
                )
            ).scalar()

    async def inbox_add_many(
        self, items: Sequence[tuple[str, dict]], now: datetime
    ) -> dict[str, int]:
        """Store several incoming events in one transaction whose commit does not wait
        for the disk (``_unflushed``): {key: id} for those that were new; known keys
        (redeliveries) are left out. A person waits for this one (the ack)."""
        shared = {"status": PENDING, "attempts": 0, "not_before": now, "created_at": now}
        if self.dialect == "sqlite" and _ambient.get() is None:
            return await self._inbox_add_sqlite(items, shared)
        rows = [{"key": key, "payload": payload, **shared} for key, payload in items]
        insert_rows = self._insert(_inbox).on_conflict_do_nothing()
        insert_rows = insert_rows.returning(_inbox.c.id, _inbox.c.key)
        async with self._unflushed() as connection:
            result = await connection.execute(insert_rows, rows)
            return {key: entry_id for entry_id, key in result.all()}

    async def _inbox_add_sqlite(
        self, items: Sequence[tuple[str, dict]], shared: dict[str, Any]
    ) -> dict[str, int]:
        """``inbox_add_many`` on SQLite: the statement SQLAlchemy compiled once, run
        straight on the set-aside connection (``InlineConnection.write_now``). Through
        the ORM's execution path it cost ten times the INSERT itself, all of it inside
        the ack."""
        if self._inbox_insert is None:
            columns = ("key", "payload", "status", "attempts", "not_before", "created_at")
            self._inbox_insert = _RawInsert(_inbox, self.engine.dialect, columns)
        insert = self._inbox_insert
        params = insert.params(items, ("key", "payload"), shared)
        async with self._turn(urgent=True):
            connection = await self._unflushed_connection()
            try:
                returned = await self._unflushed_driver.write_now(insert.sql, params)
            except sqlite3.Error as exc:
                if not _busy(exc):  # start again on a new connection next time
                    self._unflushed_sqlite = None
                    await connection.invalidate()
                    await connection.close()
                raise OperationalError(insert.sql, None, exc) from exc
        return {key: ids[0][0] for (key, _), ids in zip(items, returned, strict=True) if ids}

    @contextlib.asynccontextmanager
    async def _unflushed(self) -> AsyncIterator[AsyncConnection]:
        """A transaction whose commit does not wait for the disk flush, for writes that
        promise nobody anything yet: the inbox row before the ack, a corrected display
        name. It survives the bot being killed (SQLite WAL with synchronous=NORMAL,
        PostgreSQL synchronous_commit=off); the next ordinary commit's flush, which
        comes before anyone is told "saved", covers it (docs/performance.md)."""
        current = _ambient.get()
        if current is not None:  # part of a larger transaction: commits with it
            yield await current.connection()
            return
        if self.dialect != "sqlite":
            async with self.engine.connect() as connection, connection.begin():
                await connection.execute(text("SET LOCAL synchronous_commit TO OFF"))
                yield connection
            return
        # SQLite: one connection set aside, whose commits never wait for the disk (the
        # level can only change between transactions; keeping it saves a pool checkout
        # and three statements per ack)
        async with self._turn(urgent=True):
            connection = await self._unflushed_connection()
            try:
                async with connection.begin():
                    yield connection
            except BaseException:
                if connection.invalidated:
                    self._unflushed_sqlite = None
                    await connection.close()
                raise

    async def _unflushed_connection(self) -> AsyncConnection:
        if self._unflushed_sqlite is None:
            connection = await self.engine.connect()
            raw = await connection.get_raw_connection()
            raw.driver_connection.commit_without_fsync()
            self._unflushed_sqlite = connection
            self._unflushed_driver = raw.driver_connection
        return self._unflushed_sqlite

    async def inbox_claim(self, entry_id: int, now: datetime) -> bool:
        """Mark a pending row done in the current transaction, first thing: it commits
        (or rolls back) together with the handler's writes. False: done elsewhere."""
        async with self.session() as s:
            result = await s.execute(
                update(InboxEntry)
                .where(InboxEntry.id == entry_id, InboxEntry.status == PENDING)
                .values(status=DONE, processed_at=now, error=None, payload={})
            )
            return result.rowcount == 1

    async def inbox_claim_many(self, entry_ids: Sequence[int], now: datetime) -> set[int]:
        """``inbox_claim`` for several rows in one statement: the ids that were pending."""
        async with self.session() as s:
            result = await s.execute(_CLAIM_MANY, {"ids": sorted(set(entry_ids)), "now": now})
            return set(result.scalars().all())

    async def inbox_take(self, entry_id: int) -> InboxEntry | None:
        """Lock a pending row for processing in the current transaction (None: done, or
        another instance is processing it right now)."""
        async with self.session() as s:
            query = select(InboxEntry).where(
                InboxEntry.id == entry_id, InboxEntry.status == PENDING
            )
            if self.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            return await s.scalar(query.execution_options(populate_existing=True))

    async def inbox_done(self, entry_id: int, now: datetime) -> None:
        async with self.session() as s:
            await s.execute(
                update(InboxEntry)
                .where(InboxEntry.id == entry_id)
                .values(status=DONE, processed_at=now, error=None, payload={})
            )

    async def inbox_attempt_failed(
        self, entry_id: int, error: str, now: datetime, retry_at: datetime | None
    ) -> None:
        """Count a failed attempt; with no ``retry_at`` the row is given up (failed)."""
        async with self.session() as s:
            values: dict[str, Any] = {
                "attempts": InboxEntry.attempts + 1,
                "error": error[:300],
                "not_before": retry_at,
            }
            if retry_at is None:
                values.update(status=GAVE_UP, processed_at=now, payload={})
            await s.execute(
                update(InboxEntry)
                .where(InboxEntry.id == entry_id, InboxEntry.status == PENDING)
                .values(**values)
            )

    async def inbox_due(self, now: datetime, limit: int = 500) -> list[InboxEntry]:
        async with self.session() as s:
            return list(
                (
                    await s.scalars(
                        select(InboxEntry)
                        .where(
                            InboxEntry.status == PENDING,
                            (InboxEntry.not_before.is_(None)) | (InboxEntry.not_before <= now),
                        )
                        .order_by(InboxEntry.id)
                        .limit(limit)
                    )
                ).all()
            )

    async def inbox_get(self, entry_id: int) -> InboxEntry | None:
        async with self.session() as s:
            return await s.get(InboxEntry, entry_id, populate_existing=True)

    async def prune(self, before: datetime) -> int:
        """Drop processed inbox rows, delivered or abandoned outbox rows and dedup marks
        older than ``before``: they only guard against redeliveries inside that window."""
        async with self.session() as s:
            n = 0
            for stmt in (
                delete(InboxEntry).where(
                    InboxEntry.status.in_((DONE, GAVE_UP)), InboxEntry.created_at < before
                ),
                delete(OutboxEntry).where(
                    OutboxEntry.status.in_((SENT, GAVE_UP)), OutboxEntry.created_at < before
                ),
                delete(ProcessedEvent).where(ProcessedEvent.seen_at < before),
            ):
                n += (await s.execute(stmt)).rowcount or 0
            return n

    # ---- outbox -------------------------------------------------------------------------

    async def outbox_add(self, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
        """Insert outbox rows (in the caller's transaction) in one statement; a known key
        inserts nothing. Returns {key: id} of the rows inserted."""
        if not rows:
            return {}
        outbox = OutboxEntry.__table__
        async with self.session() as s:  # Core: the ORM's unit of work costs more than the rest
            result = await (await s.connection()).execute(
                self._insert(outbox).on_conflict_do_nothing().returning(outbox.c.id, outbox.c.key),
                list(rows),
            )
            return {key: row_id for row_id, key in result.all()}

    async def outbox_lease_due(
        self, now: datetime, lease_until: datetime, limit: int = 200
    ) -> list[OutboxEntry]:
        """Take the rows that are due (pending, or sending with an expired lease: their
        sender died) for delivery by this process. On PostgreSQL several instances share
        the work: rows another instance has locked are skipped, not waited for."""
        async with self.session() as s:
            due = (
                (OutboxEntry.status == PENDING)
                & ((OutboxEntry.not_before.is_(None)) | (OutboxEntry.not_before <= now))
            ) | ((OutboxEntry.status == SENDING) & (OutboxEntry.lease_until < now))
            query = select(OutboxEntry).where(due).order_by(OutboxEntry.id).limit(limit)
            if self.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = list((await s.scalars(query.execution_options(populate_existing=True))).all())
            if rows:
                await s.execute(
                    update(OutboxEntry)
                    .where(OutboxEntry.id.in_([r.id for r in rows]))
                    .values(status=SENDING, lease_until=lease_until)
                )
            return rows

    async def outbox_sent(self, entry_id: int, now: datetime) -> None:
        async with self.session() as s:
            await s.execute(
                update(OutboxEntry)
                .where(OutboxEntry.id == entry_id)
                .values(status=SENT, sent_at=now, lease_until=None, error=None)
            )

    async def outbox_sent_many(self, ids: list[int], now: datetime) -> None:
        async with self.session() as s:
            await s.execute(
                update(OutboxEntry)
                .where(OutboxEntry.id.in_(ids))
                .values(status=SENT, sent_at=now, lease_until=None, error=None)
            )

    async def outbox_retry(self, entry_id: int, error: str, retry_at: datetime) -> None:
        async with self.session() as s:
            await s.execute(
                update(OutboxEntry)
                .where(OutboxEntry.id == entry_id)
                .values(
                    status=PENDING,
                    attempts=OutboxEntry.attempts + 1,
                    error=error[:300],
                    not_before=retry_at,
                    lease_until=None,
                )
            )

    async def outbox_give_up(self, entry_id: int, reason: str) -> None:
        async with self.session() as s:
            await s.execute(
                update(OutboxEntry)
                .where(OutboxEntry.id == entry_id)
                .values(status=GAVE_UP, error=reason[:300], lease_until=None)
            )

    async def _cancel_posts(self, s: AsyncSession, round_ids: list[int], reason: str) -> None:
        """Pending posts of rounds that ended unposted are never delivered."""
        await s.execute(
            update(OutboxEntry)
            .where(
                OutboxEntry.round_id.in_(round_ids),
                OutboxEntry.status.in_((PENDING, SENDING)),
            )
            .values(status=GAVE_UP, error=reason[:300], lease_until=None)
        )

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
            await self._cancel_posts(s, [round_id], reason)
            if result.rowcount == 1:
                await close_anonymity(s, [round_id])
            return result.rowcount == 1

    async def stranded_rounds(self, now: datetime) -> list[Round]:
        """Rounds waiting to be posted whose lease ran out and that have no outbox row
        (claimed by a version without the outbox): the sweep gives them one."""
        async with self.session() as s:
            owed = select(OutboxEntry.id).where(OutboxEntry.round_id == Round.id)
            return list(
                (
                    await s.scalars(
                        select(Round).where(
                            Round.status.in_((CLAIMED, POSTING)),
                            (Round.lease_until.is_(None)) | (Round.lease_until < now),
                            ~owed.exists(),
                        )
                    )
                ).all()
            )
