"""aiosqlite's interface without its per-call thread hop; the commit waits in a thread.

aiosqlite runs every call (cursor, execute, fetch, close) on its own worker thread: four
thread hand-offs per statement, each a queue put, a wake-up and a callback into the
event loop. For a local SQLite file the statements themselves take microseconds, far
less than the hand-off, and they never wait for the disk in WAL mode: only COMMIT does
(the fsync of ``synchronous=FULL``). So statements run in the event loop's thread and
the commit runs in a worker thread, where waiting for the disk blocks nobody.

``busy_timeout`` is 0 on these connections: a statement that meets another process's
write lock (a CLI command, a migration) raises SQLITE_BUSY at once and is retried here
with ``asyncio.sleep``, so the event loop never sleeps inside SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import aiosqlite

BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
BUSY_WAIT = 30.0  # seconds a statement waits for another process's lock, then fails


class InlineConnection(aiosqlite.Connection):
    """An ``aiosqlite.Connection`` that calls sqlite3 directly (see the module doc)."""

    def __await__(self):  # no worker thread to start
        return self._connect().__await__()

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        if fn == self._connection.commit:
            return await _retry_busy(lambda: asyncio.to_thread(fn))
        return await _retry_busy(lambda: _now(fn, *args, **kwargs))

    def stop(self) -> None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.stop()


async def _now(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


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
            # isolation_level=None: the driver issues no BEGIN of its own (engine.py
            # issues BEGIN IMMEDIATE); check_same_thread=False: commits run in a thread
            return sqlite3.connect(database, isolation_level=None, check_same_thread=False)

        return await InlineConnection(open_file, iter_chunk_size=64)

    return connect
