"""A person's data from start to end: forget-me, retention, export, migration, lost key."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from bot.core import render
from bot.history import format_purges
from bot.privacy import digests, export_text, purge_expired, purge_history
from bot.storage.models import ProcessedEvent, Response, Round
from tests.support import MINI_CONFIG, make_chat, write_library


async def rows(store) -> list[tuple]:
    async with store.session() as s:
        found = await s.execute(
            select(
                Response.round_id, Response.author_id, Response.anonymous, Response.text
            ).order_by(Response.id)
        )
        return [tuple(r) for r in found.all()]


# ---- forget-me --------------------------------------------------------------------------


async def test_forget_me_deletes_that_persons_rows_and_nobody_elses(both):
    chat = both
    await chat.say("/discuss now")
    await chat.say("bob in round one", who="bob")  # message m1
    await chat.say("/discuss answer --anonymous bob hidden in a closed round", who="bob")
    await chat.say("carol in round one", who="carol")  # message m2
    await chat.say("/discuss answer --anonymous carol hidden one", who="carol")
    await chat.say("/discuss close")
    closed_id = (await chat.store.rounds())[0].id
    await chat.say("/discuss now")
    await chat.say("/discuss answer 1 bob named in open round", who="bob")
    await chat.say("/discuss answer --anonymous bob hidden in an open round", who="bob")
    await chat.say("/discuss answer --anonymous carol hidden two", who="carol")
    now = chat.clock.now()
    for ref in ("m1", "m2"):  # dedup rows naming each message (channel + message id)
        assert await chat.store.first_time(f"console:general:{ref}", now)
    before = await rows(chat.store)

    ask = await chat.say("/discuss forget-me", who="bob")
    assert "/discuss forget-me confirm" in ask
    assert await rows(chat.store) == before  # nothing happens without the confirm step

    done = await chat.say("/discuss forget-me confirm", who="bob")
    assert "deleted 3 answers" in done
    after = await rows(chat.store)
    assert not [r for r in after if r[1] == "console:bob"]
    assert [r[3] for r in after if "bob" in r[3]] == ["bob hidden in a closed round"]
    # Everybody else's rows are untouched.
    assert [r for r in before if "bob" not in r[3]] == [r for r in after if "bob" not in r[3]]
    assert len(after) == len(before) - 3
    async with chat.store.session() as s:
        keys = set((await s.scalars(select(ProcessedEvent.key))).all())
        closed = await s.get(Round, closed_id)
    assert keys == {"console:general:m2"}
    assert closed.respondents == 3  # bob's named answer no longer counts (carol x2 + bob anon)
    # The digest of the closed round, rebuilt now, no longer shows bob's words.
    digest = await chat.dispatcher.service.summary(closed, final=True)
    shown = render.summary_text(digest)
    assert "bob in round one" not in shown and "carol in round one" in shown
    assert "deleted 0 answers" in await chat.say("/discuss forget-me confirm", who="bob")
    await chat.say("/discuss close")
    assert "/discuss forget-me" in await chat.say("/discuss withdraw", who="carol")


def test_admin_cli_forgets_a_person(tmp_path, monkeypatch, capsys):
    from bot.cli import main

    config = write_library(tmp_path)
    url = f"sqlite+aiosqlite:///{tmp_path / 'rt.db'}"
    monkeypatch.setenv("ROUNDTABLE_DATABASE_URL", url)

    async def prepare() -> None:
        chat = await make_chat(config, url)
        try:
            await chat.say("/discuss now")
            await chat.say("dave says hi", who="dave")
            await chat.say("/discuss answer --anonymous dave whispers", who="dave")
            await chat.say("erin says hi", who="erin")
        finally:
            await chat.store.close()

    asyncio.run(prepare())
    assert main(["--config", str(config), "forget", "console:dave"]) == 0
    assert "Deleted 2 answer(s) of console:dave: 1 named, 1 anonymous" in capsys.readouterr().out
    assert main(["--config", str(config), "forget", "nobody"]) == 2
    assert "PLATFORM:USER_ID" in capsys.readouterr().err

    async def remaining() -> list[tuple]:
        chat = await make_chat(config, url)
        try:
            return await rows(chat.store)
        finally:
            await chat.store.close()

    assert [r[3] for r in asyncio.run(remaining())] == ["erin says hi"]


# ---- retention --------------------------------------------------------------------------

RETENTION = """\
timezone: UTC
prompts_dir: ../prompts
retention_days: 90
schedules:
  - name: weekly
    prompt_set: mini
    cron: "0 10 * * mon"
    channels: [console:general]
    retention_days: 7
