"""The SQLite driver (statements in the loop's thread, commits in a worker thread), the
ack's unflushed commit, and the in-process writer turn that lets acks go first."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from bot.storage import sqlite_driver
from bot.storage.store import Store
from bot.storage.transactions import WriterTurn

FULL, NORMAL = 2, 1
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


async def test_statements_run_in_the_loops_thread_and_the_commit_in_another(tmp_path):
    connection = await sqlite_driver.connector(str(tmp_path / "t.db"))()
    threads: list[str] = []
    connection._conn.set_trace_callback(
        lambda sql: threads.append(f"{sql.split()[0]} {threading.current_thread().name}")
    )
    try:
        await connection.execute("CREATE TABLE t (x)")
        await connection.execute("BEGIN IMMEDIATE")
        await connection.execute("INSERT INTO t VALUES (1)")
        await connection.commit()
    finally:
        await connection.close()
    here = threading.current_thread().name
    assert threads[:3] == [f"CREATE {here}", f"BEGIN {here}", f"INSERT {here}"]
    assert threads[3].startswith("COMMIT") and not threads[3].endswith(here)


async def test_a_wal_checkpoint_runs_in_a_worker_thread(tmp_path):
    connection = await sqlite_driver.connector(str(tmp_path / "t.db"))()
    threads: list[str] = []
    connection._conn.set_trace_callback(lambda sql: threads.append(threading.current_thread().name))
    try:
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        await connection.close()
    here = threading.current_thread().name
    assert threads[0] == here and threads[1] != here


async def test_a_cancelled_commit_is_waited_for_before_the_cancellation_goes_on():
    started, release = threading.Event(), threading.Event()

    def slow_commit() -> str:
        started.set()
        release.wait(5)
        return "committed"

    task = asyncio.create_task(sqlite_driver._in_thread(slow_commit))
    await asyncio.to_thread(started.wait, 5)  # the commit is running in its thread
    task.cancel()
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done()  # the commit is still running: nobody may use the connection
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_acks_commit_skips_the_fsync_and_every_other_commit_keeps_it(
    tmp_path, sqlite_url
):
    store = await Store.open(sqlite_url)
    try:
        ids = await store.inbox_add_many([("k1", {"a": 1}), ("k2", {"b": 2})], NOW)
        assert sorted(ids) == ["k1", "k2"]
        # the ack's connection, set aside: its commits do not wait for the disk
        aside = (await store._unflushed_sqlite.get_raw_connection()).driver_connection
        assert aside._conn.execute("PRAGMA synchronous").fetchone()[0] == NORMAL
        assert not aside.fsync_commits
        # every other connection (processing, "saved") commits with an fsync
        async with store.engine.connect() as connection:
            other = (await connection.get_raw_connection()).driver_connection
            level = (await connection.execute(text("PRAGMA synchronous"))).scalar_one()
        assert other is not aside and level == FULL and other.fsync_commits
    finally:
        await store.close()


async def test_the_acks_insert_runs_straight_on_sqlite_and_reads_back_as_the_orm_wrote_it(
    tmp_path, sqlite_url
):
    """No SQLAlchemy execution inside the ack: the INSERT SQLAlchemy compiled once, run on
    the set-aside connection in the loop's thread (one row: one statement; several: one
    transaction), with the columns' own conversions, so the ORM reads it back exactly."""
    store = await Store.open(sqlite_url)
    seen: list[str] = []
    try:
        await store.inbox_add_many([("k0", {})], NOW)  # sets the connection aside
        aside = store._unflushed_driver
        here = threading.current_thread().name
        aside._conn.set_trace_callback(
            lambda sql: seen.append(f"{sql.split()[0]} {threading.current_thread().name}")
        )
        one = await store.inbox_add_many([("k1", {"text": "R&D <teams>"})], NOW)
        two = await store.inbox_add_many([("k2", {}), ("k1", {}), ("k3", {})], NOW)
        assert seen == [f"INSERT {here}"] + [
            f"{verb} {here}" for verb in ("BEGIN", "INSERT", "INSERT", "INSERT", "COMMIT")
        ]
        assert sorted(two) == ["k2", "k3"]  # k1 is known: a redelivery inserts nothing
        assert [(await store.inbox_get(two[k])).key for k in ("k2", "k3")] == ["k2", "k3"]
        row = await store.inbox_get(one["k1"])
        assert (row.key, row.payload, row.status, row.attempts) == (
            "k1",
            {"text": "R&D <teams>"},
            "pending",
            0,
        )
        assert row.created_at == NOW and row.not_before == NOW  # UTC-aware, as written
        # and the ack's connection never runs a WAL checkpoint inline (it would fsync)
        assert aside._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    finally:
        await store.close()


