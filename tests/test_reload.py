"""Live reload: valid edits go live while running; broken edits change nothing."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from bot.reload import Reloader
from bot.scheduling import Scheduler
from tests.support import MINI_CONFIG, MINI_SET, make_chat, write_library

DELTA = """\
  - id: delta
    title: Delta article
    source: Example
    summary: Delta joins the set while the bot runs.
    questions:
      - {text: "What is delta?", origin: ours}
"""


@pytest.fixture
async def live(tmp_path, sqlite_url):
    """A chat whose handlers can reload, plus the reloader itself."""
    config = write_library(tmp_path)
    chat = await make_chat(config, sqlite_url)
    reloader = Reloader(chat.library, config, debounce_ms=50, poll_ms=100)
    chat.dispatcher.handlers.reload = reloader.reload
    yield chat, reloader, tmp_path
    await chat.store.close()


async def _wait_for_attempt(reloader: Reloader, before: int) -> None:
    """Wait until the watcher has tried a reload (the timeout only guards a hang)."""
    async with asyncio.timeout(20):
        while reloader.attempts <= before:
            reloader.attempted.clear()
            if reloader.attempts > before:
                break
            await reloader.attempted.wait()


async def test_watcher_applies_a_new_prompt_while_running(live):
    chat, reloader, root = live
    stop = asyncio.Event()
    watcher = asyncio.create_task(reloader.watch(stop))
    try:
        async with asyncio.timeout(20):
            await reloader.ready.wait()
        for _ in range(3):
            await chat.say("/discuss now")  # alpha, beta, gamma: the pass is complete
        before = reloader.attempts
        (root / "prompts" / "mini.yaml").write_text(MINI_SET + DELTA, encoding="utf-8")
        await _wait_for_attempt(reloader, before)
        assert chat.library.current.find_prompt("delta") is not None
        assert "Delta article" in await chat.say("/discuss next", who="bob")
        await chat.say("/discuss now")
        assert chat.platform.rounds()[-1].prompt.prompt_id == "delta"
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 20)


async def test_watcher_keeps_serving_after_a_broken_edit(live, caplog):
    chat, reloader, root = live
    stop = asyncio.Event()
    watcher = asyncio.create_task(reloader.watch(stop))
    try:
        async with asyncio.timeout(20):
            await reloader.ready.wait()
        before = reloader.attempts
        caplog.set_level(logging.ERROR, logger="bot.reload")
        (root / "prompts" / "mini.yaml").write_text(MINI_SET + "  - id: [broken\n", "utf-8")
        await _wait_for_attempt(reloader, before)
        problems = [str(p) for p in chat.library.last_problems]
        assert problems and all("mini.yaml:" in p and "invalid YAML" in p for p in problems)
        assert set(problems) <= {r.getMessage() for r in caplog.records}
        assert chat.library.current.find_prompt("alpha") is not None
        await chat.say("/discuss now")  # the last good content keeps serving
        assert chat.platform.rounds()[-1].prompt.title == "Alpha article"
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 20)


@pytest.mark.parametrize(
    ("edit", "where", "message"),
    [
        ("bad_yaml", "mini.yaml:5:1:", "invalid YAML"),
        ("unknown_key", "mini.yaml:7:5:", "unknown key 'sumary'"),
        ("duplicate_id", "mini.yaml:23:9:", "duplicate prompt id 'alpha'"),
    ],
)
async def test_broken_edits_are_reported_with_positions_and_change_nothing(
    live, caplog, edit, where, message
):
    chat, reloader, root = live
    good = chat.library.current
    path = root / "prompts" / "mini.yaml"
    broken = {
        "bad_yaml": "title: Mini set\nprompts:\n  - id: alpha\n    title: [unclosed\n",
        "unknown_key": MINI_SET.replace("    summary: Alpha is", "    sumary: Alpha is", 1),
        "duplicate_id": MINI_SET
        + "  - id: alpha\n    title: Again\n    source: X\n    summary: Again.\n"
        '    questions:\n      - {text: "Again?", origin: ours}\n',
    }[edit]
    path.write_text(broken, encoding="utf-8")
    caplog.set_level(logging.ERROR, logger="bot.reload")

    problems = await reloader.reload()

    assert problems and chat.library.last_problems == problems
    shown = [str(p) for p in problems]
    assert any(where in s and message in s for s in shown), shown
    assert all(s.split(":")[0].endswith("mini.yaml") for s in shown)
    logged = [r.getMessage() for r in caplog.records]
    assert all(s in logged for s in shown)  # each problem is logged as path:line:col: message
    assert chat.library.current is good  # nothing applied
    sets = await chat.say("/discuss sets")
    assert "mini — Mini set (3 prompts)" in sets and message in sets
    await chat.say("/discuss now")
    assert chat.platform.rounds()[-1].prompt.title == "Alpha article"

    path.write_text(MINI_SET + DELTA, encoding="utf-8")
    reply = await chat.say("/discuss reload")
    assert reply.startswith("Reloaded: 1 prompt set, 4 prompts")
    assert chat.library.last_problems == []
    assert "problem" not in await chat.say("/discuss sets")


async def test_reload_command_reports_problems_and_is_for_admins(live):
    chat, _, root = live
    (root / "config" / "roundtable.yaml").write_text(MINI_CONFIG + "bogus: 1\n", "utf-8")
    reply = await chat.say("/discuss reload")
    assert reply.startswith("Reload refused.")
    assert "config/roundtable.yaml:8:1: unknown key 'bogus'" in reply
    assert "for admins only" in await chat.say("/discuss reload", who="bob")
    assert "for admins only" in await chat.say("/discuss sets", who="bob")


async def test_config_edits_apply_atomically_and_removed_channels_stop(live):
    chat, reloader, root = live
    config = root / "config" / "roundtable.yaml"
    seen: list[tuple[set[str], set[str]]] = []

    async def listener(old, new):
        seen.append(
            (
                {c for s in old.config.schedules for c in s.channels},
                {c for s in new.config.schedules for c in s.channels},
            )
        )

    chat.library.subscribe(listener)
    config.write_text(MINI_CONFIG.replace("[console:general]", "[console:other]"), "utf-8")
    assert await reloader.reload() == []
    assert seen == [({"console:general"}, {"console:other"})]
    assert chat.library.current.config.schedules_for("console:general") == []
    assert await reloader.reload() == []  # unchanged files: no second swap
    assert len(seen) == 1


async def test_changed_schedule_fires_at_its_new_time(live):
    """Under the injected clock: the edit moves Monday 10:00 to 09:30, from now on."""
    chat, reloader, root = live
    scheduler = Scheduler(
        library=chat.library,
        service=chat.dispatcher.service,
        dispatcher=chat.dispatcher,
        clock=chat.clock,
    )
    start = chat.clock.now()  # Monday 2026-11-02 09:00 UTC
    assert (await scheduler.tick(start)).opened == []
    config = root / "config" / "roundtable.yaml"
    config.write_text(MINI_CONFIG.replace('"0 10 * * mon"', '"30 9 * * mon"'), "utf-8")
    assert await reloader.reload() == []

    at_new_time = start + timedelta(minutes=31)
    chat.clock.set(at_new_time)
    report = await scheduler.tick(at_new_time)
    assert len(report.opened) == 1
    assert len(chat.platform.rounds()) == 1
    assert (await scheduler.tick(start + timedelta(hours=1, minutes=1))).opened == []
    assert len(chat.platform.rounds()) == 1  # the old 10:00 slot no longer fires
