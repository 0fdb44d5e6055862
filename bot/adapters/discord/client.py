"""The discord.py client and what it is set up with: the intents and permissions the
bot asks for, the ``/discuss`` command tree and its hash, the persistent "Share your
thoughts" button, and the endpoints (Discord, a compatible service, or a test fake).
What they receive goes to the adapter through ``Receiver``.

``import discord`` below is the discord.py library (absolute import), not this package.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Awaitable
from typing import Any, Protocol

import discord
import yarl
from discord import app_commands

from bot.adapters.discord.embeds import shorten
from bot.adapters.discord.forms import ANSWER_LIMIT
from bot.config import DiscordSettings
from bot.core import commands as core_commands
from bot.core.events import RoundPost, TypedAnswer
from bot.core.ports import Ports

NO_MENTIONS = discord.AllowedMentions.none()
# Message Content is the only privileged intent we may ask for; Discord closes with 4014
# when it is requested but not switched on in the Developer Portal.
PORTAL_SWITCH = (
    "Developer Portal → your application → Bot → Privileged Gateway Intents → "
    "MESSAGE CONTENT INTENT"
)


def bot_permissions() -> discord.Permissions:
    """The minimal permissions the bot needs (docs/discord.md says why for each)."""
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


def make_intents(read_thread_replies: bool, *, message_content: bool = True) -> discord.Intents:
    """Only what is used: GUILDS (channels, threads); thread replies need GUILD_MESSAGES,
    and their text the privileged MESSAGE_CONTENT. On a large server every message is a
    gateway event with GUILD_MESSAGES, so it is asked for only when replies are read."""
    intents = discord.Intents.none()
    intents.guilds = True
    if read_thread_replies:
        intents.guild_messages = True
        intents.message_content = message_content
    return intents


class Receiver(Protocol):
    """What the client, its ``/discuss`` commands and the button hand their work to: the
    adapter (``DiscordAdapter``), which alone turns it into events for the core."""

    ports: Ports

    async def sync_commands(self, client: RoundtableClient) -> None: ...

    async def guarded(self, interaction: discord.Interaction, work: Awaitable[None]) -> None: ...

    async def on_tree_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None: ...

    async def run_command(
        self, interaction: discord.Interaction, text: str, answer: TypedAnswer | None = None
    ) -> None: ...

    async def open_form(
        self, interaction: discord.Interaction, round_id: int, anon: bool
    ) -> None: ...

    async def on_form_submit(self, interaction: discord.Interaction, custom_id: str) -> None: ...

    async def on_message(self, message: discord.Message) -> None: ...

    async def on_raw_edit(self, payload: discord.RawMessageUpdateEvent) -> None: ...

    async def on_raw_delete(self, payload: discord.RawMessageDeleteEvent) -> None: ...


class AnswerButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"rt:answer:(?P<round_id>[0-9]+)(?P<anon>:anon)?",
):
    """The persistent "Share your thoughts" button.

    The round id lives in the ``custom_id``, so a button on a round posted before a
    restart still works: nothing about it is kept in memory. Rounds posted before the
    form had its "anonymously" checkbox carry a second button (``…:anon``); it still
    opens the form, with the checkbox ticked.
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
        adapter: Receiver = interaction.client.adapter  # type: ignore[attr-defined]
        await adapter.guarded(
            interaction, adapter.open_form(interaction, self.round_id, self.anonymous)
        )


def round_view(post: RoundPost) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(AnswerButton(post.round_id))
    return view


class RoundtableClient(discord.Client):
    """A discord.py client that hands everything to the adapter."""

    def __init__(self, adapter: Receiver, *, intents: discord.Intents):
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
        self.tree.on_error = adapter.on_tree_error  # type: ignore[method-assign]

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
                await self.adapter.guarded(
                    interaction, self.adapter.on_form_submit(interaction, custom_id)
                )


