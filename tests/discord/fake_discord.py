"""A loopback fake of Discord: REST API and gateway WebSocket on 127.0.0.1 (aiohttp).

The real discord.py client logs in, identifies, resumes, syncs commands and posts
against it. Tests drive it like Discord would: dispatch interactions and messages over
the gateway, then look at what the bot sent back over REST.

Payload shapes follow Discord's developer documentation (docs.discord.com/developers):
- Gateway → Gateway Intents / Message Content Intent: MESSAGE_CREATE/UPDATE/DELETE need
  GUILD_MESSAGES (1 << 9); without MESSAGE_CONTENT (1 << 15) ``content``, ``embeds``,
  ``attachments`` and ``components`` arrive empty, except for the bot's own messages and
  messages that mention it. THREAD_CREATE and GUILD_CREATE need GUILDS (1 << 0).
- Topics → Opcodes and Status Codes → JSON Error Codes: errors are
  ``{"message": …, "code": …}``; 50001 Missing Access, 50013 Missing Permissions,
  10003 Unknown Channel, 160004 thread already created, 50035 Invalid Form Body.
- Topics → Rate Limits → Exceeding a Rate Limit: 429 with body ``message``,
  ``retry_after`` (seconds, float), ``global``, and the headers ``Retry-After``,
  ``X-RateLimit-Limit/Remaining/Reset/Reset-After/Bucket/Scope`` (discord.py also
  requires ``Via`` to tell Discord's 429 from a Cloudflare ban).
- Interactions → Receiving and Responding → Interaction Object: INTERACTION_CREATE
  types 2 (application command, ``data.options`` with a SUB_COMMAND), 3 (message
  component, ``data.custom_id``/``component_type`` and ``message``), 4 (autocomplete:
  the option being typed has ``focused: true``; answered by callback type 8 with
  ``data.choices``) and 5 (modal submit: ``data.components``); ``context`` 0 = GUILD.
- Components → Reference → Label (type 18: ``label`` ≤ 45, ``description`` ≤ 100, one
  ``component``), Text Display (type 10, ``content`` ≤ 4000), Text Input (type 4),
  Checkbox (type 23); a modal has at most 5 top-level components and a title ≤ 45. On
  submit, a Label comes back as ``{type: 18, id, component: {type, id, custom_id,
  value}}``, a Text Display as ``{type: 10, id}``, a Checkbox's ``value`` is a boolean.
- Resources → Message → Embed Limits (title 256, description 4096, 25 fields, field name
  256 / value 1024, footer 2048, 6000 characters across a message's embeds, 10 embeds)
  and Create Message (content ≤ 2000); Discord answers 400 50035 beyond them.
- Interactions → Application Commands → Bulk Overwrite Global / Guild Application
  Commands (PUT replaces the whole scope) and Get … Commands (GET lists it); a command
  object carries ``id``, ``application_id``, ``version``, ``guild_id`` (guild scope),
  ``default_member_permissions``, ``contexts`` and ``integration_types``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.loopback import serve_loopback

GUILDS = 1 << 0
GUILD_MESSAGES = 1 << 9
MESSAGE_CONTENT = 1 << 15
NEEDS_INTENT = {
    "MESSAGE_CREATE": GUILD_MESSAGES,
    "MESSAGE_UPDATE": GUILD_MESSAGES,
    "MESSAGE_DELETE": GUILD_MESSAGES,
    "THREAD_CREATE": GUILDS,
}


def json_response(data: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    """Exactly ``application/json``: discord.py compares the content type literally."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


SAFETY_TIMEOUT = 10  # seconds; only stops a broken test from hanging
TS = "2026-11-02T09:00:00.000000+00:00"


@dataclass
class FakeUser:
    id: int
    name: str
    roles: tuple[int, ...] = ()
    bot: bool = False

    def payload(self) -> dict:
        return {
            "id": str(self.id),
            "username": self.name,
            "global_name": self.name,
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
        }

    def member(self) -> dict:
        return {
            "user": self.payload(),
            "roles": [str(r) for r in self.roles],
            "joined_at": TS,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "permissions": "0",
        }


@dataclass
class Sent:
    """One request the bot made that tests care about."""

    method: str
    path: str
    body: Any
    query: dict[str, str] = field(default_factory=dict)


