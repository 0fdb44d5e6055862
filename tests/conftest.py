"""Shared fixtures: databases (SQLite always, PostgreSQL when reachable) and chats."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import uuid

import pytest

from tests.support import make_chat, write_library

PG_URL = os.environ.get(
    "ROUNDTABLE_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("ROUNDTABLE_REQUIRE_PG") == "1"


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(PG_URL), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


_pg_problem: list[str] = []


def _pg_reachable() -> str | None:
    """None when PostgreSQL answers, else why not (checked once per test run)."""
    if not _pg_problem:
        try:
            asyncio.run(_pg_admin("SELECT 1"))
            _pg_problem.append("")
        except Exception as exc:  # any failure means "not usable here"
            _pg_problem.append(f"{type(exc).__name__}: {exc}")
    return _pg_problem[0] or None


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    problem = _pg_reachable()
    if problem:
        message = f"PostgreSQL not reachable at {PG_URL} ({problem})"
        if REQUIRE_PG:
            pytest.fail(message + " and ROUNDTABLE_REQUIRE_PG=1 is set")
        pytest.skip(message + "; set ROUNDTABLE_TEST_PG_URL or start the server")
    name = f"rt_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    base = PG_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite+aiosqlite:///{tmp_path / 'roundtable.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """Run a test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'roundtable.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def config_path(tmp_path):
    return write_library(tmp_path)


@pytest.fixture
async def both(config_path, database_url):
    """A chat on SQLite and, in a second run, on PostgreSQL."""
    chat = await make_chat(config_path, database_url)
    yield chat
    await chat.store.close()


@pytest.fixture
async def chat(config_path, sqlite_url):
    c = await make_chat(config_path, sqlite_url)
    yield c
    await c.store.close()


@pytest.fixture(autouse=True)
def _logging_as_it_was():
    """Tests that run the CLI in-process set logging up on the stderr pytest captured for
    them; put the root logger and the excepthooks back afterwards, so a later test does
    not log into a closed stream through their filters."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    hooks = sys.excepthook, threading.excepthook
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook, threading.excepthook = hooks


@pytest.fixture(autouse=True)
def _keep_working_directory():
    """Tests may chdir into a temp dir; put the working directory back afterwards."""
    cwd = os.getcwd()
    yield
    os.chdir(cwd)


@pytest.fixture(autouse=True)
def _server_secret_in_tmp(tmp_path, monkeypatch):
    """Each test's server key file lives in its temp dir (never in the working tree)."""
    monkeypatch.delenv("ROUNDTABLE_SECRET", raising=False)
    monkeypatch.setenv("ROUNDTABLE_KEY_FILE", str(tmp_path / "server-secret" / "roundtable.key"))
