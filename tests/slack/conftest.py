"""Fixtures: the real Bolt app (HTTP mode) against the loopback Web API fake, driven by
correctly signed requests, and helpers that build Slack's payloads as Slack documents them.

- Signing (https://docs.slack.dev/authentication/verifying-requests-from-slack):
  ``v0=HMAC-SHA256(secret, "v0:<timestamp>:<raw body>")`` in ``X-Slack-Signature``.
- Slash commands (https://docs.slack.dev/interactivity/implementing-slash-commands):
  a URL-encoded form; ``text`` encodes ``& < >`` as ``&amp; &lt; &gt;``.
- Events (https://docs.slack.dev/apis/events-api, https://docs.slack.dev/reference/events/message,
  .../message/message_changed, .../message/message_deleted): a JSON ``event_callback``;
  message ``text`` is encoded the same way; ``ts`` is ``"<epoch>.<6 digits>"``.
- Interactions (https://docs.slack.dev/reference/interaction-payloads/block_actions-payload,
  .../view-interactions-payload): a form with one field, ``payload``, holding JSON;
  modal input values arrive exactly as typed (not encoded).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from slack_sdk.signature import SignatureVerifier

from bot.adapters.slack import SlackAdapter
from bot.app import Runtime, build_runtime
from bot.config import Secrets
from bot.core.clock import FakeClock
from tests.slack.fake_slack import FakeSlack, encode
from tests.support import write_library

SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-test-token"
ADMIN = "UADMIN"

CONFIG = """\
timezone: UTC
prompts_dir: ../prompts
admins:
  slack: [{admin}]
schedules:
  - name: weekly
    prompt_set: mini
    cron: "0 10 * * mon"
    channels: [slack:C1]
slack:
  mode: {mode}
  port: {port}
  api_url: {api_url}
"""


class Sleeps:
    """The adapter's injected sleep: records how long it was asked to wait, never waits."""

    def __init__(self) -> None:
        self.durations: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.durations.append(seconds)


def sign(body: str, timestamp: int | None = None, secret: str = SECRET) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}


def command_form(fake: FakeSlack, text: str, user: str, channel: str, n: int) -> dict[str, str]:
    return {
        "token": "legacy",
        "team_id": "T1",
        "team_domain": "roundtable-test",
        "channel_id": channel,
        "channel_name": "general",
        "user_id": user,
        "user_name": user.lower(),
        "command": "/discuss",
        "text": encode(text),
        "api_app_id": "A1",
        "response_url": fake.response_url(f"r{n}"),
        "trigger_id": f"trigger-{n}",
        "is_enterprise_install": "false",
    }


def slack_ts(n: int) -> str:
    """A message ``ts`` as Slack writes it: epoch seconds, a dot, six digits."""
    return f"1700000100.{n:06d}"


def message_event(text: str, *, user: str, ts: str, thread_ts: str | None, channel="C1") -> dict:
    """A message event as Slack delivers what ``user`` typed (``& < >`` encoded)."""
    event = {"type": "message", "channel": channel, "user": user, "text": encode(text), "ts": ts}
    if thread_ts:
        event["thread_ts"] = thread_ts
    event["channel_type"] = "channel"
    event["event_ts"] = ts
    return event


def edited_event(
    text: str, previous: str, *, user: str, ts: str, thread_ts: str, edit_ts: str, channel="C1"
) -> dict:
    """``message_changed``: the edited message whole, and the one it replaced."""
    message = {"type": "message", "user": user, "text": encode(text), "ts": ts}
    message |= {"thread_ts": thread_ts, "edited": {"user": user, "ts": edit_ts}}
    before = {"type": "message", "user": user, "text": encode(previous), "ts": ts}
    before |= {"thread_ts": thread_ts}
    return {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "channel": channel,
        "ts": edit_ts,
        "event_ts": edit_ts,
        "message": message,
        "previous_message": before,
        "channel_type": "channel",
    }


def deleted_event(
    previous: str, *, user: str, ts: str, thread_ts: str, delete_ts: str, channel="C1"
) -> dict:
    """``message_deleted``: ``deleted_ts`` names the message that is gone."""
    before = {"type": "message", "user": user, "text": encode(previous), "ts": ts}
    before |= {"thread_ts": thread_ts}
    return {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "channel": channel,
        "ts": delete_ts,
        "event_ts": delete_ts,
        "deleted_ts": ts,
        "previous_message": before,
        "channel_type": "channel",
    }