class FakeDiscord:
    GUILD = 500
    APP = 1000

    def __init__(self) -> None:
        self.bot = FakeUser(self.APP, "Roundtable", bot=True)
        self._ids = itertools.count(1_100_000_000_000_000_000)
        self.channels: dict[int, dict] = {}
        self.threads: dict[int, dict] = {}
        self.messages: dict[int, dict] = {}  # id → payload
        self.forbidden: set[int] = set()  # the bot cannot see these: 403 50001
        self.no_send: set[int] = set()  # may see, may not post: 403 50013
        self.no_threads: set[int] = set()  # Create Public Threads denied: 403 50013
        # scope ("global" or a guild id) → the registered commands
        self.commands: dict[str | int, list[dict]] = {}
        self.rate_limit_next: dict[str, float] = {}  # path regex → retry_after, once
        # path regex → (5xx status, handled first?), once; "handled first" is a request
        # Discord carried out although its answer was lost (e.g. a 502 from its edge)
        self.server_error_next: dict[str, tuple[int, bool]] = {}
        self.grant_message_content = True
        self.requests: list[Sent] = []
        self.identifies: list[dict] = []
        self.resumes: list[dict] = []
        self.closed_4014 = 0
        self.sessions = 0  # successful IDENTIFYs
        self._ws: web.WebSocketResponse | None = None
        self._session_intents = 0
        self._seq = 0
        self._pending: list[tuple[str, dict]] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ---- lifecycle --------------------------------------------------------------------

    async def start(self) -> FakeDiscord:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        self._runner, self.port = await serve_loopback(app)
        return self

    async def stop(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    def next_id(self) -> int:
        return next(self._ids)

    def add_channel(self, name: str) -> int:
        cid = self.next_id()
        self.channels[cid] = {
            "id": str(cid),
            "type": 0,
            "guild_id": str(self.GUILD),
            "name": name,
            "position": len(self.channels),
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "rate_limit_per_user": 0,
            "last_message_id": None,
        }
        return cid

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, check: Callable[[], Any]) -> Any:
        """Wait until ``check()`` is truthy (a safety timeout only; nothing is timed)."""

        async def waiter() -> Any:
            async with self._changed:
                while not (result := check()):
                    await self._changed.wait()
                return result

        return await asyncio.wait_for(waiter(), SAFETY_TIMEOUT)

    # ---- gateway ----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 45000}}))
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            op = data["op"]
            if op == 1:
                await ws.send_str(json.dumps({"op": 11}))
            elif op == 2:
                await self._identify(ws, data["d"])
            elif op == 6:
                self.resumes.append(data["d"])
                self._ws = ws
                await self._send(ws, "RESUMED", {})
                await self._flush()
            await self._notify()
        if self._ws is ws:
            self._ws = None
        await self._notify()
        return ws

    async def _identify(self, ws: web.WebSocketResponse, d: dict) -> None:
        """Gateway → Identify (op 2) → Ready, then Guild Create (Gateway Events)."""
        self.identifies.append(d)
        if d["intents"] & MESSAGE_CONTENT and not self.grant_message_content:
            self.closed_4014 += 1
            await ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        self._session_intents = d["intents"]
        self.sessions += 1
        self._ws, self._seq = ws, 0
        await self._send(
            ws,
            "READY",
            {
                "v": 10,
                "user": self.bot.payload(),
                "guilds": [{"id": str(self.GUILD), "unavailable": True}],
                "session_id": f"session-{len(self.identifies)}",
                "resume_gateway_url": self.gateway_url,
                "application": {"id": str(self.APP), "flags": 0},
            },
        )
        await self._send(ws, "GUILD_CREATE", self.guild_payload())
        self._pending.clear()  # a fresh session does not replay an old one's events

    def guild_payload(self) -> dict:
        """Gateway Events → Guild Create: a guild object plus channels, threads, members."""
        return {
            "id": str(self.GUILD),
            "name": "Test server",
            "owner_id": "1",
            "member_count": 3,
            "channels": list(self.channels.values()),
            "threads": list(self.threads.values()),
            "roles": [],  # none cached: admin roles must work from each interaction's own list
            "emojis": [],
            "stickers": [],
            "members": [],
            "voice_states": [],
            "presences": [],
            "features": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "large": False,
            "unavailable": False,
        }

    async def _send(self, ws: web.WebSocketResponse, t: str, d: dict) -> None:
        if not self._session_intents & NEEDS_INTENT.get(t, 0) and t in NEEDS_INTENT:
            return  # Discord sends no event the session has no intent for
        self._seq += 1
        await ws.send_str(json.dumps({"op": 0, "t": t, "s": self._seq, "d": d}))

    async def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for t, d in pending:
            await self._send(self._ws, t, d)  # type: ignore[arg-type]

    async def dispatch(self, t: str, d: dict) -> None:
        """Send an event now, or after the client resumes when it is disconnected."""
        if self.connected:
            await self._send(self._ws, t, d)  # type: ignore[arg-type]
        else:
            self._pending.append((t, d))

    async def force_close(self, code: int = 4000) -> None:
        """Drop the gateway connection like Discord does; the client should RESUME."""
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close(code=code)

    # ---- driving the bot as users -------------------------------------------------------

    def _interaction(self, kind: int, user: FakeUser, channel_id: int, data: dict) -> dict:
        """Receiving and Responding → Interaction Object (a guild interaction)."""
        iid = self.next_id()
        channel = self.channels.get(channel_id) or self.threads[channel_id]
        return {
            "id": str(iid),
            "application_id": str(self.APP),
            "type": kind,
            "data": data,
            "guild_id": str(self.GUILD),
            "channel_id": str(channel_id),
            "channel": channel,
            "member": user.member(),
            "token": f"itoken-{iid}",
            "version": 1,
            "app_permissions": "0",
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(self.GUILD)},
            "context": 0,
            "attachment_size_limit": 26214400,
        }

    async def slash(self, user: FakeUser, channel_id: int, sub: str, **options: Any) -> str:
        """``/discuss <sub> option=value…`` (type 2; Application Command Interaction Data
        Option Structure: a SUB_COMMAND with typed options); returns the token."""
        opts = [
            {"name": k, "type": {bool: 5, int: 4}.get(type(v), 3), "value": v}
            for k, v in options.items()
        ]
        data = {
            "id": "2000",
            "name": "discuss",
            "type": 1,
            "guild_id": str(self.GUILD),
            "options": [{"name": sub, "type": 1, "options": opts}],
        }
        payload = self._interaction(2, user, channel_id, data)
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload["token"]

    async def click(self, user: FakeUser, message_id: int, custom_id: str) -> str:
        message = self.messages[message_id]
        data = {"custom_id": custom_id, "component_type": 2}
        payload = self._interaction(3, user, int(message["channel_id"]), data)
        payload["message"] = message
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload["token"]

    async def submit_modal(
        self, user: FakeUser, channel_id: int, modal: dict, values: dict[str, Any]
    ) -> str:
        """Submit a modal the bot opened, as Discord reports it (``values`` by custom_id;
        a checkbox's value is a bool)."""

        def answered(c: dict) -> dict:
            out = {"type": c["type"], "id": c.get("id", 0)}
            if "custom_id" in c:
                default = False if c["type"] == 23 else ""
                out.update(custom_id=c["custom_id"], value=values.get(c["custom_id"], default))
            return out

        submitted = []
        for top in modal["components"]:
            if top["type"] == 1:  # an Action Row (the older layout)
                rows = [answered(c) for c in top["components"]]
                submitted.append({"type": 1, "id": top.get("id", 0), "components": rows})
            elif top["type"] == 18:  # a Label
                submitted.append(
                    {"type": 18, "id": top.get("id", 0), "component": answered(top["component"])}
                )
            else:  # a Text Display
                submitted.append({"type": top["type"], "id": top.get("id", 0)})
        data = {"custom_id": modal["custom_id"], "components": submitted}
        payload = self._interaction(5, user, channel_id, data)
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload["token"]

    async def autocomplete(
        self, user: FakeUser, channel_id: int, sub: str, option: str, typed: str
    ) -> str:
        """Someone typing in an autocompleted option (interaction type 4)."""
        data = {
            "id": "2000",
            "name": "discuss",
            "type": 1,
            "guild_id": str(self.GUILD),
            "options": [
                {
                    "name": sub,
                    "type": 1,
                    "options": [{"name": option, "type": 3, "value": typed, "focused": True}],
                }
            ],
        }
        payload = self._interaction(4, user, channel_id, data)
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload["token"]

    def _message(self, channel_id: int, author: FakeUser, content: str, **extra: Any) -> dict:
        """Message resource → Message Object (the fields discord.py reads)."""
        mid = self.next_id()
        msg = {
            "id": str(mid),
            "channel_id": str(channel_id),
            "author": author.payload(),
            "content": content,
            "timestamp": TS,
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
        }
        msg.update(extra)
        self.messages[mid] = msg
        return msg

    def _as_delivered(self, msg: dict) -> dict:
        """Without the Message Content intent Discord blanks other people's messages,
        unless they mention the bot."""
        out = dict(msg, guild_id=str(self.GUILD))
        own = msg["author"]["id"] == str(self.APP)
        mentioned = f"<@{self.APP}>" in msg["content"]
        if not self._session_intents & MESSAGE_CONTENT and not own and not mentioned:
            out.update(content="", embeds=[], attachments=[], components=[])
        return out

    async def user_message(self, user: FakeUser, channel_id: int, content: str) -> int:
        msg = self._message(channel_id, user, content)
        await self.dispatch("MESSAGE_CREATE", dict(self._as_delivered(msg), member=user.member()))
        return int(msg["id"])

    async def edit_message(self, message_id: int, content: str) -> None:
        msg = self.messages[message_id]
        msg.update(content=content, edited_timestamp=TS)
        await self.dispatch("MESSAGE_UPDATE", self._as_delivered(msg))

    async def delete_message(self, message_id: int) -> None:
        msg = self.messages.pop(message_id)
        await self.dispatch(
            "MESSAGE_DELETE",
            {"id": str(message_id), "channel_id": msg["channel_id"], "guild_id": str(self.GUILD)},
        )

    # ---- what the bot sent ----------------------------------------------------------------

    def sent(self, method: str, pattern: str) -> list[Sent]:
        return [r for r in self.requests if r.method == method and re.fullmatch(pattern, r.path)]

    def replies_to(self, token: str) -> list[dict]:
        """Callback bodies and follow-ups for one interaction, in order."""
        out = []
        for r in self.requests:
            if r.method != "POST":
                continue
            if re.fullmatch(rf"/interactions/\d+/{token}/callback", r.path) or re.fullmatch(
                rf"/webhooks/{self.APP}/{token}", r.path
            ):
                out.append(r.body)
        return out

    def followup_texts(self, token: str) -> list[str]:
        return [
            r.body.get("content") or ""
            for r in self.requests
            if r.method == "POST" and r.path == f"/webhooks/{self.APP}/{token}"
        ]

    def channel_messages(self, channel_id: int) -> list[dict]:
        return [m for m in self.messages.values() if m["channel_id"] == str(channel_id)]

    def command_syncs(self) -> list[Sent]:
        return [r for r in self.requests if r.method == "PUT" and "/commands" in r.path]

    # ---- REST -------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        body: Any = None
        if request.can_read_body:
            if request.content_type == "multipart/form-data":
                form = await request.post()
                body = json.loads(form["payload_json"])  # type: ignore[arg-type]
            else:
                body = await request.json()
        self.requests.append(Sent(request.method, path, body, dict(request.query)))
        try:
            for pattern, retry_after in list(self.rate_limit_next.items()):
                if re.fullmatch(pattern, path):
                    del self.rate_limit_next[pattern]
                    return json_response(
                        {
                            "message": "You are being rate limited.",
                            "retry_after": retry_after,
                            "global": False,
                        },
                        status=429,
                        headers={
                            "Via": "1.1 google",
                            "Retry-After": str(max(1, round(retry_after))),
                            "X-RateLimit-Limit": "5",
                            "X-RateLimit-Remaining": "0",
                            "X-RateLimit-Reset": "1796205600.000",
                            "X-RateLimit-Reset-After": str(retry_after),
                            "X-RateLimit-Bucket": "fake-bucket-" + path.split("/")[1],
                            "X-RateLimit-Scope": "user",
                        },
                    )
            for pattern, (status, handled) in list(self.server_error_next.items()):
                if re.fullmatch(pattern, path):
                    del self.server_error_next[pattern]
                    if handled:
                        await self._route(request.method, path, body)
                    return web.Response(  # an edge proxy's page, not Discord's JSON
                        text=f"<html><body>{status} Server Error</body></html>",
                        status=status,
                        content_type="text/html",
                    )
            return await self._route(request.method, path, body)
        finally:
            await self._notify()

    async def _route(self, method: str, path: str, body: Any) -> web.StreamResponse:
        if path == "/users/@me":
            return json_response(self.bot.payload())
        if path == "/oauth2/applications/@me":
            return json_response(
                {
                    "id": str(self.APP),
                    "name": "Roundtable",
                    "description": "",
                    "icon": None,
                    "bot_public": True,
                    "bot_require_code_grant": False,
                    "owner": {**FakeUser(1, "owner").payload()},
                    "verify_key": "0" * 64,
                    "flags": 0,
                    "interactions_endpoint_url": None,
                }
            )
        if m := re.fullmatch(r"/applications/\d+(?:/guilds/(\d+))?/commands", path):
            scope: str | int = int(m[1]) if m[1] else "global"
            if method == "PUT":
                self.commands[scope] = [self._command(c, scope) for c in body]
            return json_response(self.commands.get(scope, []))
        if m := re.fullmatch(r"/interactions/(\d+)/([^/]+)/callback", path):
            if body["type"] == 9 and (problem := modal_problem(body["data"])):
                return self._error(400, 50035, f"Invalid Form Body: {problem}")
            return json_response(
                {"interaction": {"id": m[1], "type": 2}, "resource": {"type": body["type"]}}
            )
        if m := re.fullmatch(r"/webhooks/\d+/([^/]+)", path):
            if problem := message_problem(body):
                return self._error(400, 50035, f"Invalid Form Body: {problem}")
            msg = self._message(
                0, self.bot, body.get("content") or "", embeds=body.get("embeds") or []
            )
            return json_response(msg)
        if m := re.fullmatch(r"/channels/(\d+)", path):
            cid = int(m[1])
            if cid in self.forbidden:
                return self._error(403, 50001, "Missing Access")
            channel = self.channels.get(cid) or self.threads.get(cid)
            return json_response(channel) if channel else self._error(404, 10003, "Unknown Channel")
        if m := re.fullmatch(r"/channels/(\d+)/messages", path):
            cid = int(m[1])
            if cid not in self.channels and cid not in self.threads:
                return self._error(404, 10003, "Unknown Channel")
            if cid in self.forbidden:
                return self._error(403, 50001, "Missing Access")
            if cid in self.no_send and method == "POST":
                return self._error(403, 50013, "Missing Permissions")
            if method == "GET":
                found = sorted(self.channel_messages(cid), key=lambda x: -int(x["id"]))
                return json_response(found[:50])
            if problem := message_problem(body):
                return self._error(400, 50035, f"Invalid Form Body: {problem}")
            nonce = body.get("nonce")
            if nonce and body.get("enforce_nonce"):
                for old in self.channel_messages(cid):
                    if old.get("nonce") == nonce:
                        return json_response(old)  # Discord's nonce dedup
            msg = self._message(
                cid,
                self.bot,
                body.get("content") or "",
                embeds=body.get("embeds") or [],
                components=body.get("components") or [],
                nonce=nonce,
                allowed_mentions=body.get("allowed_mentions"),
                **self._reply_fields(cid, body.get("message_reference")),
            )
            await self.dispatch("MESSAGE_CREATE", self._as_delivered(msg))
            return json_response(msg)
        if m := re.fullmatch(r"/channels/(\d+)/messages/(\d+)/threads", path):
            cid, mid = int(m[1]), int(m[2])
            if cid in self.no_threads or cid in self.forbidden:
                return self._error(403, 50013, "Missing Permissions")
            if mid in self.threads:
                return self._error(
                    400, 160004, "A thread has already been created for this message"
                )
            thread = {
                "id": str(mid),
                "type": 11,
                "guild_id": str(self.GUILD),
                "parent_id": str(cid),
                "owner_id": str(self.APP),
                "name": body["name"],
                "message_count": 0,
                "member_count": 1,
                "rate_limit_per_user": 0,
                "flags": 0,
                "last_message_id": None,
                "thread_metadata": {
                    "archived": False,
                    "auto_archive_duration": body.get("auto_archive_duration", 1440),
                    "archive_timestamp": TS,
                    "locked": False,
                },
            }
            self.threads[mid] = thread
            self.messages[mid]["flags"] = 32  # HAS_THREAD
            self.messages[mid]["thread"] = thread
            await self.dispatch("THREAD_CREATE", dict(thread, newly_created=True))
            return json_response(thread, status=201)
        return self._error(404, 0, f"fake has no route for {method} {path}")

    def _reply_fields(self, cid: int, ref: dict | None) -> dict:
        """A reply (Message Object → Message Reference): type 19 with the reference."""
        if not ref:
            return {}
        reference = {
            "type": 0,
            "message_id": str(ref["message_id"]),
            "channel_id": str(cid),
            "guild_id": str(self.GUILD),
        }
        return {"type": 19, "message_reference": reference}

    def _command(self, sent: dict, scope: str | int) -> dict:
        """A command as Discord stores and reports it (Application Command Object)."""
        out = {
            "id": str(self.next_id()),
            "application_id": str(self.APP),
            "version": str(self.next_id()),
            "type": sent.get("type", 1),
            "name": sent["name"],
            "description": sent.get("description", ""),
            "options": sent.get("options", []),
            "default_member_permissions": (
                None
                if sent.get("default_member_permissions") is None
                else str(sent["default_member_permissions"])
            ),
            "nsfw": sent.get("nsfw", False),
        }
        if scope == "global":
            out["contexts"] = sent.get("contexts")
            out["integration_types"] = sent.get("integration_types", [0])
        else:
            out["guild_id"] = str(scope)
        return out

    @staticmethod
    def _error(status: int, code: int, message: str) -> web.Response:
        return json_response({"message": message, "code": code}, status=status)


