"""Socket Mode: apps.connections.open on the fake hands out a ws://127.0.0.1 URL whose
WebSocket delivers envelopes, as Slack's does; the real slack_sdk client connects to it."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from bot.adapters.slack import SlackAdapter
from bot.config import Secrets
from tests.slack.conftest import (
    APP_TOKEN,
    BOT_TOKEN,
    Sleeps,
    command_form,
    event_body,
    make_runtime,
    message_event,
)


@pytest.fixture
async def socket_slack(tmp_path, sqlite_url, fake):
    secrets = Secrets(slack_bot_token=BOT_TOKEN, slack_app_token=APP_TOKEN)
    runtime = await make_runtime(tmp_path, sqlite_url, fake, mode="socket", secrets=secrets)
    adapter = SlackAdapter(runtime.ports, sleep=Sleeps(), ping_interval=0.2)
    adapter.store = runtime.store  # type: ignore[attr-defined]  # the test reads the database
    await adapter.start(host="127.0.0.1", port=0)
    try:
        yield adapter
    finally:
        await adapter.stop()
        await runtime.close()


async def health(adapter: SlackAdapter) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{adapter.port}/healthz") as r,
    ):
        return r.status


async def eventually(check) -> None:
    """Wait for the socket client (which runs on its own timers) to reach a state."""
    for _ in range(500):  # polls the library's state; bounded, never asserts on time
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the Socket Mode client never got there")


async def test_socket_mode_end_to_end(socket_slack, fake):
    adapter = socket_slack
    assert adapter.socket_mode
    await fake.wait_for(lambda: fake.connections == 1)
    assert fake.calls_to("apps.connections.open")
    await eventually(lambda: _is(health(adapter), 200))

    # a slash command, acknowledged over the socket and answered via response_url
    command = {
        "envelope_id": "env-1",
        "type": "slash_commands",
        "accepts_response_payload": True,
        "payload": command_form(fake, "now", "UADMIN", "C1", 1),
    }
    await fake.send_envelope(command)
    await fake.wait_for(lambda: any(a.get("envelope_id") == "env-1" for a in fake.acks))
    await fake.wait_for(lambda: fake.posted("C1"))
    await adapter.drain()
    round_ = await adapter.store.open_round_in("slack:C1")
    ts = fake.posted("C1")[0]["ts"]
    assert round_.message_ref == ts

    # a thread reply, then Slack's redelivery of the same event with retry_attempt
    body = event_body(
        message_event("1: over the socket", user="UBOB", ts="1900.1", thread_ts=ts), "EvS1"
    )
    for n, retry in enumerate((None, 1)):
        envelope = {
            "envelope_id": f"env-ev-{n}",
            "type": "events_api",
            "accepts_response_payload": False,
            "payload": body,
        }
        if retry:
            envelope |= {"retry_attempt": retry, "retry_reason": "timeout"}
        await fake.send_envelope(envelope)
        await fake.wait_for(
            lambda n=n: any(a.get("envelope_id") == f"env-ev-{n}" for a in fake.acks)
        )
        await adapter.drain()
    [row] = await adapter.store.responses(round_.id)
    assert row.text == "over the socket"

    # the connection drops; /healthz says unhealthy until the client has reconnected
    fake.socket_available = False
    await fake.drop()
    await eventually(lambda: _is(health(adapter), 503))
    fake.socket_available = True
    await fake.wait_for(lambda: fake.connections == 2)
    await eventually(lambda: _is(health(adapter), 200))
    await fake.send_envelope(
        {**command, "envelope_id": "env-2", "payload": command_form(fake, "help", "UBOB", "C1", 2)}
    )
    await fake.wait_for(lambda: any(a.get("envelope_id") == "env-2" for a in fake.acks))
    await adapter.drain()
    [ack] = [a for a in fake.acks if a.get("envelope_id") == "env-2"]
    assert "Roundtable commands" in json.dumps(ack["payload"])  # answered in the ack


async def _is(status, expected: int) -> bool:
    return await status == expected