def event_body(event: dict, event_id: str) -> dict[str, Any]:
    return {
        "token": "legacy",
        "team_id": "T1",
        "api_app_id": "A1",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1700000000,
        "authorizations": [
            {"team_id": "T1", "user_id": "UBOT", "is_bot": True, "is_enterprise_install": False}
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{event_id}",
    }


@dataclass
class Harness:
    fake: FakeSlack
    runtime: Runtime
    adapter: SlackAdapter
    session: aiohttp.ClientSession
    sleeps: Sleeps
    _n: itertools.count = field(default_factory=lambda: itertools.count(1))
    acks: list[dict] = field(default_factory=list)  # commands answered in the ack's body

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.adapter.port}"

    async def send(
        self,
        body: str,
        content_type: str,
        *,
        headers: dict[str, str] | None = None,
        timestamp: int | None = None,
    ) -> tuple[int, str]:
        all_headers = {"Content-Type": content_type, **sign(body, timestamp), **(headers or {})}
        async with self.session.post(
            f"{self.url}/slack/events", data=body, headers=all_headers
        ) as r:
            return r.status, await r.text()

    async def command(self, text: str, user: str = ADMIN, channel: str = "C1") -> int:
        form = command_form(self.fake, text, user, channel, next(self._n))
        status, body = await self.send(urlencode(form), "application/x-www-form-urlencoded")
        if status == 200 and body:
            self.acks.append(json.loads(body))
        return status

    async def interaction(self, payload: dict) -> int:
        status, _ = await self.interaction_response(payload)
        return status

    async def interaction_response(self, payload: dict) -> tuple[int, str]:
        """Send an interaction; the HTTP status and body (a modal's ``response_action``)."""
        body = urlencode({"payload": json.dumps(payload)})
        return await self.send(body, "application/x-www-form-urlencoded")

    def _envelope(self, user: str) -> dict[str, Any]:
        """The fields every interaction payload from ``user`` carries."""
        return {
            "team": {"id": "T1"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "T1"},
            "api_app_id": "A1",
            "token": "legacy",
            "trigger_id": f"trigger-{next(self._n)}",
        }

    async def press_share(self, round_id: int, user: str, channel: str = "C1") -> int:
        return await self.interaction(
            {
                "type": "block_actions",
                **self._envelope(user),
                "container": {"type": "message", "message_ts": "1.0", "channel_id": channel},
                "channel": {"id": channel, "name": "general"},
                "message": {"type": "message", "ts": "1.0", "bot_id": "BBOT"},
                "response_url": self.fake.response_url(f"share-{next(self._n)}"),
                "actions": [
                    {
                        "type": "button",
                        "action_id": "roundtable_share",
                        "block_id": "roundtable_actions",
                        "value": str(round_id),
                        "action_ts": "1700000000.1",
                    }
                ],
            }
        )

    async def submit(
        self, view: dict, answers: dict[int, str], user: str, anonymous: bool = False
    ) -> int:
        status, _ = await self.submit_response(view, answers, user, anonymous)
        return status

    async def submit_response(
        self, view: dict, answers: dict[int, str], user: str, anonymous: bool = False
    ) -> tuple[int, str]:
        """Submit the modal with ``answers`` typed in (values are sent as typed)."""
        values: dict[str, Any] = {
            f"q{n}": {"answer": {"type": "plain_text_input", "value": text}}
            for n, text in answers.items()
        }
        selected = [{"value": "anonymous"}] if anonymous else []
        values["anon"] = {"anonymous": {"type": "checkboxes", "selected_options": selected}}
        return await self.interaction_response(
            {
                "type": "view_submission",
                **self._envelope(user),
                "view": {**view, "id": "V1", "state": {"values": values}, "hash": "h"},
                "response_urls": [],
            }
        )

    async def event(self, event: dict, event_id: str, retry: int | None = None) -> int:
        headers = (
            {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "timeout"} if retry else {}
        )
        body = json.dumps(event_body(event, event_id))
        status, _ = await self.send(body, "application/json", headers=headers)
        return status

    async def settle(self) -> None:
        await self.adapter.drain()

    def responses(self) -> list[dict]:
        """Messages answering commands: ack bodies, then ``response_url`` posts."""
        return self.acks + self.fake.responses

    def replies(self) -> list[str]:
        """What the people who acted were told (acks, response_url posts, ephemerals)."""
        out = [r.get("text", "") for r in self.responses()]
        out += [p.get("text", "") for p in self.fake.calls_to("chat.postEphemeral")]
        return out


async def make_runtime(
    tmp_path, sqlite_url, fake: FakeSlack, mode="http", port=3000, secrets=None, sets=None, extra=""
):
    config = CONFIG.format(admin=ADMIN, mode=mode, port=port, api_url=fake.api_url) + extra
    path = write_library(tmp_path, config=config, sets=sets)
    return await build_runtime(
        path,
        clock=FakeClock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC)),
        secrets=secrets or Secrets(slack_bot_token=BOT_TOKEN, slack_signing_secret=SECRET),
        database=sqlite_url,
    )


@pytest.fixture
async def fake():
    f = FakeSlack()
    await f.start()
    yield f
    await f.close()


@contextlib.asynccontextmanager
async def harness(tmp_path, sqlite_url, fake, **runtime_options):
    """A started HTTP-mode adapter (on 127.0.0.1, a free port) and a client session."""
    runtime = await make_runtime(tmp_path, sqlite_url, fake, **runtime_options)
    sleeps = Sleeps()
    adapter = SlackAdapter(runtime.ports, sleep=sleeps)
    await adapter.start(host="127.0.0.1", port=0)
    session = aiohttp.ClientSession()
    try:
        yield Harness(fake, runtime, adapter, session, sleeps)
    finally:
        await session.close()
        await adapter.stop()
        await runtime.close()


@pytest.fixture
async def slack(tmp_path, sqlite_url, fake):
    async with harness(tmp_path, sqlite_url, fake) as h:
        yield h
