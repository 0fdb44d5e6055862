"""Posting under rate limits and outages, the 3-second ack, find_post and shutdown."""

from __future__ import annotations

import asyncio
import logging
import socket

import aiohttp

from bot.adapters.slack import serve
from bot.config import Secrets
from tests.slack.conftest import BOT_TOKEN, SECRET, command_form, make_runtime, sign


async def test_429_on_post_is_retried_after_retry_after(slack):
    slack.fake.fail("chat.postMessage", status=429, error="ratelimited", retry_after=7)
    await slack.command("now")
    await slack.settle()
    assert len(slack.fake.calls_to("chat.postMessage")) == 2
    assert len(slack.fake.posted("C1")) == 1
    [waited] = slack.sleeps.durations
    assert 7 <= waited < 8  # Retry-After honoured (plus jitter), through the injected sleep
    round_ = await slack.runtime.store.open_round_in("slack:C1")
    assert round_.message_ref == slack.fake.posted("C1")[0]["ts"]


async def test_a_5xx_after_the_post_landed_does_not_post_twice(slack):
    slack.fake.fail("chat.postMessage", status=500, land=True)
    await slack.command("now")
    await slack.settle()
    [message] = slack.fake.posted("C1")
    assert len(slack.fake.calls_to("chat.postMessage")) == 1  # found by metadata, not re-sent
    assert slack.fake.calls_to("conversations.history")[0]["include_all_metadata"] in (
        "1",
        "true",
        True,
    )
    round_ = await slack.runtime.store.open_round_in("slack:C1")
    assert round_.message_ref == message["ts"]


async def test_a_5xx_before_the_post_landed_is_re_sent_once(slack):
    slack.fake.fail("chat.postMessage", status=503, error="service_unavailable")
    await slack.command("now")
    await slack.settle()
    assert len(slack.fake.calls_to("chat.postMessage")) == 2
    assert len(slack.fake.posted("C1")) == 1


async def test_thread_posts_are_not_duplicated_either(slack):
    await slack.command("now")
    await slack.settle()
    slack.fake.fail("chat.postMessage", status=502, land=True)
    await slack.command("answer --anonymous quiet thought", user="UBOB")
    await slack.settle()
    reposts = [m for m in slack.fake.posted("C1") if m.get("thread_ts")]
    assert len(reposts) == 1
    assert slack.fake.calls_to("conversations.replies")


async def test_a_channel_without_the_bot_is_reported_and_skipped(slack, caplog):
    slack.fake.refuse["C1"] = "not_in_channel"
    with caplog.at_level(logging.ERROR):
        await slack.command("now")
        await slack.settle()
    assert len(slack.fake.calls_to("chat.postMessage")) == 1  # not retried
    assert any("invite the bot" in r.getMessage() for r in caplog.records)
    assert any("Could not post in slack:C1" in r["text"] for r in slack.fake.responses)


async def test_ack_is_immediate_while_the_work_is_slow(slack):
    gate = slack.fake.hold("chat.postMessage")
    assert await slack.command("now") == 200  # acknowledged while the post is stuck
    await slack.fake.wait_for(lambda: slack.fake.calls_to("chat.postMessage"))
    assert not gate.is_set() and slack.fake.posted("C1") == []
    assert slack.adapter.tasks  # the work is held by a strong reference
    gate.set()
    await slack.settle()
    assert len(slack.fake.posted("C1")) == 1


async def test_find_post_uses_history_and_round_metadata(slack):
    await slack.command("now")
    await slack.settle()
    round_ = await slack.runtime.store.open_round_in("slack:C1")
    found = await slack.adapter.find_post("slack:C1", f"rt-{round_.id}")
    assert found is not None and found.message_ref == round_.message_ref
    assert await slack.adapter.find_post("slack:C1", "rt-999") is None


async def test_preview_is_shown_only_to_the_admin(slack):
    await slack.command("preview beta")
    await slack.settle()
    assert slack.fake.calls_to("chat.postMessage") == []
    [response] = slack.responses()
    assert response["response_type"] == "ephemeral"
    assert response["blocks"][0]["text"]["text"] == "Preview: Beta article"
    assert all(b["type"] != "actions" for b in response["blocks"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_serve_drains_background_work_on_cancellation(tmp_path, sqlite_url, fake):
    port = free_port()
    secrets = Secrets(slack_bot_token=BOT_TOKEN, slack_signing_secret=SECRET)
    runtime = await make_runtime(tmp_path, sqlite_url, fake, port=port, secrets=secrets)
    task = asyncio.create_task(serve(runtime.ports, runtime.readiness))
    await fake.wait_for(lambda: fake.calls_to("auth.test"))
    gate = fake.hold("chat.postMessage")
    body = "&".join(f"{k}={v}" for k, v in command_form(fake, "now", "UADMIN", "C1", 1).items())
    body = body.replace("/", "%2F").replace(":", "%3A")
    headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
    async with aiohttp.ClientSession() as session:
        for _ in range(100):  # the site starts right after auth.test
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.01)
        async with session.post(
            f"http://127.0.0.1:{port}/slack/events", data=body, headers=headers
        ) as r:
            assert r.status == 200
    await fake.wait_for(lambda: fake.calls_to("chat.postMessage"))
    task.cancel()
    await asyncio.sleep(0)
    gate.set()  # the held post finishes during shutdown instead of being dropped
    await asyncio.gather(task, return_exceptions=True)
    assert len(fake.posted("C1")) == 1
    round_ = await runtime.store.open_round_in("slack:C1")
    assert round_.message_ref == fake.posted("C1")[0]["ts"]
    await runtime.close()
