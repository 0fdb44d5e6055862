"""Running out of prompts: warnings, ``when_exhausted: restart | stop``, reshuffles."""

from __future__ import annotations

import logging

import pytest

from bot.core.rounds import RotationExhausted
from tests.support import MINI_CONFIG, make_chat, write_library

STOP_CONFIG = MINI_CONFIG + "    when_exhausted: stop\n"
SHUFFLE_SET = "title: Many\nprompts:\n" + "".join(
    f"  - id: p{i}\n    title: P{i}\n    source: S\n    summary: Prompt {i}.\n"
    f'    questions:\n      - {{text: "Q{i}?", origin: ours}}\n'
    for i in range(8)
)
SHUFFLE_CONFIG = (
    MINI_CONFIG.replace("prompt_set: mini", "prompt_set: many") + "    order: shuffle\n"
)


async def test_next_and_the_log_say_when_two_or_fewer_are_left(chat, caplog):
    caplog.set_level(logging.WARNING, logger="bot.core.rounds")
    assert "Running out" not in await chat.say("/discuss next")  # 3 unused
    await chat.say("/discuss now")  # alpha; 2 left
    assert "console:general has 2 unused prompts left in set mini" in caplog.text
    reply = await chat.say("/discuss next")
    assert "Running out: 2 unused prompts are left" in reply
    assert "the rotation starts over" in reply
    await chat.say("/discuss now")  # beta; 1 left
    assert "Running out: only this one unused prompt is left" in await chat.say("/discuss next")


async def test_restart_is_the_default(chat):
    for _ in range(4):
        await chat.say("/discuss now")
    ids = [r.prompt.prompt_id for r in chat.platform.rounds()]
    assert ids == ["alpha", "beta", "gamma", "alpha"]


async def test_stop_posts_nothing_more_once_every_prompt_was_used(tmp_path, sqlite_url):
    chat = await make_chat(write_library(tmp_path, STOP_CONFIG), sqlite_url)
    try:
        await chat.say("/discuss now")  # alpha
        assert "scheduled rounds stop here until prompts are added" in await chat.say(
            "/discuss next"
        )
        for _ in range(2):
            await chat.say("/discuss now")  # beta, gamma
        reply = await chat.say("/discuss now")
        assert "when_exhausted: stop" in reply and "no more rounds" in reply
        assert len(chat.platform.rounds()) == 3
        assert "when_exhausted: stop" in await chat.say("/discuss next")
        with pytest.raises(RotationExhausted):  # what the scheduler gets
            await chat.dispatcher.service.open_round(chat.channel)
        await chat.say("/discuss now beta")  # an explicit pick still works
        assert chat.platform.rounds()[-1].prompt.prompt_id == "beta"
    finally:
        await chat.store.close()


async def test_shuffle_reshuffles_each_pass(tmp_path, sqlite_url):
    config = write_library(tmp_path, SHUFFLE_CONFIG, sets={"many": SHUFFLE_SET})
    chat = await make_chat(config, sqlite_url)
    try:
        for _ in range(16):
            await chat.say("/discuss now")
        ids = [r.prompt.prompt_id for r in chat.platform.rounds()]
        first, second = ids[:8], ids[8:]
        assert sorted(first) == sorted(second) == [f"p{i}" for i in range(8)]
        assert first != second
    finally:
        await chat.store.close()