class DiscussGroup(app_commands.Group):
    """``/discuss``, registered with ``contexts`` (guilds only) and ``integration_types``
    (installed on a server), without the deprecated ``dm_permission`` discord.py adds."""

    def to_dict(self, tree: app_commands.CommandTree) -> dict[str, Any]:  # type: ignore[override]
        payload = super().to_dict(tree)
        payload.pop("dm_permission", None)
        return payload


def build_discuss_group(adapter: Receiver) -> app_commands.Group:
    """``/discuss <subcommand>``: each one becomes the core's command text."""
    group = DiscussGroup(
        name="discuss",
        description="Roundtable: recurring discussions",
        allowed_contexts=app_commands.AppCommandContext(guild=True),
        allowed_installs=app_commands.AppInstallationType(guild=True),
    )

    async def prompt_ids(_: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        ids = adapter.ports.library.current.all_prompt_ids()
        hits = [i for i in ids if current.lower() in i.lower()]
        return [app_commands.Choice(name=i, value=i) for i in hits[:25]]

    def simple(name: str, description: str) -> None:
        async def run(interaction: discord.Interaction) -> None:
            await adapter.run_command(interaction, name)

        group.add_command(app_commands.Command(name=name, description=description, callback=run))

    for spec in core_commands.SPECS:
        if spec.name not in ("now", "preview", "answer", "forget-me"):
            simple(spec.name, shorten(spec.summary, 100))

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

    @group.command(name="answer", description="Answer the open round here")
    @app_commands.describe(
        text="Your answer",
        question="Which question (number)",
        anonymous="Store it without your name",
    )
    async def answer(
        interaction: discord.Interaction,
        text: app_commands.Range[str, 1, ANSWER_LIMIT],
        question: app_commands.Range[int, 1, 50] | None = None,
        anonymous: bool = False,
    ) -> None:
        # the typed options are the answer: the text is never re-parsed as a command
        await adapter.run_command(interaction, "answer", TypedAnswer(text, question, anonymous))

    @group.command(name="forget-me", description="Delete all your answers (asks first)")
    @app_commands.describe(confirm="True: delete them now (default: explain what goes)")
    async def forget_me(interaction: discord.Interaction, confirm: bool = False) -> None:
        await adapter.run_command(interaction, "forget-me confirm" if confirm else "forget-me")

    return group


def tree_hash(client: RoundtableClient, guild_ids: list[int]) -> str:
    """What we register and where: the commands, the scope and the application."""
    payload = {
        "commands": [c.to_dict(client.tree) for c in client.tree.get_commands()],
        "scope": sorted(guild_ids) or "global",
        "application": client.application_id,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


_COMMAND_KEYS = ("name", "description", "type", "options", "default_member_permissions", "nsfw")
_OPTION_KEYS = (
    "name", "description", "type", "required", "autocomplete", "choices", "options",
    "min_value", "max_value", "min_length", "max_length", "channel_types",
)  # fmt: skip


def comparable_commands(commands: list[dict], *, global_scope: bool) -> list[dict]:
    """Commands as Discord reports them or as we send them, reduced to what we set, with
    Discord's defaults filled in, so the two compare equal when nothing changed."""

    def option(o: dict) -> dict:
        out = {k: o.get(k) for k in _OPTION_KEYS}
        out["required"] = bool(out["required"])
        out["autocomplete"] = bool(out["autocomplete"])
        out["options"] = [option(x) for x in o.get("options") or []]
        out["choices"] = o.get("choices") or []
        return {k: v for k, v in out.items() if v not in (None, [])}

    result = []
    for c in commands:
        out = {k: c.get(k) for k in _COMMAND_KEYS}
        out["type"] = out["type"] or 1
        out["nsfw"] = bool(out["nsfw"])
        perms = out["default_member_permissions"]
        out["default_member_permissions"] = None if perms is None else str(perms)
        out["options"] = [option(x) for x in c.get("options") or []]
        if global_scope:  # Discord keeps contexts and installs for global commands only
            out["contexts"] = sorted(c.get("contexts") or [])
            out["integration_types"] = sorted(c.get("integration_types") or [])
        result.append(out)
    return sorted(result, key=lambda c: c["name"])
