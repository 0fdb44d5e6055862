"""How the store talks to the database: sessions, one transaction across several store
calls, SQLite's one writer taken in turn, and the set-aside connection for writes
whose commit need not wait for the disk. The tables' own queries live in the
``*_rows`` modules, each a part of ``Store`` over this base.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot.anonymity import Keyring
from bot.storage.privacy import truncate_wal

# The session of the transaction the current task runs in (``Store.transaction``).
_ambient: ContextVar[AsyncSession | None] = ContextVar("roundtable_transaction", default=None)
# What to do once that transaction has committed (``Store.on_commit``).
_on_commit: ContextVar[list[Callable[[], None]] | None] = ContextVar(
    "roundtable_on_commit", default=None
)

_WRITES_ROUNDS = ("INSERT INTO rounds ", "UPDATE rounds ", "DELETE FROM rounds ")
log = logging.getLogger(__name__)


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


def ambient_session() -> AsyncSession | None:
    """The session of the transaction the current task runs in (``transaction``), if any."""
    return _ambient.get()


class StoreBase:
    """Every method of a ``Store`` part is one committed transaction, unless it runs inside
    ``transaction()``: then it joins that one."""

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

    async def _all(self, query: Any) -> list[Any]:
        """The rows a SELECT of ORM objects finds, in a session of its own (or the
        current transaction's)."""
        async with self.session() as s:
            return list((await s.scalars(query)).all())

    def _insert(self, table):
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

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
