"""A loopback fake of the Slack Web API and of Socket Mode (aiohttp, 127.0.0.1 only).

Every shape here follows Slack's documentation, not what the adapter happens to send:

- Web API envelope (https://docs.slack.dev/apis/web-api): HTTP 200 with ``{"ok": true, …}``;
  a refusal is still HTTP 200 with ``{"ok": false, "error": "<name>"}`` and, where Slack
  explains more, ``response_metadata.messages``. Error names are Slack's own, per method
  page: ``not_in_channel``, ``channel_not_found``, ``is_archived`` (chat.postMessage),
  ``user_not_in_channel`` (chat.postEphemeral), ``expired_trigger_id`` (views.open),
  ``invalid_auth`` / ``not_authed`` (auth.test), ``invalid_blocks`` (Block Kit validation).
- Rate limits (https://docs.slack.dev/apis/web-api/rate-limits): HTTP 429 with a
  ``Retry-After`` header (seconds) and ``{"ok": false, "error": "ratelimited"}``.
- ``ts`` values are ``"<10-digit epoch seconds>.<6 digits>"`` strings, unique per channel
  (https://docs.slack.dev/messaging/retrieving-messages#individual_messages).
- chat.postMessage (https://docs.slack.dev/reference/methods/chat.postMessage): answers
  ``channel``, ``ts`` and the stored ``message``; ``channel`` may be a user id, which posts a
  direct message from the app (kept in ``dms``); ``thread_ts``/``reply_broadcast``/``metadata``
  are stored as sent. Blocks are checked against Block Kit's limits
  (https://docs.slack.dev/reference/block-kit/blocks: 50 blocks a message;
  .../blocks/section-block: text 1–3,000 characters; .../blocks/header-block: 150;
  .../blocks/context-block: 10 elements; .../blocks/input-block: label 2,000).
- chat.postEphemeral (https://docs.slack.dev/reference/methods/chat.postEphemeral): answers
  ``message_ts``; a user who is not a member of the channel gets ``user_not_in_channel``
  (membership from ``members``; channels without an entry let everyone in).
- conversations.history / .replies (https://docs.slack.dev/reference/methods/conversations.history,
  .../conversations.replies): newest first / parent first, ``metadata`` only with
  ``include_all_metadata``, ``has_more`` and ``response_metadata.next_cursor``.
- views.open (https://docs.slack.dev/reference/methods/views.open): answers the view with
  ``id``/``hash``; a trigger listed in ``expired_triggers`` gets ``expired_trigger_id``.
- users.info (https://docs.slack.dev/reference/methods/users.info), auth.test
  (https://docs.slack.dev/reference/methods/auth.test), apps.connections.open
  (https://docs.slack.dev/reference/methods/apps.connections.open) and the Socket Mode
  envelopes/acks (https://docs.slack.dev/apis/events-api/using-socket-mode).
- ``response_url`` (https://docs.slack.dev/interactivity/handling-user-interaction#message_responses):
  JSON posts collected in ``responses``; a response_url may be used five times, so a
  sixth post is refused (Slack does not document the status; 404 here).

It records every call, answers failures on demand (``fail``), can hold a method until
released (``hold``: a slow Slack), and serves a Socket Mode WebSocket.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from tests.loopback import serve_loopback

BOT_USER = "UBOT"
BOT_ID = "BBOT"
TEAM = "T1"
RESPONSE_URL_USES = 5


@dataclass
class Failure:
    status: int
    error: str
    retry_after: int | None = None
    land: bool = False  # do the work, then fail anyway (the answer was lost on the way)


def encode(text: str) -> str:
    """Text as Slack sends what a person typed: ``&``, ``<``, ``>`` as HTML entities
    (https://docs.slack.dev/messaging/formatting-message-text#escaping). Message events
    and slash-command text arrive like this; modal input values do not."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def block_problems(blocks: Any, *, max_blocks: int = 50) -> list[str]:
    """Slack's Block Kit validation for what the adapter sends (``invalid_blocks``)."""
    if not isinstance(blocks, list):
        return ["[ERROR] blocks must be an array"]
    problems = []
    if len(blocks) > max_blocks:
        problems.append(f"[ERROR] no more than {max_blocks} items allowed [json-pointer:/blocks]")
    for i, block in enumerate(blocks):
        kind = block.get("type")
        text = (block.get("text") or {}).get("text")
        if kind == "section" and text is not None and not 1 <= len(text) <= 3000:
            problems.append(f"[ERROR] must be 1-3000 characters [json-pointer:/blocks/{i}/text]")
        if kind == "header" and (text is None or len(text) > 150):
            problems.append(f"[ERROR] must be less than 151 characters [json-pointer:/blocks/{i}]")
        if kind == "context":
            elements = block.get("elements") or []
            if not 1 <= len(elements) <= 10 or any(len(e.get("text", "")) > 3000 for e in elements):
                problems.append(f"[ERROR] invalid context [json-pointer:/blocks/{i}/elements]")
        if kind == "input" and len((block.get("label") or {}).get("text", "")) > 2000:
            problems.append(f"[ERROR] label too long [json-pointer:/blocks/{i}/label]")
    return problems


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.dms: dict[str, list[dict[str, Any]]] = defaultdict(list)  # user id -> messages
        self.responses: list[dict[str, Any]] = []
        self.failures: dict[str, list[Failure]] = defaultdict(list)
        self.gates: dict[str, asyncio.Event] = {}
        # optional per-method filter for gates: hold only the calls it picks; with
        # ``land`` the call takes effect first and only its response is held
        self.gate_filters: dict[str, tuple[Any, bool]] = {}
        self.refuse: dict[str, str] = {}  # channel -> error such as not_in_channel
        self.members: dict[str, set[str]] = {}  # channel -> user ids (absent: everyone)
        self.expired_triggers: set[str] = set()
        self.auth_error: str | None = None  # e.g. invalid_auth for a wrong SLACK_BOT_TOKEN
        self.names: dict[str, str] = {}
        self.socket_available = True
        self.connections = 0
        self.acks: list[dict[str, Any]] = []
        self._ws: web.WebSocketResponse | None = None
        self._changed = asyncio.Condition()
        self._ts = itertools.count(1)
        self._url_uses: dict[str, int] = defaultdict(int)
        self.response_url_uses = RESPONSE_URL_USES  # raise it for tests that reuse one URL
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ---- control ------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{name}", self._response_url)
        app.router.add_get("/socket", self._socket)
        self._runner, self.port = await serve_loopback(app)

    async def close(self) -> None:
        for gate in self.gates.values():
            gate.set()
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, name: str = "r1") -> str:
        return f"http://127.0.0.1:{self.port}/response/{name}"

    def fail(
        self,
        method: str,
        *,
        status: int = 500,
        error: str = "internal_error",
        retry_after: int | None = None,
        land: bool = False,
        times: int = 1,
    ) -> None:
        self.failures[method].extend(
            Failure(status, error, retry_after, land) for _ in range(times)
        )

    def hold(self, method: str, when=None, *, land: bool = False) -> asyncio.Event:
        """Make ``method`` wait until the returned event is set (a slow Web API).

        ``when(params)`` limits the hold to the calls it returns True for; with ``land``
        the call is carried out and only its response waits (the work was done, the
        caller never heard).
        """
        self.gates[method] = asyncio.Event()
        self.gate_filters[method] = (when, land)
        return self.gates[method]

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == method]

    def posted(self, channel: str) -> list[dict[str, Any]]:
        return self.messages[channel]

    # ---- Web API ------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update(dict(await request.post()))
        for name in ("blocks", "metadata", "view"):  # form posts carry these as JSON text
            if isinstance(params.get(name), str):
                params[name] = json.loads(params[name])
        return params

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        self.calls.append((method, params))
        async with self._changed:
            self._changed.notify_all()
        when, land = self.gate_filters.get(method, (None, False))
        held = method in self.gates and (when is None or when(params))
        if held and not land:
            await self.gates[method].wait()
        failure = self.failures[method].pop(0) if self.failures[method] else None
        if failure is not None and not failure.land:
            return self._failure(failure)
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        body = handler(params) if handler else {"ok": True}
        if held and land:
            await self.gates[method].wait()
        if failure is not None:
            return self._failure(failure)
        return web.json_response(body)

    @staticmethod
    def _failure(failure: Failure) -> web.Response:
        headers = (
            {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
        )
        body = {"ok": False, "error": failure.error}
        return web.json_response(body, status=failure.status, headers=headers)

    @staticmethod
    def _error(error: str, *messages: str) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error": error}
        if messages:
            body["response_metadata"] = {"messages": list(messages)}
        return body

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def _auth_test(self, _: dict) -> dict:
        if self.auth_error:
            return self._error(self.auth_error)
        return {
            "ok": True,
            "url": "https://roundtable-test.slack.com/",
            "team": "Roundtable Test",
            "user": "roundtable",
            "team_id": TEAM,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
        }

    def _chat_postMessage(self, p: dict) -> dict:
        channel = p.get("channel")
        if not channel:
            return self._error("channel_not_found")
        if channel in self.refuse:
            return self._error(self.refuse[channel])
        if not p.get("text") and not p.get("blocks"):
            return self._error("no_text")
        if len(p.get("text") or "") > 40_000:  # Slack truncates past 40,000 characters
            return self._error("msg_too_long")
        if "blocks" in p and (problems := block_problems(p["blocks"])):
            return self._error("invalid_blocks", *problems)
        ts = self._next_ts()
        message = {
            "type": "message",
            "subtype": "bot_message",
            "ts": ts,
            "text": p.get("text"),
            "blocks": p.get("blocks"),
            "bot_id": BOT_ID,
            "metadata": p.get("metadata"),
        }
        if p.get("thread_ts"):
            message["thread_ts"] = p["thread_ts"]
        if p.get("reply_broadcast") in (True, "true", "1", 1):
            message["reply_broadcast"] = True
        if channel.startswith(("U", "W")):  # a user id: the app's direct message with them
            self.dms[channel].append(message)
            return {"ok": True, "channel": "D" + channel[1:], "ts": ts, "message": message}
        self.messages[channel].append(message)
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _chat_postEphemeral(self, p: dict) -> dict:
        channel, user = p.get("channel"), p.get("user")
        if channel in self.refuse:
            return self._error(self.refuse[channel])
        if channel in self.members and user not in self.members[channel]:
            return self._error("user_not_in_channel")
        if "blocks" in p and (problems := block_problems(p["blocks"])):
            return self._error("invalid_blocks", *problems)
        return {"ok": True, "message_ts": f"1700000001.{next(self._ts):06d}"}

    def _conversations_history(self, p: dict) -> dict:
        channel = p["channel"]
        if channel in self.refuse:
            return self._error(self.refuse[channel])
        top = [m for m in self.messages[channel] if not m.get("thread_ts")]
        return {
            "ok": True,
            "messages": [self._visible(m, p) for m in reversed(top)],
            "has_more": False,
            "response_metadata": {"next_cursor": ""},
        }

    def _conversations_replies(self, p: dict) -> dict:
        found = [
            m
            for m in self.messages[p["channel"]]
            if m["ts"] == p["ts"] or m.get("thread_ts") == p["ts"]
        ]
        return {
            "ok": True,
            "messages": [self._visible(m, p) for m in found],
            "has_more": False,
            "response_metadata": {"next_cursor": ""},
        }

    @staticmethod
    def _visible(message: dict, p: dict) -> dict:
        shown = dict(message)
        if str(p.get("include_all_metadata")).lower() not in ("1", "true"):
            shown.pop("metadata", None)
        return shown

    def _views_open(self, p: dict) -> dict:
        trigger = p.get("trigger_id")
        if not trigger:
            return self._error("invalid_arguments", "invalid `trigger_id`")
        if trigger in self.expired_triggers:
            return self._error("expired_trigger_id")
        view = p.get("view") or {}
        if problems := block_problems(view.get("blocks") or [], max_blocks=100):
            return self._error("invalid_arguments", *problems)
        return {
            "ok": True,
            "view": {"id": "V1", "team_id": TEAM, "hash": "156772938.1827394", **view},
        }

    def _users_info(self, p: dict) -> dict:
        user = p["user"]
        name = self.names.get(user, user.lower())
        return {
            "ok": True,
            "user": {
                "id": user,
                "team_id": TEAM,
                "name": user.lower(),
                "profile": {"display_name": name, "real_name": name},
            },
        }

    def _apps_connections_open(self, _: dict) -> dict:
        if not self.socket_available:
            return self._error("service_unavailable")
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket"}

    async def _response_url(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self._url_uses[name] += 1
        if self._url_uses[name] > self.response_url_uses:
            return web.Response(status=404, text="used_url")
        self.responses.append(await request.json())
        async with self._changed:
            self._changed.notify_all()
        return web.Response(text="ok")

    # ---- Socket Mode --------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        self.connections += 1
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {}})
        async with self._changed:
            self._changed.notify_all()
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                self.acks.append(json.loads(message.data))
                async with self._changed:
                    self._changed.notify_all()
        return ws

    async def send_envelope(self, envelope: dict[str, Any]) -> None:
        assert self._ws is not None and not self._ws.closed, "no Socket Mode connection"
        await self._ws.send_json(envelope)

    async def drop(self) -> None:
        """Close the current socket from the server side, as Slack does on a refresh."""
        assert self._ws is not None
        await self._ws.close()

    async def wait_for(self, condition) -> None:
        """Wait until ``condition()`` holds (woken on every call, response and ack)."""
        async with asyncio.timeout(10), self._changed:
            await self._changed.wait_for(condition)
