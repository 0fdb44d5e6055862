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
import re
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

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
    TypedAnswer,
)
from bot.core.inbox import NOT_SAVED
from bot.core.ports import Ports
from bot.health import Readiness

log = logging.getLogger(__name__)

PLATFORM = "discord"
TREE_HASH_KEY = "discord.command_tree_hash"
MODAL_SLOTS = 5  # top-level components per modal (Label, TextDisplay)
THREAD_EXISTS = 160004  # Discord's error code: this message already has a thread
MISSING_ACCESS, MISSING_PERMISSIONS, UNKNOWN_CHANNEL = 50001, 50013, 10003
# Discord's limits (Message resource → Embed limits; Create Message → content)
MESSAGE_LIMIT = 2000  # characters of content per message
TITLE_LIMIT, DESCRIPTION_LIMIT = 256, 4096
FIELD_VALUE_LIMIT, FIELDS_PER_EMBED = 1024, 25  # field names are ours and short
EMBEDS_TOTAL = 6000  # characters across all embeds of one message
EMBEDS_PER_MESSAGE = 10
# Modal components (Components reference → Label, Text Display, Text Input)
LABEL_LIMIT, LABEL_DESCRIPTION_LIMIT, TEXT_DISPLAY_LIMIT, MODAL_TITLE_LIMIT = 45, 100, 4000, 45
ANSWER_LIMIT = 4000  # a Text Input's max_length
# Threads that carry no thread: answers' re-posts and the digest go to the channel, as
# replies to the round's message. Stored as the round's thread_ref, so the round is never
# recorded with its message id as a thread (which would send them to /channels/<msg id>).
REPLY_PREFIX = "reply:"
POINTED_MEMORY = 4096  # (thread, person) pairs told once that their reply cannot be read
NO_MENTIONS = discord.AllowedMentions.none()
# Message Content is the only privileged intent we may ask for; Discord closes with 4014
# when it is requested but not switched on in the Developer Portal.
PORTAL_SWITCH = (
    "Developer Portal → your application → Bot → Privileged Gateway Intents → "
    "MESSAGE CONTENT INTENT"
)
BUTTON_HINT = "Or press “Share your thoughts” under the round's message to answer in a form."
FAILED = (
    "Sorry, something went wrong on our side, so this was not done and nothing was saved. "
    "Please try again in a minute; if it keeps failing, tell an admin (the bot's log says why)."
)
NOT_SHOWN = (
    "That was done, but showing the result failed. `/discuss results` shows the answers "
    "saved so far."
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


def escape(text: str) -> str:
    """User text in our layout: no markdown that breaks it (mentions are off anyway)."""
    return discord.utils.escape_markdown(text, as_needed=False)


def _safe_cut(text: str, cut: int) -> int:
    """Move ``cut`` left until the part before it does not end inside an escape (``\\x``)."""
    while cut > 1:
        run = len(text[:cut]) - len(text[:cut].rstrip("\\"))
        if run % 2 == 0:
            break
        cut -= 1
    return cut


def chunks(text: str, limit: int) -> list[str]:
    """Split long text at paragraph, line or word breaks, never losing a character and
    never ending a part on the lone backslash of an escape sequence."""
    out: list[str] = []
    while len(text) > limit:
        cut = -1
        for sep in ("\n\n", "\n", " "):
            found = text.rfind(sep, 0, limit + 1)
            if found > limit // 2:
                cut = found
                break
        if cut <= 0:
            cut = limit
        cut = _safe_cut(text, cut)
        out.append(text[:cut].rstrip("\n"))
        rest = text[cut:]
        text = rest[1:] if rest[:1] == " " else rest.lstrip("\n")
    if text or not out:
        out.append(text)
    return out


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- rendering ----------------------------------------------------------------------------


def how_to_answer(reads_replies: bool, anonymous_allowed: bool, questions: int = 2) -> str:
    """The round's instructions: never invite an answer the bot cannot read."""
    if reads_replies:
        numbering = " (start with `2:` to answer question 2)" if questions > 1 else ""
        text = (
            f"Reply in this message's thread{numbering}, press **Share your thoughts**, "
            "or use `/discuss answer`."
        )
    else:
        text = (
            "Press **Share your thoughts** below or use `/discuss answer` to answer; "
            "the bot does not read replies in the thread, so they are not collected."
        )
    if anonymous_allowed:
        text += " You can choose to answer anonymously."
    return text


class _Packer:
    """Fills embeds and messages in order, each within Discord's embed limits."""

    def __init__(self, reserve: int):
        self.messages: list[list[discord.Embed]] = [[]]
        self.reserve = reserve  # kept free in the first message (its footer)

    def room(self) -> int:
        used = sum(len(e) for e in self.messages[-1])
        return EMBEDS_TOTAL - used - (self.reserve if len(self.messages) == 1 else 0)

    def new_embed(self, size: int) -> discord.Embed:
        full = len(self.messages[-1]) >= EMBEDS_PER_MESSAGE or self.room() < size
        if full and self.messages[-1]:
            self.messages.append([])
        embed = discord.Embed(colour=discord.Colour.blurple())
        self.messages[-1].append(embed)
        return embed

    def field(self, name: str, value: str) -> None:
        current = self.messages[-1][-1] if self.messages[-1] else None
        size = len(name) + len(value)
        if current is None or len(current.fields) >= FIELDS_PER_EMBED or self.room() < size:
            current = self.new_embed(size)
        current.add_field(name=name, value=value, inline=False)


def round_messages(post: RoundPost, reads_replies: bool = True) -> list[list[discord.Embed]]:
    """A round as one or more messages of embeds: the summary in descriptions, one field
    per question (a question longer than a field continues in the next), the instructions
    last; nothing is cut, and every message stays within Discord's limits."""
    prompt = post.prompt
    title = _shorten(("Preview: " if post.preview else "") + prompt.title, TITLE_LIMIT)
    # the head embed (title, a full description, footer) must fit in 6,000 characters
    footer = _shorten(
        f"Source: {prompt.source}", EMBEDS_TOTAL - DESCRIPTION_LIMIT - TITLE_LIMIT - 64
    )
    if not post.preview:
        footer += f" · {post.round_key}"  # lets find_post recognise the round after a crash
    packer = _Packer(reserve=len(footer))
    parts = chunks(escape(prompt.summary), DESCRIPTION_LIMIT) if prompt.summary else []
    head = packer.new_embed(len(title) + (len(parts[0]) if parts else 0))
    head.title, head.url = title, prompt.url
    if parts:
        head.description = parts[0]
    for part in parts[1:]:
        packer.new_embed(len(part)).description = part
    for i, (text, _) in enumerate(prompt.questions, 1):
        for j, piece in enumerate(chunks(escape(text), FIELD_VALUE_LIMIT)):
            packer.field(f"Question {i}" + (" (continued)" if j else ""), piece)
    packer.field(
        "How to answer", how_to_answer(reads_replies, post.anonymous_allowed, len(prompt.questions))
    )
    packer.messages[0][-1].set_footer(text=footer)
    return packer.messages


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
        adapter: DiscordAdapter = interaction.client.adapter  # type: ignore[attr-defined]
        await adapter.guarded(
            interaction, adapter.open_form(interaction, self.round_id, self.anonymous)
        )


def round_view(post: RoundPost) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(AnswerButton(post.round_id))
    return view


@dataclass(frozen=True)
class FormInput:
    """One text box of the form: the questions it answers, its label and description."""

    custom_id: str
    numbers: tuple[int, ...]
    label: str
    description: str


@dataclass(frozen=True)
class FormLayout:
    """What the form shows: the questions in full (when a label cannot hold them), the
    text boxes, and whether it offers the "anonymously" checkbox."""

    questions_text: tuple[str, ...]
    inputs: tuple[FormInput, ...]
    anonymous_box: bool


def form_layout(questions: tuple[tuple[str, str], ...], anonymous_allowed: bool) -> FormLayout:
    """Fit the questions into a modal's five components, showing each question in full.

    Short questions (and up to five components in all) get a labelled box each, the
    question as the label's description. Otherwise a Text Display lists every question
    in full first; questions then get a box each while boxes remain, and the last box
    takes the rest, each answer starting with its question's number.
    """
    n = len(questions)
    checkbox = 1 if anonymous_allowed else 0
    texts = [text for text, _ in questions]
    listed: list[str] = []
    fits = all(len(t) <= LABEL_DESCRIPTION_LIMIT for t in texts)
    if not fits or n + checkbox > MODAL_SLOTS:
        lines = "\n".join(f"**{i}.** {escape(t)}" for i, t in enumerate(texts, 1))
        listed = chunks(lines, TEXT_DISPLAY_LIMIT)[: MODAL_SLOTS - checkbox - 1]
    boxes = max(1, MODAL_SLOTS - checkbox - len(listed))
    inputs: list[FormInput] = []
    own = n if n <= boxes else boxes - 1
    for i in range(1, own + 1):
        # in full, or (when listed in full above) its beginning, to tell the boxes apart
        description = _shorten(texts[i - 1], LABEL_DESCRIPTION_LIMIT)
        inputs.append(FormInput(f"q{i}", (i,), f"Question {i}", description))
    if own < n:
        first = own + 1
        inputs.append(
            FormInput(
                "rest",
                tuple(range(first, n + 1)),
                f"Questions {first}–{n}",
                _shorten(
                    f'Start each answer on a new line with its number, e.g. "{n}: …"; '
                    f"text before any number answers {first}",
                    LABEL_DESCRIPTION_LIMIT,
                ),
            )
        )
    return FormLayout(tuple(listed), tuple(inputs), bool(checkbox))


def form_items(layout: FormLayout, anonymous: bool) -> list[discord.ui.Item]:
    """The modal's components (discord.py 2.6+: Label, TextDisplay; 2.7: Checkbox)."""
    items: list[discord.ui.Item] = [discord.ui.TextDisplay(text) for text in layout.questions_text]
    for box in layout.inputs:
        field = discord.ui.TextInput(
            custom_id=box.custom_id,
            style=discord.TextStyle.paragraph,
            required=False,
            max_length=ANSWER_LIMIT,
        )
        items.append(discord.ui.Label(text=box.label, description=box.description, component=field))
    if layout.anonymous_box:
        items.append(
            discord.ui.Label(
                text="Share anonymously",
                description="Your name is not stored with these answers; nobody can see it was you.",
                component=discord.ui.Checkbox(custom_id="anonymous", default=anonymous),
            )
        )
    return items


def split_rest(text: str, first: int, last: int) -> dict[int, str]:
    """The shared box: a line starting with "N:" (first ≤ N ≤ last) starts the answer to
    question N; every other line, blank lines and paragraphs included, stays with the
    answer above it (text before any number answers ``first``)."""
    parts: dict[int, list[str]] = {}
    current = first
    for line in text.split("\n"):
        number, rest = core_commands.split_numbered(line)
        if number is not None and first <= number <= last:
            current = number
            if parts.get(current):
                parts[current].append("")
            parts.setdefault(current, []).append(rest)
        else:
            parts.setdefault(current, []).append(line)
    joined = {n: "\n".join(lines).strip() for n, lines in parts.items()}
    return {n: t for n, t in sorted(joined.items()) if t}


def parse_form(components: list[dict], n_questions: int) -> tuple[dict[int, str], bool | None]:
    """Submitted modal components → (answers keyed by question number, the checkbox).

    The checkbox is None when the form had none. Accepts Label-wrapped inputs and the
    older Action Rows alike (a form opened before an upgrade is still saved).
    """
    values: dict[str, Any] = {}

    def walk(items: list[dict]) -> None:
        for item in items:
            if "components" in item:
                walk(item["components"])
            elif "component" in item:  # a Label (type 18)
                walk([item["component"]])
            elif "custom_id" in item:
                values[item["custom_id"]] = item.get("value")

    walk(components)
    answers: dict[int, str] = {}
    for key, value in values.items():
        if key.startswith("q") and key[1:].isdigit() and isinstance(value, str) and value.strip():
            answers[int(key[1:])] = value
    rest = values.get("rest")
    if isinstance(rest, str) and rest.strip():
        # the shared box takes the questions after the last box of their own
        first = (
            max((int(k[1:]) for k in values if k.startswith("q") and k[1:].isdigit()), default=0)
            + 1
        )
        for number, text in split_rest(rest, first, n_questions).items():
            answers[number] = (answers[number] + "\n\n" + text) if number in answers else text
    anonymous = values.get("anonymous")
    return answers, (bool(anonymous) if anonymous is not None else None)


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


def build_discuss_group(adapter: DiscordAdapter) -> app_commands.Group:
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


def _comparable(commands: list[dict], *, global_scope: bool) -> list[dict]:
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


# ---- the adapter --------------------------------------------------------------------------


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
        if _comparable(remote, global_scope=True) != _comparable(wanted, global_scope=True):
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
            if _comparable(remote, global_scope=False) != _comparable(wanted, global_scope=False):
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
            title=_shorten("Share: " + round_.title, MODAL_TITLE_LIMIT),
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
                name=_shorten(title, 100), auto_archive_duration=10080
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


async def serve(ports: Ports, readiness: Readiness) -> None:
    """Run the Discord adapter until cancelled (started by ``bot.app.run``)."""
    adapter = DiscordAdapter(ports)
    readiness.add("discord", lambda: adapter.client is not None and adapter.client.is_ready())
    try:
        await adapter.serve()
    except asyncio.CancelledError:
        raise
    finally:
        if adapter.client is not None and not adapter.client.is_closed():
            await adapter.client.close()
