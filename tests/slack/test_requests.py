"""Hostile or broken requests to /slack/events: 400 or 401, one log line at most, and the
signature checked before anything is parsed (issue 12, defect 4)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from urllib.parse import urlencode

import pytest

from tests.slack.conftest import SECRET, event_body, message_event

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def signed(body: bytes, timestamp: str | None = None, secret: str = SECRET) -> dict[str, str]:
    ts = timestamp or str(int(time.time()))
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": "v0=" + digest.hexdigest()}


async def post(slack, body: bytes, content_type: str, headers: dict[str, str]) -> int:
    async with slack.session.post(
        f"{slack.url}/slack/events",
        data=body,
        headers={"Content-Type": content_type, **headers},
    ) as r:
        await r.read()
        return r.status


def interaction(payload) -> bytes:
    return urlencode({"payload": payload}).encode()


SIGNED_BUT_BROKEN = {
    "invalid JSON": (b'{"type": "event_callback", ', JSON),
    "JSON that is not an object": (b"[1, 2, 3]", JSON),
    "not UTF-8": (b'{"type": "event_callback", "x": "\xff\xfe"}', JSON),
    "junk payload=": (b"payload=%7Bnot+json", FORM),
    "payload that is a string": (interaction('"hello"'), FORM),
    "payload of an unknown type": (interaction(json.dumps({"type": "shortcut"})), FORM),
    "view_submission without a view": (
        interaction(json.dumps({"type": "view_submission", "user": {"id": "U1"}})),
        FORM,
    ),
    "block_actions with a junk value": (
        interaction(
            json.dumps(
                {
                    "type": "block_actions",
                    "user": {"id": "U1"},
                    "trigger_id": "t",
                    "channel": {"id": "C1"},
                    "actions": [{"action_id": "roundtable_share", "value": "12; drop"}],
                }
            )
        ),
        FORM,
    ),
    "event_callback without an event": (
        json.dumps({"type": "event_callback", "event_id": "Ev1"}).encode(),
        JSON,
    ),
    "message event with a numeric text": (
        json.dumps(
            event_body({"type": "message", "channel": "C1", "ts": "1.2", "text": 5}, "Ev1")
        ).encode(),
        JSON,
    ),
    "form without command or payload": (b"hello=world", FORM),
    "another slash command": (b"command=%2Fother&user_id=U1&channel_id=C1&response_url=x", FORM),
    "form that is not UTF-8 inside": (b"command=%2Fdiscuss&text=%ff%fe", FORM),
    "form with too many fields": (
        b"command=%2Fdiscuss&" + b"&".join(b"f%d=1" % i for i in range(64)),
        FORM,
    ),
    "form repeating a field, once encoded": (
        b"command=%2Fdiscuss&user_id=U1&channel_id=C1&response_url=x&%74ext=a&text=b",
        FORM,
    ),
    "unexpected content type": (b"<xml/>", "text/xml"),
}


@pytest.mark.parametrize("case", list(SIGNED_BUT_BROKEN))
async def test_signed_but_broken_requests_get_400_and_one_log_line(slack, caplog, case):
    body, content_type = SIGNED_BUT_BROKEN[case]
    with caplog.at_level(logging.DEBUG):
        status = await post(slack, body, content_type, signed(body))
        await slack.settle()
    assert status == 400
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) <= 1 and not any(r.exc_info for r in caplog.records)
    assert "\n" not in "".join(r.getMessage() for r in lines)
    assert slack.fake.calls_to("chat.postMessage") == []


UNSIGNED = {
    "non-numeric timestamp": {"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"},
    "huge timestamp": {"X-Slack-Request-Timestamp": "9" * 40, "X-Slack-Signature": "v0=00"},
    "no headers": {},
    "non-ASCII signature": {"X-Slack-Request-Timestamp": "0", "X-Slack-Signature": "v0=é"},
}


@pytest.mark.parametrize("case", list(UNSIGNED))
@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"payload=junk"])
async def test_unsigned_requests_get_401_before_the_body_is_read(slack, caplog, case, body):
    with caplog.at_level(logging.DEBUG):
        status = await post(slack, body, JSON, UNSIGNED[case])
    assert status == 401
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) <= 1 and not any(r.exc_info for r in caplog.records)


async def test_a_signature_over_other_bytes_is_refused_even_for_a_valid_event(slack, caplog):
    body = json.dumps(event_body(message_event("hi", user="U1", ts="1.2", thread_ts="1.1"), "E"))
    headers = signed(b"something else")
    assert await post(slack, body.encode(), JSON, headers) == 401
    headers = signed(body.encode(), secret="not-the-secret")
    assert await post(slack, body.encode(), JSON, headers) == 401


async def test_well_formed_requests_still_work(slack):
    assert await slack.command("help") == 200
    body = json.dumps({"type": "url_verification", "challenge": "xyz", "token": "t"}).encode()
    async with slack.session.post(
        f"{slack.url}/slack/events", data=body, headers={"Content-Type": JSON, **signed(body)}
    ) as r:
        assert r.status == 200 and "xyz" in await r.text()
    await slack.settle()
    assert "Roundtable commands" in slack.responses()[0]["text"]


async def test_slacks_rate_limit_notice_is_acknowledged_with_one_line(slack, caplog):
    body = json.dumps(
        {"token": "t", "type": "app_rate_limited", "team_id": "T1", "minute_rate_limited": 1}
    ).encode()
    with caplog.at_level(logging.INFO):
        assert await post(slack, body, JSON, signed(body)) == 200
    [line] = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert "app_rate_limited" in line.getMessage()


def test_mutated_bodies_are_accepted_or_refused_never_crash():
    """Fixed-seed mutations of real payloads: ``check`` returns text or raises Rejected."""
    import random

    from bot.adapters.slack import requests
    from tests.slack.conftest import command_form
    from tests.slack.fake_slack import FakeSlack

    seeds = [
        (
            json.dumps(
                event_body(message_event("1: hi", user="U1", ts="1.2", thread_ts="1.1"), "E")
            ).encode(),
            JSON,
        ),
        (urlencode(command_form(FakeSlack(), "answer 1 R&D", "U1", "C1", 1)).encode(), FORM),
        (
            interaction(
                json.dumps(
                    {
                        "type": "view_submission",
                        "user": {"id": "U1"},
                        "view": {
                            "callback_id": "roundtable_answers",
                            "private_metadata": '{"round": 1, "channel": "C1"}',
                            "state": {"values": {"q1": {"answer": {"value": "x"}}}},
                        },
                    }
                )
            ),
            FORM,
        ),
    ]
    rng = random.Random(12)
    outcomes = {"accepted": 0, "refused": 0}
    for _ in range(3000):
        body, content_type = rng.choice(seeds)
        data = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data))
            choice = rng.random()
            if choice < 0.4:
                data[i] = rng.randrange(256)
            elif choice < 0.7:
                del data[i]
            else:
                data[i:i] = bytes([rng.randrange(256)])
        try:
            requests.check(bytes(data), content_type)
            outcomes["accepted"] += 1
        except requests.Rejected as exc:
            assert exc.status == 400
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0


async def test_mutated_signed_requests_through_the_server_never_500(slack, caplog):
    """The same mutations, signed and sent to the running app: 200 or 400, no traceback."""
    import random

    from tests.slack.conftest import command_form

    round_id = 1
    seeds = [
        (
            json.dumps(
                event_body(message_event("1: hi", user="U1", ts="1.2", thread_ts="1.1"), "E")
            ).encode(),
            JSON,
        ),
        (urlencode(command_form(slack.fake, "help", "U1", "C1", 1)).encode(), FORM),
        (
            interaction(
                json.dumps(
                    {
                        "type": "block_actions",
                        "user": {"id": "U1"},
                        "trigger_id": "t",
                        "channel": {"id": "C1"},
                        "actions": [{"action_id": "roundtable_share", "value": str(round_id)}],
                    }
                )
            ),
            FORM,
        ),
    ]
    rng = random.Random(7)
    statuses = set()
    with caplog.at_level(logging.INFO):
        for _ in range(150):
            body, content_type = rng.choice(seeds)
            data = bytearray(body)
            i = rng.randrange(len(data))
            data[i] = rng.randrange(256)
            statuses.add(await post(slack, bytes(data), content_type, signed(bytes(data))))
        await slack.settle()
    assert statuses <= {200, 400}
    assert not [r for r in caplog.records if r.exc_info], [
        r.getMessage() for r in caplog.records if r.exc_info
    ]
