"""Live reload never ends the bot: each pathological edit saved into a running bot's
``prompts/`` or config is reported like a validation problem, the last good content
keeps serving, and the fix is picked up by the same watcher."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.reload import Reloader
from tests.support import MINI_CONFIG, MINI_SET, make_chat, write_library
from tests.test_bad_input import BOMB

FIXED_SET = MINI_SET.replace("Alpha article", "Alpha article, fixed")

SET_EDITS = {
    "control-character": MINI_SET.replace("Alpha is about", "Alpha\x08 is about").encode(),
    "nul-byte": MINI_SET.encode().replace(b"Alpha is", b"Alpha\x00is"),
    "invalid-utf8": MINI_SET.encode().replace(b"Alpha is", b"Alpha \xff\xfe is"),
    "deep-nesting": (MINI_SET + "extra: " + "[" * 5000 + "]" * 5000 + "\n").encode(),
    "deep-block-nesting": (MINI_SET + "".join("  " * i + f"k{i}:\n" for i in range(1000))).encode(),
    "recursive-alias": (MINI_SET + "extra: &x [*x]\n").encode(),
    "alias-bomb": (MINI_SET + BOMB).encode(),
    "huge-number": MINI_SET.replace("title: Mini set", "title: " + "9" * 5000).encode()
    + b"tags: oops\n",
    "empty-file": b"",
    "binary-garbage": bytes(range(256)) * 4,
    "not-a-mapping": b"- just\n- a list\n",
}

CONFIG_EDITS = {
    "huge-duration": MINI_CONFIG + "    close_after: 9999999999d\n",
    "nul-prompts-dir": MINI_CONFIG.replace("prompts_dir: ../prompts", 'prompts_dir: "a\\0b"'),
    "over-long-prompts-dir": MINI_CONFIG.replace(
        "prompts_dir: ../prompts", "prompts_dir: " + "x" * 5000
    ),
    "bad-channel": MINI_CONFIG.replace("[console:general]", "[discord:notanumber]"),
    "recursive-alias": MINI_CONFIG + "extra: &x {<<: *x}\n",
    "control-character": MINI_CONFIG.replace("timezone: UTC", "timezone: U\x08TC"),
}


@pytest.fixture
async def running(tmp_path, sqlite_url):
    """A bot whose watcher is running, as in ``roundtable run``."""
    config = write_library(tmp_path)
    chat = await make_chat(config, sqlite_url)
    reloader = Reloader(chat.library, config, debounce_ms=50, poll_ms=100)
    chat.dispatcher.handlers.reload = reloader.reload
    stop = asyncio.Event()
    watcher = asyncio.create_task(reloader.watch(stop))
    async with asyncio.timeout(20):
        await reloader.ready.wait()
    yield chat, reloader, tmp_path, watcher
    stop.set()
    await asyncio.wait_for(watcher, 20)
    await chat.store.close()


async def _saved(reloader: Reloader, write) -> None:
    """Save a file and wait until the watcher has tried to reload it."""
    before = reloader.attempts
    write()
    async with asyncio.timeout(20):  # guards a hang only
        while reloader.attempts <= before:
            reloader.attempted.clear()
            if reloader.attempts > before:
                break
            await reloader.attempted.wait()


async def _still_serving(chat, watcher, title: str = "Alpha article") -> None:
    assert not watcher.done(), "the watcher ended"
    assert "Roundtable commands:" in await chat.say("/discuss help", who="bob")
    assert title in await chat.say("/discuss preview alpha", who="bob")
    rounds = len(chat.platform.rounds())
    await chat.say("/discuss now")
    assert len(chat.platform.rounds()) == rounds + 1


@pytest.mark.parametrize("edit", sorted(SET_EDITS))
async def test_a_pathological_prompt_set_edit_never_stops_the_bot(running, caplog, edit):
    chat, reloader, root, watcher = running
    path = root / "prompts" / "mini.yaml"
    caplog.set_level(logging.ERROR, logger="bot.reload")

    await _saved(reloader, lambda: path.write_bytes(SET_EDITS[edit]))

    problems = [str(p) for p in chat.library.last_problems]
    assert problems, "the edit was accepted"
    assert any("mini.yaml:" in p for p in problems), problems
    assert "reload refused" in caplog.text
    await _still_serving(chat, watcher)
    sets = await chat.say("/discuss sets")
    assert "mini — Mini set (3 prompts)" in sets and "problem" in sets

    await _saved(reloader, lambda: path.write_text(FIXED_SET, encoding="utf-8"))
    assert chat.library.last_problems == []
    await _still_serving(chat, watcher, "Alpha article, fixed")


@pytest.mark.parametrize("edit", sorted(CONFIG_EDITS))
async def test_a_pathological_config_edit_never_stops_the_bot(running, edit):
    chat, reloader, root, watcher = running
    path = root / "config" / "roundtable.yaml"

    await _saved(reloader, lambda: path.write_text(CONFIG_EDITS[edit], encoding="utf-8"))

    problems = [str(p) for p in chat.library.last_problems]
    assert problems and all("roundtable.yaml:" in p for p in problems), problems
    await _still_serving(chat, watcher)

    fixed = MINI_CONFIG.replace("prompt_set: mini", "prompt_set: mini\n    close_after: 3d")
    await _saved(reloader, lambda: path.write_text(fixed, encoding="utf-8"))
    assert chat.library.last_problems == []
    assert chat.library.current.config.schedules[0].close_after is not None
    await _still_serving(chat, watcher)


async def test_an_unforeseen_error_while_loading_is_reported_not_raised(running, monkeypatch):
    chat, reloader, _root, watcher = running

    def explode(_path):
        raise RecursionError("something nobody foresaw")

    monkeypatch.setattr("bot.reload.load_library", explode)
    problems = await reloader.reload()
    assert len(problems) == 1 and "RecursionError" in str(problems[0])
    assert chat.library.last_problems == problems
    await _still_serving(chat, watcher)


async def test_a_failing_listener_is_reported_and_watching_goes_on(running):
    chat, reloader, root, watcher = running

    async def broken_listener(old, new):
        raise RuntimeError("the scheduler could not take it")

    chat.library.subscribe(broken_listener)
    path = root / "prompts" / "mini.yaml"
    await _saved(reloader, lambda: path.write_text(FIXED_SET, encoding="utf-8"))
    (problem,) = chat.library.last_problems
    assert "applying it failed" in str(problem) and "RuntimeError" in str(problem)
    assert not watcher.done()
    assert "Roundtable commands:" in await chat.say("/discuss help")


async def test_the_watcher_survives_its_folder_disappearing(tmp_path, sqlite_url, caplog):
    config = write_library(tmp_path)
    chat = await make_chat(config, sqlite_url)
    reloader = Reloader(chat.library, config, debounce_ms=50, poll_ms=100)
    reloader.retry_s = 0.05
    calls = 0

    def failing_paths():
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise PermissionError(13, "Permission denied")
        return original()

    original = reloader.watched_paths
    reloader.watched_paths = failing_paths
    stop = asyncio.Event()
    watcher = asyncio.create_task(reloader.watch(stop))
    try:
        async with asyncio.timeout(20):
            await reloader.ready.wait()  # it retried and is watching
        assert "cannot watch" in caplog.text
        await _saved(reloader, lambda: (tmp_path / "prompts" / "mini.yaml").write_text(FIXED_SET))
        assert chat.library.current.find_prompt("alpha")[1].title == "Alpha article, fixed"
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 20)
        await chat.store.close()