async def test_the_acks_insert_waits_for_another_process_then_gives_up_clearly(
    tmp_path, sqlite_url, monkeypatch
):
    store = await Store.open(sqlite_url)
    holder = sqlite3.connect(tmp_path / "roundtable.db", isolation_level=None)
    try:
        await store.inbox_add_many([("k0", {})], NOW)
        holder.execute("BEGIN IMMEDIATE")  # a CLI command holds the write lock
        waiting = asyncio.create_task(store.inbox_add_many([("k1", {})], NOW))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        holder.execute("COMMIT")
        assert list(await asyncio.wait_for(waiting, 5)) == ["k1"]
        monkeypatch.setattr(sqlite_driver, "BUSY_WAIT", 0.05)
        holder.execute("BEGIN IMMEDIATE")
        # SQLAlchemy's OperationalError: the inbox treats it as the database being away
        with pytest.raises(OperationalError, match="locked"):
            await store.inbox_add_many([("k2", {})], NOW)
        holder.execute("COMMIT")
        assert list(await store.inbox_add_many([("k2", {})], NOW)) == ["k2"]
    finally:
        holder.close()
        await store.close()


async def test_a_failed_unflushed_transaction_rolls_back_and_the_next_one_works(
    tmp_path, sqlite_url
):
    store = await Store.open(sqlite_url)
    try:
        with pytest.raises(RuntimeError):
            async with store._unflushed() as connection:
                await connection.execute(text("DELETE FROM inbox"))
                raise RuntimeError("boom")
        assert await store.inbox_add_many([("k1", {})], NOW) != {}
    finally:
        await store.close()


async def test_commit_without_fsync_refuses_an_open_transaction(tmp_path):
    connection = await sqlite_driver.connector(str(tmp_path / "t.db"))()
    try:
        await connection.execute("BEGIN")
        with pytest.raises(RuntimeError, match="before a transaction"):
            connection.commit_without_fsync()
    finally:
        await connection.close()


async def test_a_locked_database_is_waited_for_without_blocking_the_loop(tmp_path, monkeypatch):
    path = tmp_path / "t.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    connection = await sqlite_driver.connector(str(path))()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(ticker())
    try:
        waiting = asyncio.create_task(connection.execute("BEGIN IMMEDIATE"))
        await asyncio.sleep(0.05)
        assert not waiting.done() and ticks > 10  # waiting, and the loop keeps running
        holder.execute("COMMIT")
        await asyncio.wait_for(waiting, 5)
        await connection.execute("ROLLBACK")
        monkeypatch.setattr(sqlite_driver, "BUSY_WAIT", 0.05)
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await connection.execute("BEGIN IMMEDIATE")
    finally:
        other.cancel()
        holder.close()
        await connection.close()


async def test_an_urgent_turn_goes_before_every_queued_ordinary_one():
    turn = WriterTurn()
    order: list[str] = []
    release = asyncio.Event()

    async def take(name: str, urgent: bool = False) -> None:
        async with turn.hold(urgent=urgent):
            order.append(name)
            if name == "first":
                await release.wait()

    first = asyncio.create_task(take("first"))
    await asyncio.sleep(0)
    queued = [asyncio.create_task(take(f"ordinary {n}")) for n in (1, 2)]
    await asyncio.sleep(0)
    ack = asyncio.create_task(take("ack", urgent=True))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *queued, ack)
    assert order == ["first", "ack", "ordinary 1", "ordinary 2"]


async def test_a_turn_cancelled_while_waiting_passes_on():
    turn = WriterTurn()
    release = asyncio.Event()
    got: list[str] = []

    async def holder() -> None:
        async with turn.hold():
            await release.wait()

    async def take(name: str) -> None:
        async with turn.hold():
            got.append(name)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(take("cancelled"))
    behind = asyncio.create_task(take("behind"))
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await asyncio.gather(first, behind)
    assert got == ["behind"]
    async with asyncio.timeout(1), turn.hold():  # and the turn is free again
        pass


async def test_after_the_acks_connection_breaks_the_next_ack_gets_a_fresh_one(sqlite_url):
    store = await Store.open(sqlite_url)
    try:
        await store.inbox_add_many([("k0", {})], NOW)
        store._unflushed_driver._conn.close()  # the file handle is gone (a broken disk)
        with pytest.raises(OperationalError):  # the inbox tells the person: not saved
            await store.inbox_add_many([("k1", {})], NOW)
        assert list(await store.inbox_add_many([("k1", {})], NOW)) == ["k1"]
    finally:
        await store.close()
