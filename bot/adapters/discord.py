"""The Discord adapter (discord.py 2.x): translates, and renders. Nothing else.

Slash commands, buttons, modals and thread replies become neutral events for the core;
the core's replies and posts become ephemeral follow-ups, embeds and thread messages.
Rounds, rotation, answers and digests live in ``bot.core``; our own state lives in the
database, so gateway reconnects and process restarts lose nothing.

``import discord`` below is the discord.py library (absolute import), not this module.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import discord
import yarl
from discord import app_commands

from bot import metrics
from bot.config import DiscordSettings
from bot.core import commands as core_commands
from bot.core.dispatch import ChannelPost, NotSaved, Posted, PostFailed
from bot.core.events import (
    Actor,
    CommandInvoked,
    FormSubmitted,
    MessageDeleted,
    MessageEdited,
    MessagePosted,
    Reply,
    RoundPost,
    Summary,
    ThreadPost,
)
from bot.core.inbox import NOT_SAVED
from bot.core.ports import Ports

if TYPE_CHECKING:
    from bot.app import Runtime

log = logging.getLogger(__name__)

PLATFORM = "discord"
TREE_HASH_KEY = "discord.command_tree_hash"
MODAL_INPUTS = 5  # Discord's limit of inputs per modal
THREAD_EXISTS = 160004  # Discord's error code: this message already has a thread
MESSAGE_LIMIT = 2000
EMBED_LIMIT = 4000  # below Discord's 4096 to leave room for escaping
NO_MENTIONS = discord.AllowedMentions.none()
# Message Content is the only privileged intent we may ask for; Discord closes with 4014
# when it is requested but not switched on in the Developer Portal.
PORTAL_SWITCH = (
    "Developer Portal → your application → Bot → Privileged Gateway Intents → "
    "MESSAGE CONTENT INTENT"
)


def bot_permissions() -> discord.Permissions:
    """The minimal permissions the bot needs (the README says why for each)."""
    return discord.Permissions(
        view_channel=True,  # see the channels it posts rounds in
        send_messages=True,  # post the round
        embed_links=True,  # the round and digests are embeds
        read_message_history=True,  # find an earlier post of a round after a crash
        create_public_threads=True,  # open the discussion thread on the round
        send_messages_in_threads=True,  # anonymous answers, reminders, digests
    )


def application_id_from_token(token: str) -> int | None:
    """A bot token's first segment is the base64 of the bot's (= application's) id."""
    head = token.split(".", 1)[0]
    try:
        text = base64.b64decode(head + "=" * (-len(head) % 4), validate=False).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def invite_url(application_id: int) -> str:
    return discord.utils.oauth_url(
        application_id, permissions=bot_permissions(), scopes=("bot", "applications.commands")
    )


def configure_endpoints(settings: DiscordSettings) -> None:
    """Point discord.py at Discord (the defaults), a compatible service, or a test fake."""
    discord.http.Route.BASE = settings.api_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)


def escape(text: str) -> str:
    """User text in our layout: no markdown that breaks it (mentions are off anyway)."""
    return discord.utils.escape_markdown(text, as_needed=False)


def chunks(text: str, limit: int) -> list[str]:
    """Split long text on line breaks where possible, never losing a character."""
    out: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        if cut <= 0:
            cut = limit
        out.append(text[:cut])
        text = text[cut:].lstrip("\n")
    if text or not out:
        out.append(text)
    return out


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- rendering ----------------------------------------------------------------------------


def round_embed(post: RoundPost) -> discord.Embed:
    prompt = post.prompt
    lines = [escape(prompt.summary), "", "**Questions**"]
    lines += [f"**{i}.** {escape(text)}" for i, (text, _) in enumerate(prompt.questions, 1)]
    lines += ["", "Reply in the thread (start with `2:` to answer question 2) or press a button."]
    title = ("Preview: " if post.preview else "") + prompt.title
    embed = discord.Embed(
        title=_shorten(title, 256),
        url=prompt.url,
        description=_shorten("\n".join(lines), EMBED_LIMIT),
        colour=discord.Colour.blurple(),
    )
    footer = f"Source: {prompt.source}"
    if not post.preview:
        footer += f" · {post.round_key}"  # lets find_post recognise the round after a crash
    embed.set_footer(text=_shorten(footer, 2048))
    return embed


