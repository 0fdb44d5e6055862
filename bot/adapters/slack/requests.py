"""What reaches ``/slack/events`` is checked here before slack-bolt sees it.

The signature is verified over the raw bytes first
(https://docs.slack.dev/authentication/verifying-requests-from-slack: ``v0:<timestamp>:<body>``
HMAC-SHA256 with the signing secret, timestamp within five minutes), and only then is
the body decoded and parsed. Anything that is not one of the shapes the adapter handles
(slash command, Share button, form submission, message event, URL verification) is
refused with 400, so a stranger gets 401 and a broken request 400, never a 500 and a
traceback in the log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from bot.adapters.slack import blocks

MAX_AGE = 60 * 5
MAX_FIELDS = 64  # Slack's forms have about a dozen
COMMAND = "/discuss"


class Rejected(Exception):
    """The request is refused with ``status``; ``reason`` is one short line for the log."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Notice(Rejected):
    """Not for Bolt, but fine: acknowledged with 200 after one log line."""

    def __init__(self, reason: str):
        super().__init__(200, reason)


def verify(body: bytes, headers: Mapping[str, str], secret: str, now: float) -> None:
    """Raise ``Rejected(401)`` unless the request is signed with ``secret`` and fresh."""
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise Rejected(401, "no valid X-Slack-Request-Timestamp")
    if abs(now - int(timestamp)) > MAX_AGE:
        raise Rejected(401, "X-Slack-Request-Timestamp is more than 5 minutes off")
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise Rejected(401, "bad X-Slack-Signature")


@dataclass(frozen=True)
class Checked:
    """A request of a shape the adapter handles: its text, and for a slash command its
    fields (parsed once here; a command is answered without Bolt's dispatch)."""

    text: str
    command: dict[str, str] | None = None


def check(body: bytes, content_type: str) -> Checked:
    """The body, if it is one of the shapes the adapter handles; else ``Rejected(400)``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "body is not UTF-8") from None
    if content_type == "application/json":
        _check_event(_object(text, "body"))
    elif content_type == "application/x-www-form-urlencoded":
        form = _form(text)
        if "payload" in form:
            _check_interaction(_object(form["payload"], "payload"))
        elif "command" in form:
            _check_command(form)
            return Checked(text, form)
        elif form.get("ssl_check") != "1":
            raise Rejected(400, "a form with neither a command nor a payload")
    else:
        raise Rejected(400, "unexpected Content-Type")
    return Checked(text)


def _object(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise Rejected(400, f"{what} is not JSON") from None
    if not isinstance(data, dict):
        raise Rejected(400, f"{what} is not a JSON object")
    return data


def _form(text: str) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as {name: value}
    (https://url.spec.whatwg.org/#urlencoded-parsing), strict: UTF-8 after decoding, no
    field twice, at most ``MAX_FIELDS``. Only what is encoded is decoded: a slash
    command's form is parsed inside its ack, and most of its fields are plain ids."""
    pairs = text.split("&")
    if len(pairs) > MAX_FIELDS:
        raise Rejected(400, "form has too many fields")
    form: dict[str, str] = {}
    for pair in pairs:
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "%" in pair or "+" in pair:
            name, value = _decoded(name), _decoded(value)
        if name in form:
            raise Rejected(400, "form repeats a field")
        form[name] = value
    return form


def _decoded(part: str) -> str:
    try:
        return unquote(part.replace("+", " "), errors="strict")
    except UnicodeDecodeError:
        raise Rejected(400, "form is not valid URL-encoded UTF-8") from None


def _need(data: Mapping[str, Any], *names: str, kind: type = str) -> None:
    for name in names:
        if not isinstance(data.get(name), kind):
            raise Rejected(400, f"{name} missing or not a {kind.__name__}")


def _check_command(form: Mapping[str, str]) -> None:
    """https://docs.slack.dev/interactivity/implementing-slash-commands (the fields Slack sends)."""
    if form.get("command") != COMMAND:
        raise Rejected(400, "unknown slash command")
    _need(form, "user_id", "channel_id", "response_url")


def _check_interaction(payload: Mapping[str, Any]) -> None:
    """https://docs.slack.dev/reference/interaction-payloads/block_actions-payload and
    .../view-interactions-payload: the two kinds the adapter answers."""
    _need(payload, "user", kind=dict)
    _need(payload["user"], "id")
    kind = payload.get("type")
    if kind == "block_actions":
        _need(payload, "trigger_id")
        actions = payload.get("actions")
        if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
            raise Rejected(400, "block_actions without actions")
        action = actions[0]
        value = action.get("value")
        if action.get("action_id") != blocks.SHARE_ACTION or not (
            isinstance(value, str) and value.isascii() and value.isdigit()
        ):
            raise Rejected(400, "unknown action")
        channel = payload.get("channel") or payload.get("container")
        if not isinstance(channel, dict) or not isinstance(
            channel.get("id") or channel.get("channel_id"), str
        ):
            raise Rejected(400, "block_actions without a channel")
    elif kind == "view_submission":
        _need(payload, "view", kind=dict)
        view = payload["view"]
        if view.get("callback_id") != blocks.MODAL_CALLBACK:
            raise Rejected(400, "unknown view")
        meta = view.get("private_metadata")
        meta = _object(meta, "private_metadata") if isinstance(meta, str) else None
        if (
            not meta
            or not isinstance(meta.get("round"), int)
            or not isinstance(meta.get("channel"), str)
        ):
            raise Rejected(400, "view without its round")
        state = view.get("state")
        if not isinstance(state, dict) or not isinstance(state.get("values"), dict):
            raise Rejected(400, "view without state.values")
    else:
        raise Rejected(400, "unknown interaction type")


def _check_event(body: Mapping[str, Any]) -> None:
    """https://docs.slack.dev/apis/events-api (the outer event_callback and url_verification)
    and https://docs.slack.dev/reference/events/message (with its subtypes)."""
    kind = body.get("type")
    if kind == "url_verification":
        _need(body, "challenge")
        return
    if kind == "app_rate_limited":  # https://docs.slack.dev/apis/events-api#rate-limiting
        raise Notice(
            "more than 30,000 events in an hour; some message events are not being "
            "delivered (app_rate_limited)"
        )
    if kind != "event_callback":
        raise Rejected(400, "unknown body type")
    _need(body, "event_id")
    _need(body, "event", kind=dict)
    event = body["event"]
    if event.get("type") != "message":
        raise Rejected(400, "an event type the app does not subscribe to")
    _need(event, "channel", "ts")
    subtype = event.get("subtype")
    if subtype == "message_changed":
        _need(event, "message", kind=dict)
        _need(event["message"], "ts")
    elif subtype == "message_deleted":
        if not isinstance(event.get("deleted_ts"), str):
            raise Rejected(400, "message_deleted without deleted_ts")
    for name in ("text", "user", "thread_ts", "subtype"):
        if name in event and not isinstance(event[name], str | None):
            raise Rejected(400, f"{name} is not a string")