"""


async def test_retention_deletes_old_rounds_and_keeps_recent_ones(tmp_path, database_url):
    chat = await make_chat(write_library(tmp_path, RETENTION), database_url)
    try:
        start = chat.clock.now()
        await chat.say("/discuss now")  # round 1: day 0, closed at once
        await chat.say("old answer", who="bob")
        await chat.say("/discuss answer --anonymous old hidden", who="carol")
        await chat.say("/discuss close")
        other = chat.channel
        chat.channel = "console:elsewhere"  # no schedule: the global 90 days apply
        await chat.say("/discuss now")
        await chat.say("elsewhere answer", who="bob")
        await chat.say("/discuss close")
        chat.channel = other
        chat.clock.set(start + timedelta(days=10))
        await chat.say("/discuss now")  # round 3: day 10, stays open
        await chat.say("recent answer", who="bob")
        chat.clock.set(start + timedelta(days=30))
        await chat.say("/discuss now")  # closes round 3 (20 days old, but was open till now)
        await chat.say("newest answer", who="bob")

        assert await chat.store.first_time("console:general:old-msg", start)
        assert await chat.store.first_time("console:general:new-msg", chat.clock.now())
        config = chat.library.current.config
        purged = await purge_expired(chat.store, config, chat.clock.now())
        assert (purged.rounds, purged.answers) == (2, 3)  # rounds 1 and 3 (7 days)
        left = {r.channel: r for r in await chat.store.rounds()}
        texts = [r[3] for r in await rows(chat.store)]
        assert texts == ["elsewhere answer", "newest answer"]  # 90 days; open round kept
        assert len(await chat.store.rounds()) == 2 and "console:elsewhere" in left
        async with chat.store.session() as s:
            keys = set((await s.scalars(select(ProcessedEvent.key))).all())
        assert keys == {"console:general:new-msg"}  # dedup rows past the shortest retention go
        again = await purge_expired(chat.store, config, chat.clock.now())
        assert (again.rounds, again.answers) == (0, 0)
        (log_row,) = await purge_history(chat.store)
        assert (log_row.rounds, log_row.answers) == (2, 3)
        from zoneinfo import ZoneInfo

        line = format_purges([log_row], ZoneInfo("UTC"))
        assert "purged by retention: 2 rounds, 3 answers" in line
    finally:
        await chat.store.close()


async def test_retention_is_off_by_default(chat):
    await chat.say("/discuss now")
    await chat.say("kept forever", who="bob")
    await chat.say("/discuss close")
    later = chat.clock.now() + timedelta(days=3650)
    purged = await purge_expired(chat.store, chat.library.current.config, later)
    assert (purged.rounds, purged.answers) == (0, 0)
    assert len(await chat.store.rounds()) == 1


async def test_the_scheduler_runs_retention_daily(tmp_path, sqlite_url):
    from bot.scheduling import Scheduler

    chat = await make_chat(write_library(tmp_path, RETENTION), sqlite_url)
    scheduler = Scheduler(
        library=chat.library,
        service=chat.dispatcher.service,
        dispatcher=chat.dispatcher,
        clock=chat.clock,
    )
    await scheduler.start()
    try:
        job = scheduler._aps.get_job("retention")
        assert job is not None and "interval[1 day" in str(job.trigger)
    finally:
        await scheduler.stop()
        await chat.store.close()


def test_history_cli_shows_what_was_purged(tmp_path, monkeypatch, capsys):
    from bot.cli import main

    config = write_library(tmp_path, RETENTION)
    url = f"sqlite+aiosqlite:///{tmp_path / 'rt.db'}"
    monkeypatch.setenv("ROUNDTABLE_DATABASE_URL", url)

    async def prepare() -> None:
        chat = await make_chat(config, url)
        try:
            await chat.say("/discuss now")
            await chat.say("an answer", who="bob")
            await chat.say("/discuss close")
            await purge_expired(
                chat.store, chat.library.current.config, chat.clock.now() + timedelta(days=8)
            )
        finally:
            await chat.store.close()

    asyncio.run(prepare())
    assert main(["--config", str(config), "history"]) == 0
    out = capsys.readouterr().out
    assert "No rounds yet." in out and "purged by retention: 1 round, 1 answer" in out


# ---- export -----------------------------------------------------------------------------


async def test_export_matches_the_digest_including_pooling(both):
    chat = both
    await chat.say("/discuss now")
    await chat.say("/discuss answer 1 named about alpha", who="bob")
    await chat.say("/discuss answer --anonymous 1 lonely secret", who="carol")
    await chat.say("/discuss answer --anonymous 2 second ```` secret", who="carol")
    await chat.say("/discuss close")  # 1 anonymous person < min_anonymous_group 3: pooled
    digest = chat.platform.summaries()[-1]
    assert not digest.show_counts and digest.groups[-1].question == "Shared anonymously"
    service = chat.dispatcher.service
    found = await digests(service)
    # the digest's own code, same result (``key`` is only the outbox's delivery key)
    assert [replace(s, key=None) for _, s in found] == [replace(digest, key=None)]

    md = export_text(found, "md")
    assert render.summary_text(digest) in md
    assert "\n`````\n" in md  # the fence outlasts the backticks in an answer
    data = json.loads(export_text(found, "json"))
    (entry,) = data
    assert entry["respondents"] == 2 and entry["per_question_counts"] is False
    pooled = entry["groups"][-1]
    assert pooled["question_number"] is None and pooled["question"] == "Shared anonymously"
    assert [a["text"] for a in pooled["answers"]] == ["lonely secret", "second ```` secret"]
    assert {a["author"] for a in pooled["answers"]} == {None}
    table = list(csv.DictReader(io.StringIO(export_text(found, "csv"))))
    assert [(r["author"], r["question_number"], r["text"]) for r in table] == [
        ("Bob", "1", "named about alpha"),
        ("", "", "lonely secret"),
        ("", "", "second ```` secret"),
    ]
    everything = md + json.dumps(data) + export_text(found, "csv")
    assert "carol" not in everything.lower()
    async with chat.store.engine.connect() as conn:
        ids = [r[0] for r in await conn.execute(text("SELECT id FROM responses"))]
    assert "pseudonym" not in everything and "author_id" not in everything
    assert ids  # answers exist; the export carries no id of any answer
    assert set(table[0]) == {
        "round",
        "channel",
        "posted_at",
        "title",
        "question_number",
        "question",
        "author",
        "text",
        "late",
    }


async def test_export_filters_by_round_channel_and_date(chat):
    await chat.say("/discuss now")
    await chat.say("first", who="bob")
    await chat.say("/discuss now")  # closes round 1 with its digest
    await chat.say("second", who="bob")
    await chat.say("/discuss close")
    service = chat.dispatcher.service
    assert [r.id for r, _ in await digests(service, round_id=2)] == [2]
    assert [r.id for r, _ in await digests(service, channel="console:general")] == [1, 2]
    assert await digests(service, channel="console:other") == []
    later = chat.clock.now() + timedelta(days=1)
    assert await digests(service, since=later) == []
    assert export_text([], "md") == "No closed rounds match.\n"


def test_export_cli_writes_each_format(tmp_path, monkeypatch, capsys):
    from bot.cli import main

    config = write_library(tmp_path)
    url = f"sqlite+aiosqlite:///{tmp_path / 'rt.db'}"
    monkeypatch.setenv("ROUNDTABLE_DATABASE_URL", url)

    async def prepare() -> None:
        chat = await make_chat(config, url)
        try:
            await chat.say("/discuss now")
            await chat.say("/discuss answer --anonymous quiet words", who="bob")
            await chat.say("/discuss close")
        finally:
            await chat.store.close()

    asyncio.run(prepare())
    assert main(["--config", str(config), "export", "--format", "json", "--round", "1"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["groups"][0]["answers"] == [{"author": None, "text": "quiet words", "late": False}]
    assert main(["--config", str(config), "export", "--since", "2026-11-01"]) == 0
    assert "(anonymous) quiet words" in capsys.readouterr().out
    assert main(["--config", str(config), "export", "--since", "soon"]) == 2


# ---- a lost key file --------------------------------------------------------------------


async def test_losing_the_key_file_only_stops_updating_old_anonymous_answers(
    tmp_path, sqlite_url, monkeypatch
):
    config = write_library(tmp_path)
    chat = await make_chat(config, sqlite_url)
    try:
        await chat.say("/discuss now")
        await chat.say("/discuss answer --anonymous 1 before the loss", who="bob")
        await chat.say("named before", who="bob")
    finally:
        await chat.store.close()
    monkeypatch.setenv("ROUNDTABLE_KEY_FILE", str(tmp_path / "new-place" / "roundtable.key"))
    chat = await make_chat(config, sqlite_url)  # a restart with a fresh secret
    try:
        reply = await chat.say("/discuss withdraw", who="bob")
        assert "Removed your 1 named answer" in reply and "can no longer be withdrawn" in reply
        # New anonymous answers still work (the round gets a new key).
        assert "Saved your anonymous answer" in await chat.say(
            "/discuss answer --anonymous 1 after the loss", who="bob"
        )
        assert "Updated" in await chat.say("/discuss answer --anonymous 1 edited", who="bob")
        texts = sorted(r[3] for r in await rows(chat.store))
        assert texts == ["before the loss", "edited"]
        done = await chat.say("/discuss forget-me confirm", who="bob")
        assert "deleted 1 answer" in done
        await chat.say("/discuss close")
        digest = chat.platform.summaries()[-1]
        assert [a.text for g in digest.groups for a in g.answers] == ["before the loss"]
    finally:
        await chat.store.close()


# ---- migration ------------------------------------------------------------------------


async def test_migration_keeps_every_answer_seals_open_keys_and_erases_closed_pseudonyms(
    tmp_path, database_url
):
    """A database written by the previous release (revision 0001) upgrades in place."""
    from alembic import command

    from bot.anonymity import RoundTags, load_keyring, pseudonym
    from bot.storage.engine import alembic_config, create_engine

    engine = create_engine(database_url)

    def to_0001(conn) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")

    plain = b"K" * 32
    async with engine.begin() as conn:
        await conn.run_sync(to_0001)
        now = datetime(2026, 11, 1, tzinfo=UTC)
        for rid, status, key in ((1, "closed", None), (2, "posted", plain)):
            await conn.execute(
                text(
                    "INSERT INTO rounds (id, channel, status, prompt_set, prompt_id, "
                    "prompt_snapshot, anonymous_allowed, min_anonymous_group, anon_key, "
                    "created_at) VALUES (:id, :ch, :st, 'mini', 'alpha', :snap, true, 3, "
                    ":key, :now)"
                ),
                {
                    "id": rid,
                    "ch": f"console:c{rid}",
                    "st": status,
                    "snap": json.dumps({"title": "Alpha", "questions": []}),
                    "key": key,
                    "now": now,
                },
            )
        answers = [
            (1, True, None, "a" * 64, "old secret a"),
            (1, True, None, "b" * 64, "old secret b"),
            (1, False, "console:bob", None, "old named"),
            (2, True, None, pseudonym(plain, "console:bob"), "open secret"),
        ]
        for rid, anon, author, alias, words in answers:
            await conn.execute(
                text(
                    "INSERT INTO responses (round_id, anonymous, author_id, pseudonym, text, "
                    "late, created_at) VALUES (:r, :a, :au, :p, :t, false, :now)"
                ),
                {"r": rid, "a": anon, "au": author, "p": alias, "t": words, "now": now},
            )
    await engine.dispose()

    config = write_library(tmp_path, MINI_CONFIG.replace("console:general", "console:c2"))
    chat = await make_chat(config, database_url)  # migrates to head
    try:
        chat.channel = "console:c2"
        async with chat.store.session() as s:
            assert await s.scalar(select(func.count()).select_from(Response)) == 4
            r1, r2 = await s.get(Round, 1), await s.get(Round, 2)
            left = (await s.scalars(select(Response.pseudonym).where(Response.round_id == 1))).all()
            left_open = (
                await s.scalars(select(Response.pseudonym).where(Response.round_id == 2))
            ).all()
        assert (r1.respondents, r1.anonymous_respondents) == (3, 2) and set(left) == {None}
        assert r2.anon_key != plain and plain not in r2.anon_key
        assert load_keyring(chat.store.engine.url).open(2, r2.anon_key) == plain
        # 0004: the open round's hex pseudonym is now a randomised tag sealing that hash.
        (tag,) = left_open
        hashed = pseudonym(plain, "console:bob")
        assert len(tag) == 82 and hashed not in tag
        assert RoundTags(2, plain).open(tag) == bytes.fromhex(hashed)
        if chat.store.dialect == "sqlite":  # secure_delete, WAL truncated after migrating
            db = Path(make_url(database_url).database)
            raw = b"".join(f.read_bytes() for f in db.parent.glob(db.name + "*"))
            assert hashed.encode() not in raw
        # The open round's author can still replace and withdraw their anonymous answer.
        reply = await chat.say("/discuss answer --anonymous open secret, edited", who="bob")
        assert "Updated" in reply
        assert "Removed your 1 answer" in await chat.say("/discuss withdraw", who="bob")
    finally:
        await chat.store.close()


async def test_a_different_server_secret_is_reported_at_start(
    tmp_path, sqlite_url, monkeypatch, caplog
):
    from bot.app import build_runtime

    config = write_library(tmp_path)
    runtime = await build_runtime(config, database=sqlite_url)
    await runtime.close()
    runtime = await build_runtime(config, database=sqlite_url)  # same secret: quiet
    await runtime.close()
    assert "different server secret" not in caplog.text
    monkeypatch.setenv("ROUNDTABLE_KEY_FILE", str(tmp_path / "elsewhere.key"))
    runtime = await build_runtime(config, database=sqlite_url)
    await runtime.close()
    assert caplog.text.count("different server secret") == 1
    assert str(tmp_path / "elsewhere.key") in caplog.text  # where this secret came from
    async with runtime.store.engine.connect() as conn:
        dumped = repr((await conn.execute(text("SELECT * FROM app_state"))).all())
    secret = (tmp_path / "elsewhere.key").read_text().strip()
    assert secret not in dumped


async def test_migration_clears_pseudonyms_whose_round_key_the_secret_cannot_open(
    tmp_path, database_url, monkeypatch
):
    """0004 cannot re-tag rows of an open round sealed under another (lost) secret: they
    linked to nobody already, so their hex pseudonym is cleared; the answer stays."""
    from alembic import command

    from bot.anonymity import pseudonym
    from bot.storage.engine import alembic_config, create_engine

    def upgrade_to(revision: str):
        def run(conn) -> None:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

        return run

    engine = create_engine(database_url)
    plain = b"Q" * 32
    hashed = pseudonym(plain, "console:bob")
    async with engine.begin() as conn:
        await conn.run_sync(upgrade_to("0001"))
        now = datetime(2026, 11, 1, tzinfo=UTC)
        await conn.execute(
            text(
                "INSERT INTO rounds (id, channel, status, prompt_set, prompt_id, "
                "prompt_snapshot, anonymous_allowed, min_anonymous_group, anon_key, "
                "created_at) VALUES (1, 'console:general', 'posted', 'mini', 'alpha', :snap, "
                "true, 3, :key, :now)"
            ),
            {"snap": json.dumps({"title": "Alpha", "questions": []}), "key": plain, "now": now},
        )
        await conn.execute(
            text(
                "INSERT INTO responses (round_id, anonymous, pseudonym, text, late, created_at) "
                "VALUES (1, true, :p, 'kept words', false, :now)"
            ),
            {"p": hashed, "now": now},
        )
        await conn.run_sync(upgrade_to("0003"))  # sealed under the first secret
    await engine.dispose()
    monkeypatch.setenv("ROUNDTABLE_KEY_FILE", str(tmp_path / "replaced" / "roundtable.key"))
    chat = await make_chat(write_library(tmp_path), database_url)  # 0004 under another secret
    try:
        async with chat.store.session() as s:
            (row,) = (await s.scalars(select(Response))).all()
        assert row.text == "kept words" and row.pseudonym is None
        assert await chat.store.count_respondents([1]) == {1: 1}  # counted as one person
    finally:
        await chat.store.close()