def summary_texts(summary: Summary) -> list[str]:
    people = f"{summary.respondents} {'person' if summary.respondents == 1 else 'people'}"
    verb = "shared their thoughts" if summary.final else "shared so far"
    head = "Digest" if summary.final else "Results so far"
    lines = [f"**{head} — {escape(summary.title)}**: {people} {verb}."]
    for group in summary.groups:
        label = f"Q{group.number}. {group.question}" if group.number else (group.question or "")
        count = f" ({len(group.answers)})" if summary.show_counts else ""
        lines += ["", f"**{escape(label)}**{count}"]
        for answer in group.answers:
            who = f"**{escape(answer.author)}**: " if answer.author else "*(anonymous)* "
            late = " *(late)*" if answer.late else ""
            lines.append(f"• {who}{escape(answer.text)}{late}")
    if summary.note:
        lines += ["", escape(summary.note)]
    return chunks("\n".join(lines), MESSAGE_LIMIT)


def thread_post_texts(post: ThreadPost) -> list[str]:
    text = escape(post.text)
    if post.quote is not None:
        text += "\n" + "\n".join("> " + escape(line) for line in post.quote.splitlines() or [""])
    return chunks(text, MESSAGE_LIMIT)


# ---- components ---------------------------------------------------------------------------


class AnswerButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"rt:answer:(?P<round_id>[0-9]+)(?P<anon>:anon)?",
):
    """The persistent "Share your thoughts" / "Share anonymously" buttons.

    The round id lives in the ``custom_id``, so a button on a round posted before a
    restart still works: nothing about it is kept in memory.
    """

    def __init__(self, round_id: int, anonymous: bool = False):
        super().__init__(
            discord.ui.Button(
                label="Share anonymously" if anonymous else "Share your thoughts",
                style=discord.ButtonStyle.secondary if anonymous else discord.ButtonStyle.primary,
                custom_id=f"rt:answer:{round_id}" + (":anon" if anonymous else ""),
            )
        )
        self.round_id = round_id
        self.anonymous = anonymous

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: Any
    ) -> AnswerButton:
        return cls(int(match["round_id"]), bool(match["anon"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        adapter: DiscordAdapter = interaction.client.adapter  # type: ignore[attr-defined]
        await adapter.open_form(interaction, self.round_id, self.anonymous)


def round_view(post: RoundPost) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(AnswerButton(post.round_id))
    if post.anonymous_allowed:
        view.add_item(AnswerButton(post.round_id, anonymous=True))
    return view


def form_inputs(questions: tuple[tuple[str, str], ...]) -> list[tuple[str, str, str]]:
    """(custom_id, label, placeholder) per modal input.

    Up to five questions get one input each. With more, questions 1–4 get their own input
    and the fifth input collects the rest: "6: …" answers question 6, unnumbered text
    goes to question 5.
    """
    fields: list[tuple[str, str, str]] = []
    own = questions if len(questions) <= MODAL_INPUTS else questions[: MODAL_INPUTS - 1]
    for i, (text, _) in enumerate(own, 1):
        fields.append((f"q{i}", _shorten(f"{i}. {text}", 45), _shorten(text, 100)))
    if len(questions) > MODAL_INPUTS:
        first, last = MODAL_INPUTS, len(questions)
        fields.append(
            (
                "rest",
                f"Questions {first}–{last}",
                _shorten(f'Start with the number, e.g. "{last}: …"; unnumbered = {first}', 100),
            )
        )
    return fields


def parse_form(components: list[dict], n_questions: int) -> dict[int, str]:
    """Submitted modal components → answers keyed by question number."""
    values: dict[str, str] = {}

    def walk(items: list[dict]) -> None:
        for item in items:
            if "components" in item:
                walk(item["components"])
            elif "component" in item:  # a Label wrapper (type 18)
                walk([item["component"]])
            elif "custom_id" in item:
                values[item["custom_id"]] = item.get("value") or ""

    walk(components)
    answers: dict[int, str] = {}
    for key, value in values.items():
        if key.startswith("q") and key[1:].isdigit() and value.strip():
            answers[int(key[1:])] = value
    rest = values.get("rest", "").strip()
    if rest:
        for part in rest.split("\n\n"):
            number, text = core_commands.split_numbered(part)
            if number is None or not MODAL_INPUTS <= number <= n_questions:
                number, text = MODAL_INPUTS, part.strip()
            if text:
                answers[number] = (answers[number] + "\n\n" + text) if number in answers else text
    return answers


def member_role_ids(user: discord.abc.User) -> tuple[str, ...]:
    """The role ids of whoever sent an interaction or a message, as the event lists them.

    Each interaction (and guild message) carries its member's role ids, so no member cache
    or privileged intent is needed. discord.py 2.x keeps that list only privately, as
    ``Member._roles``; the public ``Member.roles`` resolves it through the guild's role
    cache and silently drops what it cannot resolve. That cache is empty until the guild's
    GUILD_CREATE arrives (READY clears it on every new session) and is never filled for a
    server where the app's commands are installed without the bot user, so an admin by
    role would be refused there. Hence the private list first; if a future discord.py
    drops or reshapes it, fall back to the public, cache-resolved roles instead of failing.
    """
    raw = getattr(user, "_roles", None)
    if raw is not None:
        try:
            return tuple(str(int(role_id)) for role_id in raw)
        except (TypeError, ValueError):
            pass
    roles = getattr(user, "roles", None) or ()  # a discord.User (no server) has none
    return tuple(str(role.id) for role in roles if not role.is_default())  # not @everyone


# ---- the client ---------------------------------------------------------------------------


def make_intents(read_thread_replies: bool) -> discord.Intents:
    """Non-privileged intents, plus Message Content only when thread replies are read."""
    intents = discord.Intents.default()
    intents.typing = False
    intents.presences = False
    intents.members = False
    intents.message_content = read_thread_replies
    return intents


class RoundtableClient(discord.Client):
    """A discord.py client that hands everything to the adapter."""

    def __init__(self, adapter: DiscordAdapter, *, intents: discord.Intents):
        super().__init__(
            intents=intents,
            # memory stays flat on large servers: no member cache, no chunking, few messages
            member_cache_flags=discord.MemberCacheFlags.none(),
            chunk_guilds_at_startup=False,
            max_messages=200,
            allowed_mentions=NO_MENTIONS,
        )
        self.adapter = adapter
        self.tree = app_commands.CommandTree(self)
        self.tree.add_command(build_discuss_group(adapter))

    async def setup_hook(self) -> None:
        self.add_dynamic_items(AnswerButton)
        await self.adapter.sync_commands(self)

    async def on_message(self, message: discord.Message) -> None:
        await self.adapter.on_message(message)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        await self.adapter.on_raw_edit(payload)

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self.adapter.on_raw_delete(payload)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        if interaction.type is discord.InteractionType.modal_submit:
            custom_id = (interaction.data or {}).get("custom_id", "")
            if custom_id.startswith("rt:form:"):
                await self.adapter.on_form_submit(interaction, custom_id)


def build_discuss_group(adapter: DiscordAdapter) -> app_commands.Group:
    """``/discuss <subcommand>``: each one becomes the core's command text."""
    group = app_commands.Group(
        name="discuss", description="Roundtable: recurring discussions", guild_only=True
    )

    async def prompt_ids(_: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        ids = adapter.runtime.library.current.all_prompt_ids()
        hits = [i for i in ids if current.lower() in i.lower()]
        return [app_commands.Choice(name=i, value=i) for i in hits[:25]]

    def simple(name: str, description: str) -> None:
        async def run(interaction: discord.Interaction) -> None:
            await adapter.run_command(interaction, name)

        group.add_command(app_commands.Command(name=name, description=description, callback=run))

    for spec in core_commands.SPECS:
        if spec.name not in ("now", "preview", "answer"):
            simple(spec.name, _shorten(spec.summary, 100))

    @group.command(name="now", description="Open a round here now (admins)")
    @app_commands.describe(prompt_id="Which prompt (default: the next in rotation)")
    @app_commands.autocomplete(prompt_id=prompt_ids)
    async def now(interaction: discord.Interaction, prompt_id: str | None = None) -> None:
        await adapter.run_command(interaction, f"now {prompt_id}" if prompt_id else "now")

    @group.command(name="preview", description="Show a prompt as a round would post it")
    @app_commands.describe(prompt_id="Which prompt (default: the next in rotation)")
    @app_commands.autocomplete(prompt_id=prompt_ids)
    async def preview(interaction: discord.Interaction, prompt_id: str | None = None) -> None:
        await adapter.run_command(interaction, f"preview {prompt_id}" if prompt_id else "preview")

    @group.command(name="answer", description="Answer the open round")
    @app_commands.describe(
        text="Your answer",
        question="Which question (number)",
        anonymous="Store it without your name",
    )
    async def answer(
        interaction: discord.Interaction,
        text: app_commands.Range[str, 1, 4000],
        question: app_commands.Range[int, 1, 50] | None = None,
        anonymous: bool = False,
    ) -> None:
        head = (
            "answer" + (f" {question}" if question else "") + (" --anonymous" if anonymous else "")
        )
        await adapter.run_command(interaction, f"{head} {text}")

    return group


def tree_hash(client: RoundtableClient, guild_ids: list[int]) -> str:
    payload = {
        "commands": [c.to_dict(client.tree) for c in client.tree.get_commands()],
        "guilds": sorted(guild_ids),
        "application": client.application_id,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# ---- the adapter --------------------------------------------------------------------------


class DiscordAdapter:
    """The Platform the core posts through, and the translator of Discord events."""

    name = PLATFORM

    def __init__(self, ports: Ports | Runtime):
        # a Runtime hands over its ports only: adapters never see the store
        self.ports: Ports = getattr(ports, "ports", ports)  # type: ignore[assignment]
        self.runtime = self.ports  # what commands and buttons read (library, clock, secrets)
        self.settings: DiscordSettings = self.ports.library.current.config.discord
        self.client: RoundtableClient | None = None
        self._parents: OrderedDict[int, int | None] = OrderedDict()  # thread → parent (LRU)

    # ---- running ------------------------------------------------------------------------

    async def serve(self) -> None:
        """Connect and run until cancelled; degrade gracefully without Message Content."""
        token = self.runtime.secrets.discord_bot_token
        if not token:
            raise RuntimeError("DISCORD_BOT_TOKEN is not set")
        configure_endpoints(self.settings)
        self.ports.register(self)
        read_replies = self.settings.read_thread_replies
        while True:
            client = self.client = RoundtableClient(self, intents=make_intents(read_replies))
            try:
                async with client:
                    await client.start(token)
                return
            except discord.PrivilegedIntentsRequired:
                if not read_replies:
                    raise
                log.error(
                    "discord.read_thread_replies is on, but the Message Content intent is not "
                    "granted. Switch on %s, or set read_thread_replies: false. Continuing "
                    "without reading thread replies (slash commands and buttons still work).",
                    PORTAL_SWITCH,
                )
                read_replies = False

    async def sync_commands(self, client: RoundtableClient) -> None:
        """Sync ``/discuss`` only when the tree changed since the last sync (rate limits)."""
        guild_ids = list(self.settings.guild_ids)
        digest = tree_hash(client, guild_ids)
        if await self.ports.get_value(TREE_HASH_KEY) == digest:
            log.info("discord: command tree unchanged; not syncing")
            return
        if guild_ids:
            for guild_id in guild_ids:
                guild = discord.Object(id=guild_id)
                client.tree.copy_global_to(guild=guild)
                await client.tree.sync(guild=guild)
        else:
            await client.tree.sync()
        await self.ports.set_value(TREE_HASH_KEY, digest)
        log.info("discord: synced /discuss to %s", guild_ids or "all servers (global)")

    # ---- translating in -----------------------------------------------------------------

    def actor(self, user: discord.abc.User) -> Actor:
        admin = self.runtime.library.current.config.admins.allows(
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

    async def _accept(self, interaction: discord.Interaction, key: str, event) -> Any:
        """Store the event before acknowledging the interaction (the defer is the ack);
        None when it could not be stored (the person is told so)."""
        try:
            return await self.ports.accept(key, event)
        except NotSaved:
            await interaction.response.send_message(NOT_SAVED, ephemeral=True)
            return None

    async def run_command(self, interaction: discord.Interaction, text: str) -> None:
        event = CommandInvoked(self.actor(interaction.user), self.channel_of(interaction), text)
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
        title = ("Share anonymously: " if anon else "Share: ") + round_.title
        modal = discord.ui.Modal(
            title=_shorten(title, 45),
            custom_id=f"rt:form:{round_id}" + (":anon" if anon else ""),
        )
        questions = tuple((q, "") for q in round_.questions)
        for custom_id, label, placeholder in form_inputs(questions):
            modal.add_item(
                discord.ui.TextInput(
                    label=label,
                    custom_id=custom_id,
                    placeholder=placeholder,
                    style=discord.TextStyle.paragraph,
                    required=False,
                    max_length=4000,
                )
            )
        # Submits are handled from the custom_id (on_interaction), not by this object, so a
        # form opened before a restart is still saved: keep it out of discord.py's store.
        modal.stop()
        await interaction.response.send_modal(modal)
        metrics.ack_since(PLATFORM, interaction.created_at)

    async def on_form_submit(self, interaction: discord.Interaction, custom_id: str) -> None:
        parts = custom_id.split(":")
        round_id, anonymous = int(parts[2]), parts[-1] == "anon"
        round_ = await self.ports.round_info(round_id)
        if round_ is None:
            await interaction.response.send_message("That round no longer exists.", ephemeral=True)
            return
        answers = parse_form((interaction.data or {}).get("components", []), len(round_.questions))
        event = FormSubmitted(
            self.actor(interaction.user), round_.channel, round_id, answers, anonymous
        )
        ticket = await self._accept(interaction, f"{PLATFORM}:interaction:{interaction.id}", event)
        if ticket is None:
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        metrics.ack_since(PLATFORM, interaction.created_at)
        await self.answer(interaction, await self.ports.process(ticket))

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.webhook_id is not None:
            return
        if not isinstance(message.channel, discord.Thread) or not message.channel.parent_id:
            return  # only replies in a round's thread can be answers
        if not message.content.strip():
            return  # no Message Content intent (or an attachment only): nothing to store
        self._remember(message.channel.id, message.channel.parent_id)
        event = MessagePosted(
            self.actor(message.author),
            f"{PLATFORM}:{message.channel.parent_id}",
            message.content,
            message_ref=str(message.id),
            thread_ref=str(message.channel.id),
        )
        try:  # keyed by the message id: a gateway replay stores it once
            ticket = await self.ports.accept(f"{PLATFORM}:message:{message.id}", event)
        except NotSaved:
            await message.reply(NOT_SAVED, mention_author=False, allowed_mentions=NO_MENTIONS)
            return
        replies = await self.ports.process(ticket)
        # A saved thread reply is visible in the thread already; say only what went wrong.
        problems = [r for r in replies if isinstance(r, Reply) and not r.confirms_save]
        for reply in problems:
            await message.reply(reply.text, mention_author=False, allowed_mentions=NO_MENTIONS)

    async def on_raw_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        content = payload.data.get("content")
        if content is None or payload.data.get("author", {}).get("bot"):
            return  # embed unfurls and our own messages are no answers
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
        for reply in replies:
            send = interaction.followup.send
            if isinstance(reply, Reply):
                for text in chunks(reply.text, MESSAGE_LIMIT):
                    await send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
            elif isinstance(reply, Summary):
                for text in summary_texts(reply):
                    await send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
            else:
                await send(embed=round_embed(reply), ephemeral=True, allowed_mentions=NO_MENTIONS)

    async def _messageable(self, channel_id: int) -> discord.abc.Messageable:
        assert self.client is not None
        channel = self.client.get_channel(channel_id)
        if channel is None:
            try:
                channel = await self.client.fetch_channel(channel_id)
            except (discord.Forbidden, discord.NotFound) as exc:
                metrics.api_error(PLATFORM, exc.code or exc.status)
                raise PostFailed(_refusal(exc)) from exc
        return channel  # type: ignore[return-value]

    async def post(self, message: ChannelPost) -> Posted | None:
        channel_id = int(message.channel.split(":", 1)[1])
        try:
            if isinstance(message, RoundPost):
                return await self._post_round(channel_id, message)
            target = int(message.thread_ref) if message.thread_ref else channel_id
            texts = (
                summary_texts(message)
                if isinstance(message, Summary)
                else thread_post_texts(message)
            )
            channel = await self._messageable(target)
            for n, text in enumerate(texts):
                # the outbox row's key as nonce (≤ 25 characters), per chunk
                nonce = f"{message.key[:22]}-{n}" if message.key else None
                await channel.send(text, allowed_mentions=NO_MENTIONS, nonce=nonce)
            return None
        except (discord.Forbidden, discord.NotFound) as exc:
            metrics.api_error(PLATFORM, exc.code or exc.status)
            raise PostFailed(_refusal(exc)) from exc
        except discord.HTTPException as exc:  # transient (5xx): the dispatcher retries later
            metrics.api_error(PLATFORM, exc.code or exc.status)
            raise

    async def _post_round(self, channel_id: int, post: RoundPost) -> Posted:
        channel = await self._messageable(channel_id)
        sent = await channel.send(
            embed=round_embed(post),
            view=round_view(post),
            nonce=post.round_key,  # Discord drops a retried post with the same nonce
            allowed_mentions=NO_MENTIONS,
        )
        try:
            thread = await sent.create_thread(
                name=_shorten(post.prompt.title, 100), auto_archive_duration=10080
            )
        except discord.HTTPException as exc:
            metrics.api_error(PLATFORM, exc.code or exc.status)
            if exc.code == THREAD_EXISTS:  # a retried post: the thread id is the message id
                return Posted(message_ref=str(sent.id), thread_ref=str(sent.id))
            # The round is out; answers still work by button and /discuss answer.
            log.error(
                "discord: posted round %s but could not open its thread: %s", post.round_id, exc
            )
            return Posted(message_ref=str(sent.id))
        self._remember(thread.id, channel_id)
        return Posted(message_ref=str(sent.id), thread_ref=str(thread.id))

    async def find_post(self, channel: str, round_key: str) -> Posted | None:
        """After a crash mid-post: the round's message by nonce or footer in recent history."""
        channel_id = int(channel.split(":", 1)[1])
        try:
            messageable = await self._messageable(channel_id)
            assert self.client is not None
            async for msg in messageable.history(limit=50):  # type: ignore[attr-defined]
                if self.client.user is None or msg.author.id != self.client.user.id:
                    continue
                footer = msg.embeds[0].footer.text if msg.embeds else None
                if msg.nonce == round_key or (footer and footer.endswith(f" · {round_key}")):
                    # a thread started from a message has the message's id
                    has_thread = msg.thread is not None or msg.flags.has_thread
                    return Posted(str(msg.id), str(msg.id) if has_thread else None)
        except (PostFailed, discord.HTTPException) as exc:
            log.warning("discord: cannot search %s for %s: %s", channel, round_key, exc)
        return None


def _refusal(exc: discord.HTTPException) -> str:
    what = "Missing Access/Permissions" if isinstance(exc, discord.Forbidden) else "Unknown Channel"
    return f"Discord refused ({exc.status} {what}): check the bot's access to this channel"


async def serve(runtime: Runtime) -> None:
    """Run the Discord adapter until cancelled (started by ``bot.app.run``)."""
    adapter = DiscordAdapter(runtime)
    runtime.readiness.add(
        "discord", lambda: adapter.client is not None and adapter.client.is_ready()
    )
    try:
        await adapter.serve()
    except asyncio.CancelledError:
        raise
    finally:
        if adapter.client is not None and not adapter.client.is_closed():
            await adapter.client.close()
