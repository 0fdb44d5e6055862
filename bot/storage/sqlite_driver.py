"""aiosqlite's interface without its per-call thread hop; the commit waits in a thread.

aiosqlite runs every call (cursor, execute, fetch, close) on its own worker thread: four
thread hand-offs per statement, each a queue put, a wake-up and a callback into the
event loop. For a local SQLite file the statements themselves take microseconds, far
less than the hand-off, and they never wait for the disk in WAL mode: only COMMIT does
(the fsync of ``synchronous=FULL``), as do a WAL checkpoint and VACUUM. So statements
run in the event loop's thread and those run in a worker thread, where waiting for the
disk blocks nobody.

``busy_timeout`` is 0 on these connections: a statement that meets another process's
write lock (a CLI command, a migration) raises SQLITE_BUSY at once and is retried here
with ``asyncio.sleep``, so the event loop never sleeps inside SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import aiosqlite

BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
BUSY_WAIT = 30.0  # seconds a statement waits for another process's lock, then fails
# statements that write the database file and wait for the disk, as COMMIT does
_WAITS = ("PRAGMA WAL_CHECKPOINT", "VACUUM")


class InlineConnection(aiosqlite.Connection):
    """An ``aiosqlite.Connection`` that calls sqlite3 directly (see the module doc)."""

    fsync_commits = True  # False: see ``commit_without_fsync``

    def __await__(self):  # no worker thread to start
        return self._connect().__await__()

    def commit_without_fsync(self) -> None:
        """From now on this connection's commits do not wait for the disk
        (``synchronous=NORMAL``): in WAL mode such a commit survives the process being
        killed, and the next commit on a connection that does fsync makes it durable
        with its own. For a connection set aside for such writes (``Store._unflushed``)."""
        if self._conn.in_transaction:
            raise RuntimeError("commit_without_fsync must come before a transaction begins")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        # nor run a WAL checkpoint (which writes and fsyncs the database file) inline:
        # the other connections' commits, in a worker thread, do that
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self.fsync_commits = False

    async def insert_now(self, sql: str, rows: list[tuple]) -> list[int | None]:
        """Run the INSERT ``sql`` once per row, in one short transaction, straight on
        sqlite3 in the loop's thread: no SQLAlchemy, no thread hand-off (one row: the
        statement is its own transaction; several: BEGIN IMMEDIATE … COMMIT). For the
        ack's inbox INSERT on the connection set aside by ``commit_without_fsync``, whose
        commit does not wait for the disk. Returns each row's new rowid, or None where
        it inserted nothing (``ON CONFLICT DO NOTHING``): read from the cursor, which
        costs less than a ``RETURNING`` clause's extra step and fetch. Another
        process's lock is waited for as usual."""
        if self.fsync_commits:
            raise RuntimeError("insert_now is for a connection whose commits do not fsync")

        def one(conn: sqlite3.Connection, row: tuple) -> int | None:
            cursor = conn.execute(sql, row)
            return cursor.lastrowid if cursor.rowcount == 1 else None

        async def run() -> list[int | None]:
            if not self._running or self._connection is None:
                raise ValueError("Connection closed")
            conn = self._conn
            if len(rows) == 1:  # one statement is a transaction of its own
                return [one(conn, rows[0])]
            conn.execute("BEGIN IMMEDIATE")
            try:
                ids = [one(conn, row) for row in rows]
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return ids

        return await _retry_busy(run)

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        run = _in_thread if self._waits_for_disk(fn, args) else _now
        return await _retry_busy(lambda: run(fn, *args, **kwargs))

    def _waits_for_disk(self, fn: Callable[..., Any], args: tuple) -> bool:
        """A commit that fsyncs, a WAL checkpoint, VACUUM: these go to a worker thread."""
        if fn == self._conn.commit:
            return self.fsync_commits
        sql = args[0] if args and isinstance(args[0], str) else ""
        return sql[:40].lstrip().upper().startswith(_WAITS)

    def stop(self) -> None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.stop()


async def _now(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


async def _in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` in a worker thread. Cancelled meanwhile, it still waits for ``fn`` to
    finish before passing the cancellation on: the connection is never used by two
    threads at once (a rollback must not start while the commit is still running)."""
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await work
        raise


async def _retry_busy(call: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + BUSY_WAIT
    delay = 0.001
    while True:
        try:
            return await call()
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode not in BUSY_CODES or time.monotonic() > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


def connector(database: str) -> Callable[[], Any]:
    """``async_creator`` for ``create_async_engine``: an inline connection to ``database``."""

    async def connect() -> InlineConnection:
        def open_file() -> sqlite3.Connection:
            # timeout=0: busy_timeout 0 (see the module doc); isolation_level=None: no
            # BEGIN of the driver's own (engine.py issues BEGIN IMMEDIATE);
            # check_same_thread=False: commits run in a worker thread
            return sqlite3.connect(
                database, timeout=0, isolation_level=None, check_same_thread=False
            )

        return await InlineConnection(open_file, iter_chunk_size=64)

    return connect
