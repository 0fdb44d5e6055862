"""Answering the same question again replaces the earlier answer in one statement, and
the database itself holds "one named form answer per person and question" (migration
0005), so two instances cannot both insert one."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError

from bot.storage.engine import alembic_config, create_engine
from tests.support import make_chat, write_library

NOW = datetime(2026, 11, 1, tzinfo=UTC)


INSERT = text(
    "INSERT INTO responses (round_id, anonymous, author_id, question, message_ref, text, "
    "late, created_at) VALUES (:r, false, :au, :q, :m, :t, false, :now)"
)


async def test_answering_again_replaces_in_one_statement(both):
    chat = both
    await chat.say("/discuss now")
    assert "Saved your answer" in await chat.say("/discuss answer 1 first", who="bob")
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(chat.store.engine.sync_engine, "before_cursor_execute", record)
    try:
        assert "Updated your answer" in await chat.say("/discuss answer 1 second", who="bob")
    finally:
        event.remove(chat.store.engine.sync_engine, "before_cursor_execute", record)
    # the answer: one upsert, no lookup of the earlier answer first (the inbox row before
    # it is a statement of its own; on SQLite it bypasses SQLAlchemy, test_sqlite_driver)
    assert sum(s.startswith("INSERT INTO responses") for s in statements) == 1
    assert not any(s.startswith("SELECT") and "FROM responses" in s for s in statements)
    out = await chat.say("/discuss results")
    assert "second" in out and "first" not in out
    assert "Saved your answer" in await chat.say("/discuss answer 2 other question", who="bob")
    assert "Saved your answer" in await chat.say("/discuss answer no question", who="bob")
    assert "Updated your answer" in await chat.say("/discuss answer still none", who="bob")


async def test_the_database_refuses_a_second_named_answer_to_one_question(both):
    chat = both
    await chat.say("/discuss now")
    await chat.say("/discuss answer 1 mine", who="bob")
    round_ = await chat.store.open_round_in(chat.channel)
    params = {"r": round_.id, "au": "console:bob", "q": 1, "m": None, "t": "x", "now": NOW}
    with pytest.raises(IntegrityError):
        async with chat.store.engine.begin() as conn:  # another instance, racing
            await conn.execute(INSERT, params)
    async with chat.store.engine.begin() as conn:  # thread replies are not form answers
        await conn.execute(INSERT, {**params, "m": "ts-1"})
        await conn.execute(INSERT, {**params, "m": "ts-2"})


async def test_the_migration_keeps_the_newest_of_duplicate_answers(tmp_path, database_url):
    from alembic import command

    engine = create_engine(database_url)

    def to_0004(conn) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")

    async with engine.begin() as conn:
        await conn.run_sync(to_0004)
        await conn.execute(
            text(
                "INSERT INTO rounds (id, channel, status, prompt_set, prompt_id, "
                "prompt_snapshot, anonymous_allowed, min_anonymous_group, created_at) "
                "VALUES (1, 'console:general', 'posted', 'mini', 'alpha', :snap, true, 3, :now)"
            ),
            {"snap": json.dumps({"title": "Alpha", "questions": [{"text": "Q1"}]}), "now": NOW},
        )
        rows = [
            ("console:bob", 1, None, "older"),
            ("console:bob", 1, None, "newer"),
            ("console:bob", None, None, "no question"),
            ("console:ann", 1, None, "ann's"),
            ("console:bob", 1, "ts-1", "a thread reply"),
        ]
        for author, question, ref, words in rows:
            await conn.execute(
                INSERT, {"r": 1, "au": author, "q": question, "m": ref, "t": words, "now": NOW}
            )
    await engine.dispose()
    chat = await make_chat(write_library(tmp_path), database_url)  # migrates to head
    try:
        texts = sorted(r.text for r in await chat.store.responses(1))
        assert texts == ["a thread reply", "ann's", "newer", "no question"]
    finally:
        await chat.store.close()
