"""The Slack adapter: slack-bolt's ``AsyncApp`` in, Block Kit out.

Every listener first stores what arrived in the core's inbox (one INSERT, committed),
then acknowledges (``process_before_response=True`` returns the ack when the listener
returns), then hands the real work to a background task, so an acknowledged answer is
never lost and Slack's 3-second limit holds however slow the Web API is. In HTTP mode a
slash command's form is stored and acknowledged by ``_ack`` itself, without Bolt's
dispatch (the same ``_slash_command`` that Bolt's listener calls in Socket Mode).
Processing waits while other requests are being acknowledged, and display names are
learned after everything else (``Precedence``). If the INSERT fails the person is told
it was not saved (and events get a 500, so Slack redelivers). Tasks are kept in a set
with strong references and drained on shutdown. All Web API and ``response_url`` calls
share one HTTP session.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.middleware.authorization.async_single_team_authorization import (
    AsyncSingleTeamAuthorization,
)
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics
from bot.adapters import StartupError
from bot.adapters.precedence import Precedence
from bot.adapters.slack import blocks, requests
from bot.adapters.slack.names import DisplayNames
from bot.adapters.slack.posting import PLATFORM, ChannelPoster, error_code
from bot.adapters.slack.retry import Sleep, all_handlers, rate_limit_only
from bot.core.dispatch import ChannelPost, NotSaved, Posted, Ticket
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
)
from bot.core.inbox import DELAYED, NOT_SAVED
from bot.core.ports import Ports
from bot.health import metrics_endpoint

log = logging.getLogger(__name__)

COMMAND = "/discuss"
# Message subtypes that are ordinary user messages (answers); everything else is ignored.
USER_SUBTYPES = frozenset({None, "thread_broadcast", "file_share"})
RESPOND_TIMEOUT = aiohttp.ClientTimeout(total=10)
# Stored events processed at once, in one transaction and one commit (the inbox batches
# what is ready together). A commit waits for the disk (a few milliseconds), so the batch
# is what throughput rests on; an ack arriving meanwhile waits for the batch's statements
# (about 0.35 ms per event). With 8, 500 people answering at once got about two thirds
# of the throughput they get with 32 (docs/performance.md, "Processing 32 at a time").
PROCESSING_SLOTS = 32
# auth.test errors that mean the token itself is wrong (https://docs.slack.dev/reference/methods/auth.test)
TOKEN_ERRORS = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked"})
# chat.postEphemeral refusals after which the person is told by direct message instead
# (https://docs.slack.dev/reference/methods/chat.postEphemeral: user_not_in_channel, …)
NOT_THERE = frozenset({"user_not_in_channel", "not_in_channel", "channel_not_found", "is_archived"})

Reply_ = Reply | Summary | RoundPost


class _QuietTokenNotice(logging.Filter):
    """Bolt also reads SLACK_BOT_TOKEN from the environment and then warns, at every
    start, that the client we pass wins; that is intended here, so the line is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


logging.getLogger("slack_bolt.AsyncApp").addFilter(_QuietTokenNotice())


