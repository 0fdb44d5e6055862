"""Engine creation and schema migrations.

SQLite is the embedded default (WAL mode, so readers never block the writer);
PostgreSQL is the multi-instance backend. Migrations run at start-up under a lock so
that several bot processes starting together do not race each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.storage import sqlite_driver

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 724_551_001  # arbitrary constant for pg_advisory_xact_lock


def create_engine(url: str) -> AsyncEngine:
    """``hide_parameters``: a database error in a log never carries answer texts or ids."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # bot.storage.sqlite_driver: statements in the loop's thread, commits in a worker
        # thread. It issues no BEGIN of its own; ``_sqlite_begin`` issues BEGIN IMMEDIATE,
        # so a transaction that reads and then writes holds the write lock from its
        # start and never fails with SQLITE_BUSY halfway through (and SAVEPOINTs work):
        # SQLAlchemy's documented recipe for pysqlite/aiosqlite.
        engine = create_async_engine(
            url,
            async_creator=sqlite_driver.connector(parsed.database or ":memory:"),
            hide_parameters=True,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    return create_async_engine(url, pool_pre_ping=True, hide_parameters=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before we tell anyone "saved" (docs/performance.md).
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Erased anonymity keys and pseudonyms are zeroed in the file, not just unlinked.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _sqlite_begin(connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _upgrade(sync_connection, keyring: object | None = None) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_connection
    cfg.attributes["keyring"] = keyring  # the server secret's keyring, for 0003
    command.upgrade(cfg, "head")


async def migrate(engine: AsyncEngine, keyring: object | None = None) -> None:
    """Bring the schema to the newest revision (``keyring`` seals keys migration 0003 finds)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        with _file_lock(url.database):
            async with engine.begin() as conn:
                await conn.run_sync(_upgrade, keyring)
        return
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        await conn.run_sync(_upgrade, keyring)


@contextlib.contextmanager
def _file_lock(database: str | None):
    if not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate.lock")
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


async def dispose(engine: AsyncEngine) -> None:
    await engine.dispose()
    await asyncio.sleep(0)
