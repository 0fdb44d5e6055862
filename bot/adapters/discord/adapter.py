"""The Discord adapter (discord.py 2.x): translates, and renders. Nothing else.

Slash commands, buttons, modals and thread replies become neutral events for the core;
the core's replies and posts become ephemeral follow-ups, embeds and thread messages.
Rounds, rotation, answers and digests live in ``bot.core``; our own state lives in the
database, so gateway reconnects and process restarts lose nothing.

``import discord`` below is the discord.py library (absolute import), not this module.
"""

from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Any

import discord
from discord import app_commands

from bot import metrics
from bot.adapters.discord.client import (
    NO_MENTIONS,
    PORTAL_SWITCH,
    RoundtableClient,
    comparable_commands,
    configure_endpoints,
    make_intents,
    member_role_ids,
    round_view,
    tree_hash,
)
from bot.adapters.discord.embeds import (
    BUTTON_HINT,
    MESSAGE_LIMIT,
    chunks,
    round_messages,
    shorten,
    summary_texts,
    thread_post_texts,
)
from bot.adapters.discord.forms import MODAL_TITLE_LIMIT, form_items, form_layout, parse_form
from bot.config import DiscordSettings
from bot.core import commands as core_commands
from bot.core.dispatch import ChannelPost, NotSaved, Posted, PostFailed
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
    TypedAnswer,
)
from bot.core.inbox import NOT_SAVED
from bot.core.ports import Ports

log = logging.getLogger(__name__)
PLATFORM = "discord"
TREE_HASH_KEY = "discord.command_tree_hash"
THREAD_EXISTS = 160004  # Discord's error code: this message already has a thread
MISSING_ACCESS, MISSING_PERMISSIONS, UNKNOWN_CHANNEL = 50001, 50013, 10003
# Threads that carry no thread: answers' re-posts and the digest go to the channel, as
# replies to the round's message. Stored as the round's thread_ref, so the round is never
# recorded with its message id as a thread (which would send them to /channels/<msg id>).
REPLY_PREFIX = "reply:"
POINTED_MEMORY = 4096  # (thread, person) pairs told once that their reply cannot be read
FAILED = (
    "Sorry, something went wrong on our side, so this was not done and nothing was saved. "
    "Please try again in a minute; if it keeps failing, tell an admin (the bot's log says why)."
)
NOT_SHOWN = (
    "That was done, but showing the result failed. `/discuss results` shows the answers "
    "saved so far."
)