class SlackAdapter:
    """One Slack workspace: the Bolt app, the Web API clients and the health endpoint."""

    name = PLATFORM

    def __init__(
        self,
        ports: Ports,
        *,
        sleep: Sleep = asyncio.sleep,
        post_attempts: int = 4,
        ping_interval: float = 10.0,
        submit_wait: float = 2.0,
    ):
        secrets = ports.secrets
        settings = ports.library.current.config.slack
        if not secrets.slack_bot_token:
            raise StartupError("SLACK_BOT_TOKEN is not set")
        self.ports: Ports = ports
        self.clock = ports.clock
        self.settings = settings
        self.socket_mode = bool(secrets.slack_app_token) and settings.mode != "http"
        if not self.socket_mode and not secrets.slack_signing_secret:
            raise StartupError(
                "Slack HTTP mode needs SLACK_SIGNING_SECRET (or set SLACK_APP_TOKEN for Socket Mode)"
            )
        self._app_token = secrets.slack_app_token
        self.ping_interval = ping_interval
        # how long a form submission may take before the modal is closed anyway (Slack
        # waits 3 s for the ack); within it, a refusal keeps the modal open with the reason
        self.submit_wait = submit_wait
        self._signing_secret = secrets.slack_signing_secret
        token = secrets.slack_bot_token
        # one HTTP session for every Web API and response_url call (slack_sdk opens a
        # new session per call when it is given none)
        self.http = aiohttp.ClientSession()
        self.client = AsyncWebClient(
            token=token,
            base_url=settings.api_url,
            session=self.http,
            retry_handlers=all_handlers(sleep),
        )
        self.post_client = AsyncWebClient(
            token=token,
            base_url=settings.api_url,
            session=self.http,
            retry_handlers=rate_limit_only(sleep),
        )
        self.app = AsyncApp(
            name="roundtable",
            client=self.client,
            signing_secret=secrets.slack_signing_secret or "",
            process_before_response=True,
            # HTTP requests are verified in _slack_events over the raw bytes before Bolt
            # sees them (a clear refusal per fault); Socket Mode needs no signature
            request_verification_enabled=False,
        )
        self.poster = ChannelPoster(
            self.client, self.post_client, attempts=post_attempts, sleep=sleep
        )
        metrics.time_acks(self.app, PLATFORM)  # ack latency histogram, both modes
        self.tasks: set[asyncio.Task] = set()
        # processing of stored events, started once the acks pause (``_start_queued``)
        self._queued: collections.deque[tuple[Coroutine[Any, Any, None], str]] = collections.deque()
        self._starter: asyncio.Handle | asyncio.Task | None = None
        # acks go before processing (Slack wants its ack within 3 s), and the work that
        # follows an ack goes before learning display names (docs/performance.md)
        self.acks = Precedence(quiet=0.002, patience=1.0, slots=PROCESSING_SLOTS)
        self.answers = Precedence(quiet=0.02, patience=10.0, slots=1)
        self.bot_user_id: str | None = None
        self.names = DisplayNames(
            self.client, ports.rename, wait_for=(self.answers, self.acks), track=self._track
        )
        self._runner: web.AppRunner | None = None
        self._socket: Any = None
        self._started = False
        self.port: int | None = None
        self._register_listeners()

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self, *, host: str | None = None, port: int | None = None) -> None:
        """Check the token, serve ``/healthz`` (and ``/slack/events`` in HTTP mode), connect.

        ``auth.test`` runs here, once: its answer is handed to Bolt, so the first command
        after start does not make its own call inside the 3-second ack.
        """
        try:
            auth = await self.client.auth_test()
        except SlackApiError as exc:
            error = error_code(exc)
            if error in TOKEN_ERRORS:
                raise StartupError(
                    f"Slack refused SLACK_BOT_TOKEN ({error}): check that it is the bot token "
                    "(xoxb-…) of an app installed in your workspace."
                ) from None
            raise StartupError(
                f"Slack auth.test failed ({error}); is {self.settings.api_url} reachable?"
            ) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise StartupError(
                f"cannot reach Slack at {self.settings.api_url} to check SLACK_BOT_TOKEN ({type(exc).__name__})"
            ) from None
        self.bot_user_id = auth.get("user_id")
        for middleware in self.app._async_middleware_list:  # Bolt would call auth.test itself
            if isinstance(middleware, AsyncSingleTeamAuthorization):
                middleware.auth_test_result = auth
        self.ports.register(self)
        web_app = web.Application()
        web_app.router.add_get("/healthz", self._healthz)
        web_app.router.add_get("/metrics", metrics_endpoint)  # as on the health port
        if not self.socket_mode:
            web_app.router.add_post("/slack/events", self._slack_events)
        self._runner = web.AppRunner(web_app, access_log=None)
        await self._runner.setup()
        host = self.settings.host if host is None else host
        site = web.TCPSite(self._runner, host, self.settings.port if port is None else port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        if self.socket_mode:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            self._socket = AsyncSocketModeHandler(
                self.app, self._app_token, web_client=self.client, ping_interval=self.ping_interval
            )
            try:  # checks SLACK_APP_TOKEN once, here; the client itself retries forever
                opened = await self.client.apps_connections_open(app_token=self._app_token)
                self._socket.client.wss_uri = opened["url"]
            except SlackApiError as exc:
                error = error_code(exc)
                if error in TOKEN_ERRORS:
                    raise StartupError(
                        f"Slack refused SLACK_APP_TOKEN ({error}): check that it is an app-level "
                        "token (xapp-…) with the connections:write scope."
                    ) from None
                log.warning("apps.connections.open failed (%s); the client will retry", error)
            await self._socket.connect_async()
        self._started = True
        mode = "Socket Mode" if self.socket_mode else f"HTTP mode on {host}:{self.port}"
        log.info("Slack adapter ready (%s)", mode)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking work, let started work finish (bounded), then close everything."""
        self._started = False
        if self._socket is not None:
            await self._socket.close_async()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.drain(grace)
        await self.http.close()

    async def drain(self, grace: float | None = None) -> None:
        """Wait for background work started by listeners (tests call this to settle)."""
        if isinstance(self._starter, asyncio.Handle):  # due in the loop's next turn: now
            self._starter.cancel()
            self._start_starter()
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
        with self.acks.ongoing():  # work after earlier acks waits for this one
            return await self._ack(request)

    async def _ack(self, request: web.Request) -> web.Response:
        """Verify the signature over the raw bytes, then check the shape, then answer.

        A slash command is answered here from its form (stored, then acknowledged: the
        same ``_slash_command`` Bolt's listener calls in Socket Mode); Bolt's dispatch
        costs as much again as the rest of that ack, for a form that needs no routing.
        Everything else goes to Bolt. A refused request costs one log line and gets
        400/401, never a traceback.
        """
        started = time.monotonic()
        try:
            body = await request.read()
            requests.verify(body, request.headers, self._signing_secret or "", time.time())
            checked = requests.check(body, request.content_type)
        except requests.Notice as exc:
            log.warning("Slack says: %s", exc.reason)
            return web.json_response({"ok": True}, status=exc.status)
        except requests.Rejected as exc:
            log.warning("refused a request to /slack/events: %s", exc.reason)
            return web.json_response({"error": exc.reason}, status=exc.status)
        except web.HTTPException:
            raise  # aiohttp's own answers (413 for an oversized body)
        if checked.command is not None:
            answer = await self._slash_command(checked.command)
            # observed just after the response is sent, not inside the ack it measures
            asyncio.get_running_loop().call_soon(
                metrics.ack_latency, PLATFORM, time.monotonic() - started
            )
            return web.json_response(answer) if answer else web.Response()
        bolt_request = AsyncBoltRequest(
            body=checked.text, query=request.query_string, headers=request.headers
        )
        bolt_response = await self.app.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    def spawn(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run work after the ack; a strong reference keeps the task alive until done."""

        async def guarded() -> None:
            try:
                with self.answers.ongoing():
                    await work
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Slack %s failed", what)

        self._track(asyncio.create_task(guarded(), name=f"slack-{what}"))

    def _track(self, task: asyncio.Task) -> asyncio.Task:
        """Keep a strong reference until done; ``drain`` and ``stop`` wait for it."""
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def spawn_after_acks(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Process a stored event once the acks pause. Its task is started only then: in
        a burst every ack would otherwise also pay for starting a task that can only
        wait (a sixth of a stored command's ack)."""
        self._queued.append((work, what))
        starter = self._starter  # None, due (a Handle), or running (a Task)
        if starter is None or (isinstance(starter, asyncio.Task) and starter.done()):
            # started just after this ack's response is sent
            self._starter = asyncio.get_running_loop().call_soon(self._start_starter)

    def _start_starter(self) -> None:
        self._starter = self._track(asyncio.create_task(self._start_queued(), name="slack-queued"))

    async def _start_queued(self) -> None:
        try:
            # counts as answers being processed, so display names keep waiting for them
            with self.answers.ongoing():
                await self.acks.settled()
                while self._queued:  # in the order the events were stored
                    self.spawn(*self._queued.popleft())
        finally:
            self._starter = None
            while self._queued:  # cancelled at shutdown: never started, never awaited
                self._queued.popleft()[0].close()

    # ---- listeners: ack, then work ------------------------------------------------------

    def _register_listeners(self) -> None:
        app = self.app

        @app.command(COMMAND)
        async def on_command(ack: Callable[..., Awaitable[None]], body: dict) -> None:
            await ack(**(await self._slash_command(body) or {}))

        @app.action(blocks.SHARE_ACTION)
        async def on_share(ack: Callable[..., Awaitable[None]], body: dict) -> None:
            await ack()
            self.spawn(self._open_modal(body), "share-button")

        @app.view(blocks.MODAL_CALLBACK)
        async def on_submit(ack: Callable[..., Awaitable[None]], body: dict) -> None:
            """Stored before the ack (inbox); then the modal closes only once the answers
            are saved: a refusal that comes back within ``submit_wait`` keeps it open
            (``response_action: errors``) with the reason and the typed text
            (https://docs.slack.dev/surfaces/modals#displaying_errors)."""
            view = body["view"]
            meta = json.loads(view.get("private_metadata") or "{}")
            channel_id, round_id = meta["channel"], int(meta["round"])
            answers, anonymous = blocks.modal_answers(view)  # modal values arrive unencoded
            user = body["user"]
            actor = self._actor(user["id"], user.get("name") or user.get("username"))
            event = FormSubmitted(actor, f"{PLATFORM}:{channel_id}", round_id, answers, anonymous)
            try:  # a view submission has no event id: its trigger_id is unique per submit
                ticket = await self.ports.accept(_trigger_key(body), event)
            except NotSaved:
                errors = {blocks.error_block(view): NOT_SAVED}
                await ack(response_action="errors", errors=errors)
                return
            decided: asyncio.Future[dict[str, str] | None] = (
                asyncio.get_running_loop().create_future()
            )
            self.spawn(self._submitted(ticket, view, channel_id, user["id"], decided), "form")
            try:
                await asyncio.wait_for(asyncio.shield(decided), self.submit_wait)
            except TimeoutError:
                pass
            if not decided.done():
                decided.cancel()  # too slow: close now; the person is told by message
            errors = None if decided.cancelled() else decided.result()
            if errors:
                await ack(response_action="errors", errors=errors)
            else:
                await ack()

        @app.event("message")
        async def on_message(ack: Callable[..., Awaitable[None]], body: dict) -> None:
            event = body.get("event") or {}
            incoming = self._translate_message(event)
            if incoming is None:
                await ack()
                return
            try:
                ticket = await self.ports.accept(_event_key(body, incoming), incoming)
            except NotSaved:
                if isinstance(incoming, MessagePosted):
                    self.spawn(
                        self._ephemeral(
                            event["channel"],
                            incoming.actor.user_id,
                            "Your reply was not saved yet (the bot's database is not "
                            "responding); Slack will deliver it again shortly.",
                            thread_ts=incoming.thread_ref,
                        ),
                        "not-saved",
                    )
                raise  # HTTP 500: Slack redelivers the event later
            await ack()
            if ticket.duplicate:
                return
            if isinstance(incoming, MessagePosted):
                work = self._tell(
                    ticket, event["channel"], incoming.actor.user_id, thread_ts=incoming.thread_ref
                )
            else:
                work = self._quiet(ticket)
            self.spawn_after_acks(work, "message")

    async def _slash_command(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """Store ``/discuss`` before the ack and start its work; the ack's body (None: an
        empty 200). help, preview and sets change nothing and are answered in the ack."""
        actor = self._actor(body["user_id"], body.get("user_name"))
        text = blocks.unescape(body.get("text") or "")  # Slack sends &amp; &lt; &gt;
        event = CommandInvoked(actor, f"{PLATFORM}:{body['channel_id']}", text)
        try:  # slash commands have no event id: trigger_id
            ticket = await self.ports.accept(_trigger_key(body), event)
        except NotSaved:
            return {"text": NOT_SAVED, "response_type": "ephemeral"}
        if ticket.direct:
            answer = await self._direct_answer(ticket)
            if answer is not None:
                return answer
        self.spawn_after_acks(self._command(ticket, body), "command")
        return None

    async def _command(self, ticket: Ticket, body: Mapping[str, Any]) -> None:
        replies = await self._process_after_acks(ticket)
        left = blocks.RESPONSES_PER_COMMAND  # what a response_url accepts
        for n, reply in enumerate(replies):
            room = max(1, left - (len(replies) - n - 1))
            payloads = blocks.reply_payloads(reply, max_messages=room)
            public = isinstance(reply, Reply) and not reply.ephemeral
            for payload in payloads[:room]:
                await self._respond(
                    body["response_url"],
                    **payload,
                    response_type="in_channel" if public else "ephemeral",
                )
            left -= min(room, len(payloads))
        self.names.learn(body["user_id"], body.get("user_name"))

    async def _direct_answer(self, ticket: Ticket) -> dict[str, Any] | None:
        """The reply to a command that changes nothing, to send as the ack's body (one
        request instead of two; https://docs.slack.dev/interactivity/implementing-slash-commands).
        None when it needs more than one message; those go by ``response_url``."""
        replies = await self.ports.process(ticket)
        if len(replies) != 1:
            return None
        payloads = blocks.reply_payloads(replies[0])
        if len(payloads) != 1:
            return None
        public = isinstance(replies[0], Reply) and not replies[0].ephemeral
        return {**payloads[0], "response_type": "in_channel" if public else "ephemeral"}

    async def _respond(self, url: str, **payload: Any) -> None:
        """POST the JSON message to a ``response_url`` with the shared session
        (https://api.slack.com/interactivity/handling#message_responses). Plain aiohttp:
        bolt's ``respond`` opens a new HTTP session per call, and slack_sdk's webhook
        client cost as much CPU per confirmation as the rest of an answer's processing."""
        for attempt in range(2):  # one retry of a dropped keep-alive connection
            try:
                async with self.http.post(url, json=payload, timeout=RESPOND_TIMEOUT) as r:
                    await r.read()
                    if r.status >= 400:
                        log.warning("could not answer a /discuss command: HTTP %s", r.status)
                return
            except aiohttp.ClientConnectionError as exc:
                if attempt == 0 and not isinstance(exc, aiohttp.ServerTimeoutError):
                    continue
                log.warning("could not answer a /discuss command: %s", type(exc).__name__)
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:  # ValueError: a bad URL
                log.warning("could not answer a /discuss command: %s", type(exc).__name__)
            return

    async def _quiet(self, ticket: Ticket) -> None:
        await self._process_after_acks(ticket)

    async def _process_after_acks(self, ticket: Ticket) -> list[Reply_]:
        """Process a stored event once no other ack is being made (``Precedence``): the
        processing transaction holds the loop and SQLite's writer for a while, and a
        person is waiting for an ack, not for this."""
        async with self.acks.after():
            return await self.ports.process(ticket)

    async def _open_modal(self, body: dict) -> None:
        user = body["user"]["id"]
        channel_id = (body.get("channel") or {}).get("id") or body["container"]["channel_id"]
        round_id = int(body["actions"][0]["value"])
        round_ = await self.ports.round_info(round_id)
        if round_ is None or not round_.is_open:
            await self._ephemeral(
                channel_id, user, "This round is closed, so answers are no longer collected."
            )
            return
        view = blocks.answer_modal(
            round_id,
            channel_id,
            round_.title,
            list(round_.questions),
            round_.anonymous_allowed,
        )
        try:
            await self.client.views_open(trigger_id=body["trigger_id"], view=view)
        except (SlackApiError, TimeoutError, aiohttp.ClientError) as exc:
            why = error_code(exc) if isinstance(exc, SlackApiError) else type(exc).__name__
            log.warning("could not open the answer form (%s)", why)
            # a trigger_id lasts 3 s (https://docs.slack.dev/reference/methods/views.open:
            # expired_trigger_id); after a 429 wait it has usually run out
            await self._ephemeral(
                channel_id,
                user,
                "Slack was too busy to open the form just now. Please press *Share your "
                "thoughts* again, or reply in the round's thread.",
            )

    async def _submitted(
        self,
        ticket: Ticket,
        view: dict,
        channel_id: str,
        user_id: str,
        decided: asyncio.Future[dict[str, str] | None] | None = None,
    ) -> None:
        """Save the form's answers (from the inbox). While the listener still waits
        (``decided``), a refusal goes back into the modal; otherwise every outcome is told
        by message."""
        replies = await self.ports.process(ticket)
        await self._settle_form(replies, view, channel_id, user_id, decided)
        self.names.learn(user_id, getattr(ticket.event, "actor", None))

    async def _settle_form(
        self,
        replies: list[Reply_],
        view: dict,
        channel_id: str,
        user_id: str,
        decided: asyncio.Future[dict[str, str] | None] | None,
    ) -> None:
        """A refusal goes back into the still-open modal (``decided``); a save, or any
        outcome once the modal has closed, is told by message."""
        # saved, or kept safe to be carried out later (the inbox says so), or done elsewhere:
        # the modal closes and the person is told by message
        settled = not replies or any(
            isinstance(r, Reply) and (r.confirms_save or r.text == DELAYED) for r in replies
        )
        if decided is not None and not decided.done():
            if not settled:
                reason = " ".join(r.text for r in replies if isinstance(r, Reply))
                decided.set_result({blocks.error_block(view): reason or "Nothing was saved."})
                return
            decided.set_result(None)
        for reply in replies:
            await self._ephemeral(channel_id, user_id, reply)

    def _translate_message(self, event: dict) -> Incoming | None:
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
            return MessageEdited(channel, message["ts"], blocks.unescape(message.get("text") or ""))
        if subtype == "message_deleted":
            ref = event.get("deleted_ts") or (event.get("previous_message") or {}).get("ts")
            return MessageDeleted(channel, ref) if ref else None
        if subtype not in USER_SUBTYPES or _from_bot(event) or not _is_reply(event):
            return None
        if not event.get("user") or event.get("user") == self.bot_user_id:
            return None
        actor = self._actor(event["user"], None)
        text = blocks.unescape(event.get("text") or "")  # stored as typed, escaped on the way out
        return MessagePosted(actor, channel, text, event["ts"], event["thread_ts"])

    async def _tell(
        self, ticket: Ticket, channel_id: str, user_id: str, *, thread_ts: str | None
    ) -> None:
        """Process (answers are committed inside), then confirm to the person ephemerally."""
        for reply in await self._process_after_acks(ticket):
            await self._ephemeral(channel_id, user_id, reply, thread_ts=thread_ts)
        self.names.learn(user_id, getattr(ticket.event, "actor", None))

    async def _ephemeral(
        self, channel_id: str, user_id: str, reply: Reply_ | str, *, thread_ts: str | None = None
    ) -> None:
        """A message only ``user_id`` sees; if Slack refuses (someone answering by the form
        in a public channel they have not joined gets ``user_not_in_channel``), it goes to
        them as a direct message instead (chat.postMessage with the user id as channel,
        https://docs.slack.dev/reference/methods/chat.postMessage#channels), so they still
        learn their answer was saved."""
        extra = {"thread_ts": thread_ts} if thread_ts else {}
        for payload in blocks.reply_payloads(Reply(reply) if isinstance(reply, str) else reply):
            try:
                await self.client.chat_postEphemeral(
                    channel=channel_id, user=user_id, **payload, **extra
                )
                continue
            except SlackApiError as exc:
                error = error_code(exc)
                metrics.api_error(PLATFORM, error)
                if error not in NOT_THERE:
                    log.warning("could not send an ephemeral reply in %s: %s", channel_id, error)
                    continue
            try:
                await self.client.chat_postMessage(channel=user_id, **payload)
            except SlackApiError as exc:
                # no user id here: the log must not tie an (anonymous) answer to anyone
                log.warning("could not send a direct message either: %s", error_code(exc))

    def _actor(self, user_id: str, fallback: str | None) -> Actor:
        """Who acted, with the name we know now: never a Web API call before the answer
        is stored (``DisplayNames.learn`` corrects it afterwards)."""
        admins = self.ports.library.current.config.admins
        return Actor(
            PLATFORM,
            user_id,
            self.names.known(user_id) or fallback or user_id,
            is_admin=admins.allows(PLATFORM, user_id),
        )

    # ---- Platform: posting (``posting.ChannelPoster``) ------------------------------------

    async def post(self, message: ChannelPost) -> Posted | None:
        return await self.poster.post(message)

    async def find_post(self, channel: str, round_key: str) -> Posted | None:
        return await self.poster.find_post(channel, round_key)


def _from_bot(message: dict) -> bool:
    return bool(message.get("bot_id")) or message.get("subtype") == "bot_message"


def _is_reply(message: dict) -> bool:
    thread_ts = message.get("thread_ts")
    return bool(thread_ts) and thread_ts != message.get("ts")


def _trigger_key(body: Mapping[str, Any]) -> str | None:
    """Slash commands and view submissions carry no event id; Slack never redelivers
    them, and each has its own ``trigger_id``. None: the inbox generates a key."""
    trigger = body.get("trigger_id")
    return f"{PLATFORM}:trigger:{trigger}" if trigger else None


def _event_key(body: dict, incoming: Incoming) -> str | None:
    """A thread reply is keyed by channel + ts (a redelivery with a new event id is still
    the same message); edits and deletions by Slack's event id."""
    if isinstance(incoming, MessagePosted):
        return f"{incoming.channel}:{incoming.message_ref}"
    event_id = body.get("event_id")
    return f"{PLATFORM}:event:{event_id}" if event_id else None
