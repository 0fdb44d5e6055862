"""A loopback fake of the Slack Web API and of Socket Mode (aiohttp, 127.0.0.1 only).

It records every call, keeps posted messages (with metadata, so history searches work),
answers 429/5xx on demand, can hold a method until released (a slow Slack), collects
``response_url`` posts, and serves a Socket Mode WebSocket that delivers envelopes.
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


@dataclass
class Failure:
    status: int
    error: str
    retry_after: int | None = None
    land: bool = False  # do the work, then fail anyway (the answer was lost on the way)


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.responses: list[dict[str, Any]] = []
        self.failures: dict[str, list[Failure]] = defaultdict(list)
        self.gates: dict[str, asyncio.Event] = {}
        # optional per-method filter for gates: hold only the calls it picks; with
        # ``land`` the call takes effect first and only its response is held
        self.gate_filters: dict[str, tuple[Any, bool]] = {}
        self.refuse: dict[str, str] = {}  # channel -> error such as not_in_channel
        self.names: dict[str, str] = {}
        self.socket_available = True
        self.connections = 0
        self.acks: list[dict[str, Any]] = []
        self._ws: web.WebSocketResponse | None = None
        self._changed = asyncio.Condition()
        self._ts = itertools.count(1)
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

    def _auth_test(self, _: dict) -> dict:
        return {"ok": True, "user_id": BOT_USER, "bot_id": BOT_ID, "team_id": "T1", "user": "rt"}

    def _chat_postMessage(self, p: dict) -> dict:
        channel = p["channel"]
        if channel in self.refuse:
            return {"ok": False, "error": self.refuse[channel]}
        ts = f"1700000000.{next(self._ts):06d}"
        message = {
            "ts": ts,
            "text": p.get("text"),
            "blocks": p.get("blocks"),
            "bot_id": BOT_ID,
            "metadata": p.get("metadata"),
        }
        if p.get("thread_ts"):
            message["thread_ts"] = p["thread_ts"]
        if p.get("reply_broadcast"):
            message["reply_broadcast"] = True
        self.messages[channel].append(message)
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _chat_postEphemeral(self, p: dict) -> dict:
        return {"ok": True, "message_ts": f"1700000001.{next(self._ts):06d}"}

    def _conversations_history(self, p: dict) -> dict:
        channel = p["channel"]
        if channel in self.refuse:
            return {"ok": False, "error": self.refuse[channel]}
        top = [m for m in self.messages[channel] if not m.get("thread_ts")]
        return {"ok": True, "messages": [self._visible(m, p) for m in reversed(top)]}

    def _conversations_replies(self, p: dict) -> dict:
        found = [
            m
            for m in self.messages[p["channel"]]
            if m["ts"] == p["ts"] or m.get("thread_ts") == p["ts"]
        ]
        return {"ok": True, "messages": [self._visible(m, p) for m in found]}

    @staticmethod
    def _visible(message: dict, p: dict) -> dict:
        shown = dict(message)
        if str(p.get("include_all_metadata")).lower() not in ("1", "true"):
            shown.pop("metadata", None)
        return shown

    def _views_open(self, p: dict) -> dict:
        return {"ok": True, "view": {"id": "V1", **p.get("view", {})}}

    def _users_info(self, p: dict) -> dict:
        user = p["user"]
        name = self.names.get(user, user.lower())
        return {
            "ok": True,
            "user": {"id": user, "name": user.lower(), "profile": {"display_name": name}},
        }

    def _apps_connections_open(self, _: dict) -> dict:
        if not self.socket_available:
            return {"ok": False, "error": "service_unavailable"}
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket"}

    async def _response_url(self, request: web.Request) -> web.Response:
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