class DiscordAdapter:
    """The Platform the core posts through, and the translator of Discord events."""

    name = PLATFORM

    def __init__(self, ports: Ports):
        self.ports = ports  # what the core lends adapters: never the store
        self.settings: DiscordSettings = self.ports.library.current.config.discord
        self.client: RoundtableClient | None = None
        self._parents: OrderedDict[int, int | None] = OrderedDict()  # thread → parent (LRU)
        # Whether thread replies are read: configured, and the intent granted. Rounds say
        # so, and a reply that cannot be read is pointed to the button instead.
        self.reads_replies: bool = self.settings.read_thread_replies
        # (thread, person) already told that their reply cannot be read. In memory and
        # bounded: after a restart, or once 4,096 newer pairs pushed it out, a person may
        # be told a second time, never more often than that.
        self._pointed: OrderedDict[tuple[int, int], None] = OrderedDict()

    # ---- running ------------------------------------------------------------------------

    async def serve(self) -> None:
        """Connect and run until cancelled; degrade gracefully without Message Content."""
        token = self.ports.secrets.discord_bot_token
        if not token:
            raise RuntimeError("DISCORD_BOT_TOKEN is not set")
        configure_endpoints(self.settings)
        self.ports.register(self)
        read_replies = self.settings.read_thread_replies
        content = True
        while True:
            self.reads_replies = read_replies and content
            intents = make_intents(read_replies, message_content=content)
            client = self.client = RoundtableClient(self, intents=intents)
            try:
                async with client:
                    await client.start(token)
                return
            except discord.PrivilegedIntentsRequired:
                if not (read_replies and content):
                    raise
                log.error(
                    "discord.read_thread_replies is on, but the Message Content intent is not "
                    "granted. Switch on %s, or set read_thread_replies: false. Continuing "
                    "without reading thread replies: new rounds ask for answers by button and "
                    "/discuss answer, and a thread reply gets a pointer to them.",
                    PORTAL_SWITCH,
                )
                content = False

    async def sync_commands(self, client: RoundtableClient) -> None:
        """Register ``/discuss`` exactly in the configured scope and remove it elsewhere.

        Compares what Discord reports with what we would register, per scope, so a change
        made on Discord's side (or a sync that failed halfway) is noticed; only a scope that
        differs is written (bulk overwrite has a daily limit). The stored record keeps the
        hash (commands + scope) and the guilds we registered in, so leaving a guild's scope
        removes the commands there.
        """
        app_id = client.application_id
        assert app_id is not None
        guild_ids = sorted(set(self.settings.guild_ids))
        local = [c.to_dict(client.tree) for c in client.tree.get_commands()]
        record = _load_record(await self.ports.get_value(TREE_HASH_KEY))
        http = client.http
        written: list[str] = []
        remote = await http.get_global_commands(app_id)
        wanted = [] if guild_ids else local
        if comparable_commands(remote, global_scope=True) != comparable_commands(
            wanted, global_scope=True
        ):
            await http.bulk_upsert_global_commands(app_id, payload=wanted)
            written.append("global" if wanted else "global (removed)")
        for guild_id in sorted(set(guild_ids) | set(record["guilds"])):
            wanted = local if guild_id in guild_ids else []
            try:
                remote = await http.get_guild_commands(app_id, guild_id)
            except (discord.Forbidden, discord.NotFound) as exc:
                # 50001: the app is not (or no longer) in that server
                log.error("discord: cannot register /discuss in server %s: %s", guild_id, exc)
                continue
            if comparable_commands(remote, global_scope=False) != comparable_commands(
                wanted, global_scope=False
            ):
                await http.bulk_upsert_guild_commands(app_id, guild_id, payload=wanted)
                written.append(f"server {guild_id}" + ("" if wanted else " (removed)"))
        value = json.dumps({"hash": tree_hash(client, guild_ids), "guilds": guild_ids})
        await self.ports.set_value(TREE_HASH_KEY, value)
        if written:
            log.info("discord: synced /discuss: %s", ", ".join(written))
        else:
            log.info("discord: /discuss is registered as configured; not syncing")

    # ---- translating in -----------------------------------------------------------------

    def actor(self, user: discord.abc.User) -> Actor:
        admin = self.ports.library.current.config.admins.allows(
            PLATFORM, str(user.id), role_ids=member_role_ids(user)
        )
        return Actor(PLATFORM, str(user.id), user.display_name, is_admin=admin)

    async def parent_of(self, channel_id: int) -> int | None:
        """The parent channel of a thread, or None when ``channel_id`` is no thread."""
        if channel_id in self._parents:
            self._parents.move_to_end(channel_id)
            return self._parents[channel_id]
        assert self.client is not None
        channel = self.client.get_channel(channel_id)
        if channel is None:
            try:
                channel = await self.client.fetch_channel(channel_id)
            except discord.HTTPException as exc:
                metrics.api_error(PLATFORM, exc.code or exc.status)
                log.warning("discord: cannot look up channel %s", channel_id)
                return None
        parent = channel.parent_id if isinstance(channel, discord.Thread) else None
        self._remember(channel_id, parent)
        return parent

    def _remember(self, thread_id: int, parent_id: int | None) -> None:
        self._parents[thread_id] = parent_id
        while len(self._parents) > 1000:
            self._parents.popitem(last=False)

    @staticmethod
    def channel_of(interaction: discord.Interaction) -> str:
        channel = interaction.channel
        if isinstance(channel, discord.Thread) and channel.parent_id:
            return f"{PLATFORM}:{channel.parent_id}"
        return f"{PLATFORM}:{interaction.channel_id}"

    async def guarded(self, interaction: discord.Interaction, work: Awaitable[None]) -> None:
        """Run an interaction's work; whatever fails, the person is told what happened
        (never left looking at "thinking…")."""
        try:
            await work
        except Exception as exc:  # a bug or an outage: log it, and say so
            log.exception("discord: handling an interaction failed")
            await self.tell_failure(interaction, exc)

    async def tell_failure(self, interaction: discord.Interaction, exc: BaseException) -> None:
        text = NOT_SHOWN if isinstance(exc, _ShowFailed) else FAILED
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
            else:
                await interaction.response.send_message(
                    text, ephemeral=True, allowed_mentions=NO_MENTIONS
                )
        except discord.HTTPException:
            log.exception("discord: could not tell the person that their interaction failed")

    async def on_tree_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """The command tree's errors (a failed check or conversion, or a command that
        raised): logged, and the person told."""
        log.error("discord: /discuss failed: %s", error, exc_info=error)
        await self.tell_failure(interaction, getattr(error, "original", error))

    async def _accept(self, interaction: discord.Interaction, key: str, event) -> Any:
        """Store the event before acknowledging the interaction (the defer is the ack);
        None when it could not be stored (the person is told so)."""
        try:
            return await self.ports.accept(key, event)
        except NotSaved:
            await interaction.response.send_message(NOT_SAVED, ephemeral=True)
            return None

    async def run_command(
        self, interaction: discord.Interaction, text: str, answer: TypedAnswer | None = None
    ) -> None:
        event = CommandInvoked(
            self.actor(interaction.user), self.channel_of(interaction), text, answer=answer
        )
        await self._store_and_answer(interaction, event)

    async def _store_and_answer(self, interaction: discord.Interaction, event: Incoming) -> None:
        """Store the interaction's event (keyed by the interaction id), acknowledge it
        with a private "thinking…", then answer in the follow-up."""
        ticket = await self._accept(interaction, f"{PLATFORM}:interaction:{interaction.id}", event)
        if ticket is None:
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        metrics.ack_since(PLATFORM, interaction.created_at)
        await self.answer(interaction, await self.ports.process(ticket))

    async def open_form(self, interaction: discord.Interaction, round_id: int, anon: bool) -> None:
        """The button: open the modal (a modal must be the first response, so no defer)."""
        round_ = await self.ports.round_info(round_id)
        if round_ is None or not round_.is_open:
            await interaction.response.send_message(
                "This round is closed, so answers are no longer collected.", ephemeral=True
            )
            return
        if anon and not round_.anonymous_allowed:
            await interaction.response.send_message(
                "Anonymous answers are turned off for this round.", ephemeral=True
            )
            return
        modal = discord.ui.Modal(
            title=shorten("Share: " + round_.title, MODAL_TITLE_LIMIT),
            custom_id=f"rt:form:{round_id}",
        )
        questions = tuple((q, "") for q in round_.questions)
        layout = form_layout(questions, round_.anonymous_allowed)
        for item in form_items(layout, anon):
            modal.add_item(item)
        # Submits are handled from the custom_id (on_interaction), not by this object, so a
        # form opened before a restart is still saved: keep it out of discord.py's store.
        modal.stop()
        await interaction.response.send_modal(modal)
        metrics.ack_since(PLATFORM, interaction.created_at)

    async def on_form_submit(self, interaction: discord.Interaction, custom_id: str) -> None:
        parts = custom_id.split(":")
        round_id, old_anon_form = int(parts[2]), parts[-1] == "anon"
        round_ = await self.ports.round_info(round_id)
        if round_ is None:
            await interaction.response.send_message("That round no longer exists.", ephemeral=True)
            return
        answers, checkbox = parse_form(
            (interaction.data or {}).get("components", []), len(round_.questions)
        )
        anonymous = old_anon_form or bool(checkbox)
        event = FormSubmitted(
            self.actor(interaction.user), round_.channel, round_id, answers, anonymous
        )
        await self._store_and_answer(interaction, event)

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.webhook_id is not None:
            return
        if not isinstance(message.channel, discord.Thread) or not message.channel.parent_id:
            return  # only replies in a round's thread can be answers
        self._remember(message.channel.id, message.channel.parent_id)
        readable = bool(message.content.strip())
        if not readable and self.reads_replies:
            return  # an attachment or a sticker only: nothing to store
        key = (message.channel.id, message.author.id)
        if not readable:
            if key in self._pointed:
                self._pointed.move_to_end(key)
                return  # told once already in this round
            # reserved before awaiting: replies are handled concurrently, and a quick
            # second reply must not earn a second pointer
            self._pointed[key] = None
            while len(self._pointed) > POINTED_MEMORY:
                self._pointed.popitem(last=False)
        text = message.content
        if self.client is not None and self.client.user is not None:
            # "@Roundtable 2: …" — Discord shows the text of a mention even without the
            # intent; the mention itself is no part of the answer
            text = re.sub(rf"^\s*<@!?{self.client.user.id}>\s*", "", text)
        event = MessagePosted(
            self.actor(message.author),
            f"{PLATFORM}:{message.channel.parent_id}",
            text,
            message_ref=str(message.id),
            thread_ref=str(message.channel.id),
            readable=readable,
        )
        try:  # keyed by the message id: a gateway replay stores it once
            ticket = await self.ports.accept(f"{PLATFORM}:message:{message.id}", event)
        except NotSaved:
            await message.reply(NOT_SAVED, mention_author=False, allowed_mentions=NO_MENTIONS)
            return
        replies = await self.ports.process(ticket)
        # A saved thread reply is visible in the thread already; say only what went wrong.
        problems = [r for r in replies if isinstance(r, Reply) and not r.confirms_save]
        if not readable and not problems:
            self._pointed.pop(key, None)  # no open round's thread: nothing was said
        for reply in problems:
            try:
                await message.reply(reply.text, mention_author=False, allowed_mentions=NO_MENTIONS)
            except discord.HTTPException as exc:  # e.g. no Send Messages in Threads
                log.warning("discord: could not reply in thread %s: %s", message.channel.id, exc)

    async def on_raw_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        content = payload.data.get("content")
        if content is None or payload.data.get("author", {}).get("bot"):
            return  # embed unfurls and our own messages are no answers
        if not content.strip() and not self.reads_replies:
            return  # the text is withheld without the intent: never blank a stored answer
        parent = await self.parent_of(payload.channel_id)
        if parent is None:
            return
        edited = payload.data.get("edited_timestamp") or content
        key = f"{PLATFORM}:edit:{payload.message_id}:{edited}"
        await self.ports.handle(
            MessageEdited(f"{PLATFORM}:{parent}", str(payload.message_id), content), key
        )

    async def on_raw_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        parent = await self.parent_of(payload.channel_id)
        if parent is None:
            return
        await self.ports.handle(
            MessageDeleted(f"{PLATFORM}:{parent}", str(payload.message_id)),
            f"{PLATFORM}:delete:{payload.message_id}",
        )

    # ---- rendering out ------------------------------------------------------------------

    async def answer(
        self, interaction: discord.Interaction, replies: list[Reply | Summary | RoundPost]
    ) -> None:
        """Follow up on a deferred interaction, ephemerally, without pinging anyone."""
        if not replies:
            replies = [Reply("Done.")]
        try:
            for reply in replies:
                send = interaction.followup.send
                if isinstance(reply, Reply):
                    text = reply.text
                    if not self.reads_replies:  # never invite answers the bot cannot read
                        text = text.replace(core_commands.THREAD_HINT, BUTTON_HINT)
                    for part in chunks(text, MESSAGE_LIMIT):
                        await send(part, ephemeral=True, allowed_mentions=NO_MENTIONS)
                elif isinstance(reply, Summary):
                    for text in summary_texts(reply):
                        await send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
                else:
                    for embeds in round_messages(reply, self.reads_replies):
                        await send(embeds=embeds, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except Exception as exc:
            raise _ShowFailed from exc

    async def _messageable(self, channel_id: int) -> discord.abc.Messageable:
        assert self.client is not None
        channel = self.client.get_channel(channel_id)
        if channel is None:
            channel = await self.client.fetch_channel(channel_id)
        return channel  # type: ignore[return-value]

    async def post(self, message: ChannelPost) -> Posted | None:
        """Post into the round's channel or thread; ``PostFailed`` when Discord refuses for
        good (403 Missing Access / Permissions, 404 Unknown Channel, 400 invalid body)."""
        channel_id = int(message.channel.split(":", 1)[1])
        try:
            if isinstance(message, RoundPost):
                return await self._post_round(channel_id, message)
            texts = (
                summary_texts(message)
                if isinstance(message, Summary)
                else thread_post_texts(message)
            )
            await self._post_texts(
                channel_id, message.thread_ref, texts, message.key, message.resume
            )
            return None
        except discord.HTTPException as exc:
            metrics.api_error(PLATFORM, exc.code or exc.status)
            if exc.status in (400, 403, 404):
                raise PostFailed(_refusal(exc)) from exc
            raise  # 5xx after discord.py's own retries, or a cut connection: transient

    async def _post_texts(
        self,
        channel_id: int,
        thread_ref: str | None,
        texts: list[str],
        key: str | None,
        resume: bool = False,
    ) -> None:
        reply_to: int | None = None
        if thread_ref and thread_ref.startswith(REPLY_PREFIX):
            target, reply_to = channel_id, int(thread_ref[len(REPLY_PREFIX) :])
        else:
            target = int(thread_ref) if thread_ref else channel_id
        try:
            await self._send_texts(target, texts, reply_to, key, resume)
        except discord.NotFound as exc:
            if target == channel_id or exc.code != UNKNOWN_CHANNEL:
                raise
            # The thread was deleted; a thread started on a message has that message's id,
            # so post in the channel as a reply to the round instead of losing the post.
            log.warning("discord: thread %s is gone; posting in its channel instead", target)
            await self._send_texts(channel_id, texts, target, key, resume)

    async def _send_texts(
        self,
        target: int,
        texts: list[str],
        reply_to: int | None,
        key: str | None,
        resume: bool = False,
    ) -> None:
        channel = await self._messageable(target)
        landed = await self._landed(channel) if resume else set()
        reference = None
        if reply_to is not None:
            reference = discord.MessageReference(
                message_id=reply_to, channel_id=target, fail_if_not_exists=False
            )
        for n, text in enumerate(texts):
            # the outbox key as nonce, per chunk (≤ 25 characters); discord.py sends it
            # with enforce_nonce, so Discord answers a re-send within minutes with the
            # earlier message; after longer, a re-send skips chunks found in history
            nonce = f"{key[: 24 - len(str(n))]}#{n}" if key else None
            if text in landed:
                continue
            await channel.send(
                text,
                reference=reference if n == 0 else None,
                allowed_mentions=NO_MENTIONS,
                nonce=nonce,
            )

    async def _post_round(self, channel_id: int, post: RoundPost) -> Posted:
        channel = await self._messageable(channel_id)
        messages = round_messages(post, self.reads_replies)
        first: discord.Message | None = None
        for i, embeds in enumerate(messages):
            extra: dict[str, Any] = {}
            if i == len(messages) - 1:  # the button goes under the last part
                extra["view"] = round_view(post)
            sent = await channel.send(
                embeds=embeds,
                **extra,
                # Discord drops a retried post with the same nonce (25 characters at most)
                nonce=post.round_key if i == 0 else f"{post.round_key}:{i}",
                allowed_mentions=NO_MENTIONS,
            )
            first = first or sent
        assert first is not None
        thread_ref = await self._open_thread(first, post.prompt.title, post.round_key)
        return Posted(message_ref=str(first.id), thread_ref=thread_ref)

    async def _open_thread(self, message: discord.Message, title: str, round_key: str) -> str:
        """The round's thread, or where its posts go when the bot may not open one."""
        try:
            thread = await message.create_thread(
                name=shorten(title, 100), auto_archive_duration=10080
            )
        except discord.HTTPException as exc:
            metrics.api_error(PLATFORM, exc.code or exc.status)
            if exc.code == THREAD_EXISTS:  # a retried post: the thread id is the message id
                return str(message.id)
            if exc.status == 404:  # the round's message was deleted meanwhile (10008)
                log.warning("discord: round %s: its message is gone, no thread", round_key)
                return f"{REPLY_PREFIX}{message.id}"
            if exc.status != 403:
                raise  # transient: the post is retried, and Discord dedups it by nonce
            missing = "Create Public Threads" if exc.code == MISSING_PERMISSIONS else "View Channel"
            log.error(
                "discord: round %s in channel %s has no thread: the bot lacks the %s "
                "permission there (%s %s). Anonymous answers and the digest go to the channel "
                "as replies to the round. Grant %s to the bot in that channel.",
                round_key, message.channel.id, missing, exc.status, exc.code, missing,
            )  # fmt: skip
            await self._notice_no_thread(message, missing, round_key)
            return f"{REPLY_PREFIX}{message.id}"
        self._remember(thread.id, message.channel.id)
        return str(thread.id)

    async def _notice_no_thread(self, message: discord.Message, missing: str, key: str) -> None:
        """Tell the server's admins, where they look, which permission is missing."""
        text = (
            f"I could not open a discussion thread for this round: I am missing the "
            f"**{missing}** permission in this channel. Answers still work with the button "
            "and `/discuss answer`; anonymous answers and the digest will appear here. "
            f"An admin can grant {missing} to fix this for the next round."
        )
        try:
            await message.channel.send(
                text,
                reference=message.to_reference(fail_if_not_exists=False),
                nonce=f"{key}:nothread",
                allowed_mentions=NO_MENTIONS,
            )
        except discord.HTTPException as exc:
            log.warning("discord: could not post the missing-permission notice: %s", exc)

    async def _landed(self, channel: discord.abc.Messageable) -> set[str]:
        """What the bot posted recently here (history carries no nonce: match the text)."""
        assert self.client is not None and self.client.user is not None
        try:
            found = [m async for m in channel.history(limit=50)]  # type: ignore[attr-defined]
        except discord.HTTPException as exc:  # unreadable: rely on the nonce alone
            log.warning("discord: cannot read history before a re-send: %s", exc)
            return set()
        return {m.content for m in found if m.author.id == self.client.user.id}

    async def find_post(self, channel: str, round_key: str) -> Posted | None:
        """After a crash mid-post: the round's message by nonce or footer in recent history."""
        channel_id = int(channel.split(":", 1)[1])
        try:
            messageable = await self._messageable(channel_id)
            assert self.client is not None
            async for msg in messageable.history(limit=50):  # type: ignore[attr-defined]
                if self.client.user is None or msg.author.id != self.client.user.id:
                    continue
                footers = [e.footer.text for e in msg.embeds if e.footer and e.footer.text]
                if msg.nonce == round_key or any(f.endswith(f" · {round_key}") for f in footers):
                    # a thread started from a message has the message's id
                    if msg.thread is not None or msg.flags.has_thread:
                        return Posted(str(msg.id), str(msg.id))
                    title = msg.embeds[0].title if msg.embeds and msg.embeds[0].title else "Round"
                    return Posted(str(msg.id), await self._open_thread(msg, title, round_key))
        except discord.HTTPException as exc:
            log.warning("discord: cannot search %s for %s: %s", channel, round_key, exc)
        return None


class _ShowFailed(Exception):
    """The core handled the event, but its reply could not be shown."""


def _load_record(value: str | None) -> dict[str, Any]:
    """The stored sync record; an older plain hash (or nothing) knows no guilds."""
    try:
        record = json.loads(value) if value else {}
    except ValueError:
        record = {}
    if not isinstance(record, dict):
        record = {}
    guilds = record.get("guilds") or []
    return {"hash": record.get("hash"), "guilds": [int(g) for g in guilds]}


def _refusal(exc: discord.HTTPException) -> str:
    """Discord's refusal, with its JSON error code and what the admin can do about it."""
    what = {
        MISSING_ACCESS: "Missing Access: the bot cannot see this channel; add it to the "
        "channel (View Channel)",
        MISSING_PERMISSIONS: "Missing Permissions: the bot needs Send Messages, Embed Links "
        "and Send Messages in Threads in this channel",
        UNKNOWN_CHANNEL: "Unknown Channel: the channel no longer exists; remove it from the config",
    }.get(exc.code)
    if what is None:
        what = exc.text or ("invalid request" if exc.status == 400 else "refused")
    return f"Discord refused ({exc.status}, code {exc.code}) {what}"
