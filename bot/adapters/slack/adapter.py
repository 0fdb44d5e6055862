"""The Slack adapter: slack-bolt's ``AsyncApp`` in, Block Kit out.

Every listener acknowledges first and then hands the real work to a background task
(``process_before_response=True`` returns the ack as soon as the listener returns), so
Slack's 3-second limit holds however slow the database or the Web API is. Tasks are
kept in a set with strong references and drained on shutdown.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics
from bot.adapters.slack import blocks
from bot.adapters.slack.retry import Sleep, all_handlers, rate_limit_only
from bot.core import render
from bot.core.dispatch import ChannelPost, Posted, PostFailed
from bot.core.events import (
    Actor,
    CommandInvoked,
    FormSubmitted,
    Incoming,
    MessageDeleted,
    MessageEdited,
    MessagePosted,
    Reply,
    RoundPost,
    Summary,
    ThreadPost,
)
from bot.health import metrics_endpoint

log = logging.getLogger(__name__)

PLATFORM = "slack"
COMMAND = "/discuss"
# Refusals that retrying cannot fix: an admin has to invite the bot or fix the schedule.
PERMANENT_ERRORS = frozenset(
    {"not_in_channel", "channel_not_found", "is_archived", "restricted_action", "missing_scope"}
)
# Message subtypes that are ordinary user messages (answers); everything else is ignored.
USER_SUBTYPES = frozenset({None, "thread_broadcast", "file_share"})
HISTORY_LIMIT = 200

Reply_ = Reply | Summary | RoundPost


class SlackAdapter:
    """One Slack workspace: the Bolt app, the Web API clients and the health endpoint."""

    name = PLATFORM

    def __init__(
        self,
        runtime: Any,
        *,
        sleep: Sleep = asyncio.sleep,
        post_attempts: int = 4,
        ping_interval: float = 10.0,
    ):
        secrets = runtime.secrets
        settings = runtime.library.current.config.slack
        if not secrets.slack_bot_token:
            raise RuntimeError("SLACK_BOT_TOKEN is not set")
        self.runtime = runtime
        self.dispatcher = runtime.dispatcher
        self.store = runtime.store
        self.clock = runtime.clock
        self.settings = settings
        self.socket_mode = bool(secrets.slack_app_token) and settings.mode != "http"
        if not self.socket_mode and not secrets.slack_signing_secret:
            raise RuntimeError(
                "Slack HTTP mode needs SLACK_SIGNING_SECRET (or set SLACK_APP_TOKEN for Socket Mode)"
            )
        self._app_token = secrets.slack_app_token
        self._sleep = sleep
        self.post_attempts = post_attempts
        self.ping_interval = ping_interval
        token = secrets.slack_bot_token
        self.client = AsyncWebClient(
            token=token, base_url=settings.api_url, retry_handlers=all_handlers(sleep)
        )
        self.post_client = AsyncWebClient(
            token=token, base_url=settings.api_url, retry_handlers=rate_limit_only(sleep)
        )
        self.app = AsyncApp(
            name="roundtable",
            client=self.client,
            signing_secret=secrets.slack_signing_secret or "",
            process_before_response=True,
            request_verification_enabled=not self.socket_mode,
        )
        metrics.time_acks(self.app, PLATFORM)  # ack latency histogram, both modes
        self.tasks: set[asyncio.Task] = set()
        self.bot_user_id: str | None = None
        self._names: dict[str, str] = {}
        self._channel_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._runner: web.AppRunner | None = None
        self._socket: Any = None
        self._started = False
        self.port: int | None = None
        self._register_listeners()

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self, *, host: str = "0.0.0.0", port: int | None = None) -> None:
        """Check the token, serve ``/healthz`` (and ``/slack/events`` in HTTP mode), connect."""
        auth = await self.client.auth_test()
        self.bot_user_id = auth.get("user_id")
        self.dispatcher.register(self)
        web_app = web.Application()
        web_app.router.add_get("/healthz", self._healthz)
        web_app.router.add_get("/metrics", metrics_endpoint)  # as on the health port
        if not self.socket_mode:
            web_app.router.add_post("/slack/events", self._slack_events)
        self._runner = web.AppRunner(web_app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, self.settings.port if port is None else port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        if self.socket_mode:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            self._socket = AsyncSocketModeHandler(
                self.app, self._app_token, web_client=self.client, ping_interval=self.ping_interval
            )
            await self._socket.connect_async()
        self._started = True
        mode = "Socket Mode" if self.socket_mode else f"HTTP mode on port {self.port}"
        log.info("Slack adapter ready (%s)", mode)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking work, let started work finish (bounded), then close everything."""
        self._started = False
        if self._socket is not None:
            await self._socket.close_async()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.drain(grace)
        for client in (self.client, self.post_client):
            if client.session is not None:
                await client.session.close()

    async def drain(self, grace: float | None = None) -> None:
        """Wait for background work started by listeners (tests call this to settle)."""
        while self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=grace)
            if pending:
                log.warning("cancelling %d Slack tasks still running at shutdown", len(pending))
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                return

    async def healthy(self) -> bool:
        if not self._started:
            return False
        if self._socket is not None:
            return await self._socket.client.is_connected()
        return True

    async def _healthz(self, _: web.Request) -> web.Response:
        ok = await self.healthy()
        return web.json_response({"ok": ok}, status=200 if ok else 503)

    async def _slack_events(self, request: web.Request) -> web.Response:
        bolt_response = await self.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    def spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run work after the ack; a strong reference keeps the task alive until done."""

        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Slack %s failed", what)

        task = asyncio.create_task(guarded(), name=f"slack-{what}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # ---- listeners: ack, then work ------------------------------------------------------

    def _register_listeners(self) -> None:
        app = self.app

        @app.command(COMMAND)
        async def on_command(ack: Callable[..., Awaitable[None]], body: dict, respond) -> None:
            await ack()
            self.spawn(self._command(body, respond), "command")

        @app.action(blocks.SHARE_ACTION)
        async def on_share(ack: Callable[..., Awaitable[None]], body: dict) -> None:
            await ack()
            self.spawn(self._open_modal(body), "share-button")

        @app.view(blocks.MODAL_CALLBACK)
        async def on_submit(ack: Callable[..., Awaitable[None]], body: dict) -> None:
            await ack()
            self.spawn(self._submitted(body), "form")

        @app.event("message")
        async def on_message(ack: Callable[..., Awaitable[None]], body: dict) -> None:
            await ack()
            self.spawn(self._message(body), "message")

    async def _command(self, body: dict, respond) -> None:
        actor = await self._actor(body["user_id"], body.get("user_name"))
        event = CommandInvoked(actor, f"{PLATFORM}:{body['channel_id']}", body.get("text") or "")
        try:
            replies = await self._handle(event)
        except Exception:
            log.exception("/discuss %s failed", event.text.split(" ", 1)[0])
            await respond(
                text="Sorry, that failed on our side; please try again.", response_type="ephemeral"
            )
            return
        for reply in replies:
            payload = blocks.reply_payload(reply)
            public = isinstance(reply, Reply) and not reply.ephemeral
            await respond(**payload, response_type="in_channel" if public else "ephemeral")

    async def _open_modal(self, body: dict) -> None:
        user = body["user"]["id"]
        channel_id = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
        round_id = int(body["actions"][0]["value"])
        round_ = await self.store.get_round(round_id)
        if round_ is None or not round_.is_open:
            await self._ephemeral(
                channel_id, user, "This round is closed, so answers are no longer collected."
            )
            return
        snapshot = round_.prompt_snapshot
        view = blocks.answer_modal(
            round_id,
            channel_id,
            snapshot["title"],
            [q["text"] for q in snapshot["questions"]],
            round_.anonymous_allowed,
        )
        await self.client.views_open(trigger_id=body["trigger_id"], view=view)

    async def _submitted(self, body: dict) -> None:
        view = body["view"]
        meta = json.loads(view.get("private_metadata") or "{}")
        channel_id, round_id = meta["channel"], int(meta["round"])
        answers, anonymous = blocks.modal_answers(view)
        user = body["user"]
        actor = await self._actor(user["id"], user.get("name") or user.get("username"))
        event = FormSubmitted(actor, f"{PLATFORM}:{channel_id}", round_id, answers, anonymous)
        await self._handle_and_tell(event, channel_id, user["id"], thread_ts=None)

    async def _message(self, body: dict) -> None:
        event = body.get("event") or {}
        incoming = await self._translate_message(event)
        if incoming is None:
            return
        event_id = body.get("event_id")
        now = self.clock.now()
        if event_id and not await self.store.first_time(f"slack:{event_id}", now):
            log.info("ignored a redelivered Slack event")
            return
        if isinstance(incoming, MessagePosted):
            key = f"slack:{event['channel']}:{incoming.message_ref}"
            if not await self.store.first_time(key, now):
                log.info("ignored a redelivered Slack message")
                return
            await self._handle_and_tell(
                incoming, event["channel"], incoming.actor.user_id, thread_ts=incoming.thread_ref
            )
        else:
            await self._handle(incoming)

    async def _translate_message(self, event: dict) -> Incoming | None:
        """Thread replies become answers; edits and deletions follow them; the rest is noise."""
        channel = f"{PLATFORM}:{event.get('channel')}"
        subtype = event.get("subtype")
        if subtype == "message_changed":
            message = event.get("message") or {}
            previous = event.get("previous_message") or {}
            if _from_bot(message) or not _is_reply(message):
                return None
            if message.get("text") == previous.get("text"):
                return None  # an unfurl or a reaction count, not an edit of the words
            return MessageEdited(channel, message["ts"], message.get("text") or "")
        if subtype == "message_deleted":
            ref = event.get("deleted_ts") or (event.get("previous_message") or {}).get("ts")
            return MessageDeleted(channel, ref) if ref else None
        if subtype not in USER_SUBTYPES or _from_bot(event) or not _is_reply(event):
            return None
        if not event.get("user") or event.get("user") == self.bot_user_id:
            return None
        actor = await self._actor(event["user"], None)
        return MessagePosted(
            actor, channel, event.get("text") or "", event["ts"], event["thread_ts"]
        )

    async def _handle(self, event: Incoming) -> list[Reply_]:
        """One channel's events are handled in the order they were acknowledged: the acks
        return at once, so without this a later ``/discuss results`` could overtake an answer."""
        async with self._channel_locks[event.channel]:
            return await self.dispatcher.handle(event)

    async def _handle_and_tell(
        self, event: Incoming, channel_id: str, user_id: str, *, thread_ts: str | None
    ) -> None:
        """Handle (answers are committed inside), then confirm to the person ephemerally."""
        try:
            replies = await self._handle(event)
        except Exception:
            log.exception("handling a Slack %s failed", type(event).__name__)
            replies = [Reply("Sorry, saving that failed on our side; please try again.")]
        for reply in replies:
            await self._ephemeral(channel_id, user_id, reply, thread_ts=thread_ts)

    async def _ephemeral(
        self, channel_id: str, user_id: str, reply: Reply_ | str, *, thread_ts: str | None = None
    ) -> None:
        payload = blocks.reply_payload(Reply(reply) if isinstance(reply, str) else reply)
        extra = {"thread_ts": thread_ts} if thread_ts else {}
        try:
            await self.client.chat_postEphemeral(
                channel=channel_id, user=user_id, **payload, **extra
            )
        except SlackApiError as exc:
            metrics.api_error(PLATFORM, _error(exc))
            log.warning("could not send an ephemeral reply in %s: %s", channel_id, _error(exc))

    async def _actor(self, user_id: str, fallback: str | None) -> Actor:
        admins = self.runtime.library.current.config.admins
        return Actor(
            PLATFORM,
            user_id,
            await self._display_name(user_id, fallback),
            is_admin=admins.allows(PLATFORM, user_id),
        )

    async def _display_name(self, user_id: str, fallback: str | None) -> str:
        """A name for digests without pinging anyone: profile name, cached per process."""
        if user_id in self._names:
            return self._names[user_id]
        name = fallback or user_id
        try:
            user = (await self.client.users_info(user=user_id)).get("user") or {}
            profile = user.get("profile") or {}
            name = (
                profile.get("display_name") or profile.get("real_name") or user.get("name") or name
            )
        except (TimeoutError, SlackApiError, aiohttp.ClientError) as exc:
            log.info("users.info failed (%s); using %s", type(exc).__name__, name)
            return name
        self._names[user_id] = name
        return name

    # ---- Platform: posting --------------------------------------------------------------

    async def post(self, message: ChannelPost) -> Posted | None:
        channel_id = _channel_id(message.channel)
        if isinstance(message, RoundPost):
            ts = await self._send(
                channel_id,
                text=_round_fallback(message),
                blocks_=blocks.round_blocks(message),
                metadata=blocks.round_metadata(message),
                thread_ts=None,
                find=lambda: self._find_round(channel_id, message.round_key),
            )
            return Posted(message_ref=ts)
        if isinstance(message, Summary):
            fallback = blocks.escape(render.summary_text(message))[:3000]
            for chunk in blocks.summary_messages(message):
                await self._send_keyed(
                    channel_id,
                    text=fallback,
                    blocks_=chunk,
                    thread_ts=message.thread_ref,
                    broadcast=message.final and message.thread_ref is not None,
                )
                fallback = "Digest (continued)"
            return None
        if isinstance(message, ThreadPost):
            await self._send_keyed(
                channel_id,
                text=blocks.escape(render.thread_post_text(message))[:3000],
                blocks_=blocks.thread_post_blocks(message),
                thread_ts=message.thread_ref,
            )
            return None
        raise TypeError(f"cannot post {message!r}")

    async def find_post(self, channel: str, round_key: str) -> Posted | None:
        ts = await self._find_round(_channel_id(channel), round_key)
        return Posted(message_ref=ts) if ts else None

    async def _send_keyed(
        self,
        channel_id: str,
        *,
        text: str,
        blocks_: list[dict],
        thread_ts: str | None,
        broadcast: bool = False,
    ) -> str:
        key = uuid.uuid4().hex
        extra = {"reply_broadcast": True} if broadcast else {}
        return await self._send(
            channel_id,
            text=text,
            blocks_=blocks_,
            metadata=blocks.post_metadata(key),
            thread_ts=thread_ts,
            find=lambda: self._find_keyed(channel_id, key, thread_ts),
            **extra,
        )

    async def _send(
        self,
        channel_id: str,
        *,
        text: str,
        blocks_: list[dict],
        metadata: dict,
        thread_ts: str | None,
        find: Callable[[], Awaitable[str | None]],
        **extra: Any,
    ) -> str:
        """``chat.postMessage`` without duplicates: before re-sending after a 5xx or a lost
        connection, look for the message's metadata key (the first try may have landed)."""
        kwargs: dict[str, Any] = {"text": text, "blocks": blocks_, "metadata": metadata, **extra}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        last: Exception | None = None
        for attempt in range(self.post_attempts):
            if attempt:
                await self._sleep(min(30.0, 0.5 * 2 ** (attempt - 1)))
                found = await find()
                if found:
                    log.info("a retried Slack post had landed already; not re-sending")
                    return found
            try:
                response = await self.post_client.chat_postMessage(channel=channel_id, **kwargs)
                return response["ts"]
            except SlackApiError as exc:
                error = _error(exc)
                metrics.api_error(PLATFORM, error)
                if error in PERMANENT_ERRORS:
                    log.error(
                        "Slack refused to post in %s (%s). An admin should invite the bot "
                        "(/invite @Roundtable) or remove the channel from the schedule; skipped.",
                        channel_id,
                        error,
                    )
                    raise PostFailed(f"Slack says {error}; invite the bot to the channel") from None
                if exc.response.status_code < 500:
                    raise
                last = exc
            except (TimeoutError, aiohttp.ClientError) as exc:
                last = exc
            log.warning("posting in %s failed (%s); will check and retry", channel_id, last)
        assert last is not None
        raise last

    async def _find_round(self, channel_id: str, round_key: str) -> str | None:
        def matches(message: dict) -> bool:
            meta = message.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            return (
                meta.get("event_type") == blocks.ROUND_EVENT
                and payload.get("round_key") == round_key
            )

        return await self._search(channel_id, None, matches)

    async def _find_keyed(self, channel_id: str, key: str, thread_ts: str | None) -> str | None:
        def matches(message: dict) -> bool:
            meta = message.get("metadata") or {}
            return (meta.get("event_payload") or {}).get("post_key") == key

        return await self._search(channel_id, thread_ts, matches)

    async def _search(
        self, channel_id: str, thread_ts: str | None, matches: Callable[[dict], bool]
    ) -> str | None:
        """The ts of the newest recent message (in the channel or a thread) that matches."""
        try:
            if thread_ts:
                response = await self.client.conversations_replies(
                    channel=channel_id, ts=thread_ts, include_all_metadata=True, limit=HISTORY_LIMIT
                )
            else:
                response = await self.client.conversations_history(
                    channel=channel_id, include_all_metadata=True, limit=HISTORY_LIMIT
                )
        except SlackApiError as exc:
            log.warning("could not read history of %s: %s", channel_id, _error(exc))
            return None
        for message in response.get("messages") or []:
            if matches(message):
                return message["ts"]
        return None


def _channel_id(channel: str) -> str:
    platform, _, channel_id = channel.partition(":")
    if platform != PLATFORM or not channel_id:
        raise PostFailed(f"{channel} is not a Slack channel")
    return channel_id


def _error(exc: SlackApiError) -> str:
    data = exc.response.data if isinstance(exc.response.data, dict) else {}
    return str(data.get("error") or f"HTTP {exc.response.status_code}")


def _from_bot(message: dict) -> bool:
    return bool(message.get("bot_id")) or message.get("subtype") == "bot_message"


def _is_reply(message: dict) -> bool:
    thread_ts = message.get("thread_ts")
    return bool(thread_ts) and thread_ts != message.get("ts")


def _round_fallback(post: RoundPost) -> str:
    return blocks.escape(
        f"{post.prompt.title}: {len(post.prompt.questions)} questions — share your thoughts"
    )