def message_problem(body: dict) -> str | None:
    """What Discord would reject in a message body (Embed Limits, content ≤ 2000)."""
    if len(body.get("content") or "") > 2000:
        return "content: must be 2000 or fewer in length"
    embeds = body.get("embeds") or []
    if len(embeds) > 10:
        return "embeds: must be 10 or fewer in length"
    total = 0
    for i, e in enumerate(embeds):
        fields = e.get("fields") or []
        sizes = {
            "title": (len(e.get("title") or ""), 256),
            "description": (len(e.get("description") or ""), 4096),
            "footer.text": (len((e.get("footer") or {}).get("text") or ""), 2048),
            "fields": (len(fields), 25),
        }
        for f in fields:
            if len(f["name"]) > 256 or len(f["value"]) > 1024 or not f["value"]:
                return f"embeds.{i}.fields: name ≤ 256, value 1–1024 characters"
        for key, (size, limit) in sizes.items():
            if size > limit:
                return f"embeds.{i}.{key}: must be {limit} or fewer in length"
        total += sum(sizes[k][0] for k in ("title", "description", "footer.text"))
        total += sum(len(f["name"]) + len(f["value"]) for f in fields)
    if total > 6000:
        return "embeds: embed size exceeds maximum size of 6000"
    return None


def modal_problem(data: dict) -> str | None:
    """What Discord would reject in a modal (Components reference)."""
    if len(data.get("title", "")) > 45:
        return "data.title: must be 45 or fewer in length"
    top = data.get("components") or []
    if not 1 <= len(top) <= 5:
        return "data.components: must be between 1 and 5 in length"
    for i, c in enumerate(top):
        if c["type"] == 18:
            if len(c["label"]) > 45 or len(c.get("description") or "") > 100:
                return f"data.components.{i}: label ≤ 45, description ≤ 100 characters"
        elif c["type"] == 10:
            if len(c["content"]) > 4000:
                return f"data.components.{i}.content: must be 4000 or fewer in length"
        elif c["type"] != 1:
            return f"data.components.{i}.type: not allowed at the top of a modal"
    return None
