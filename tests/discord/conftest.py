"""The real adapter and the real discord.py client, against the loopback fake."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.adapters import discord as adapter_module
from bot.app import Runtime, build_runtime
from bot.config import Secrets
from bot.core.clock import FakeClock
from tests.discord.fake_discord import FakeDiscord, FakeUser
from tests.support import write_library

TOKEN = base64.b64encode(str(FakeDiscord.APP).encode()).decode().rstrip("=") + ".fake.token"

ADMIN = FakeUser(11, "Ada")
MEMBER = FakeUser(22, "Bob")
ROLE_ADMIN = FakeUser(33, "Cy", roles=(77,))


def discord_config(
    fake: FakeDiscord,
    channels: list[int],
    *,
    read_replies: bool = True,
    guild_ids: list[int] | None = None,
    prompt_set: str = "mini",
) -> str:
    targets = ", ".join(f"discord:{c}" for c in channels)
    guilds = ", ".join(str(g) for g in ([fake.GUILD] if guild_ids is None else guild_ids))
    return f"""\
timezone: UTC
prompts_dir: ../prompts
admins:
  discord: ["{ADMIN.id}", "role:77"]
discord:
  guild_ids: [{guilds}]
  read_thread_replies: {str(read_replies).lower()}
  api_url: {fake.api_url}
  gateway_url: {fake.gateway_url}
schedules:
  - name: weekly
    prompt_set: {prompt_set}
    cron: "0 10 * * mon"
    channels: [{targets}]
"""


@dataclass
class Bot:
    """A running Discord adapter; ``restart()`` is a process restart on the same database."""

    fake: FakeDiscord
    config_path: Path
    database: str
    clock: FakeClock
    runtime: Runtime | None = None
    task: asyncio.Task | None = None
    channels: list[int] = field(default_factory=list)

    @property
    def adapter(self) -> adapter_module.DiscordAdapter:
        return self.runtime.dispatcher.platforms["discord"]  # type: ignore[return-value,union-attr]

    async def start(self) -> Bot:
        self.runtime = await build_runtime(
            self.config_path,
            clock=self.clock,
            secrets=Secrets(discord_bot_token=TOKEN),
            database=self.database,
        )
        sessions = self.fake.sessions
        self.task = asyncio.create_task(
            adapter_module.serve(self.runtime.ports, self.runtime.readiness)
        )
        # READY and GUILD_CREATE are sent together; events after them are handled in order.
        ready = asyncio.ensure_future(self.fake.wait_until(lambda: self.fake.sessions > sessions))
        await asyncio.wait([ready, self.task], return_when=asyncio.FIRST_COMPLETED)
        if self.task.done():
            ready.cancel()
            self.task.result()
        await ready
        return self

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.runtime is not None:
            await self.runtime.close()
        self.task = self.runtime = None

    async def restart(self) -> Bot:
        await self.stop()
        return await self.start()

    def configure(self, **changes) -> None:
        """Rewrite the config file (e.g. another ``guild_ids``) for the next start."""
        self.config_path.write_text(discord_config(self.fake, self.channels, **changes))

    async def replies(self, token: str, n: int = 1) -> list[str]:
        """The first ``n`` follow-up texts the bot sent for an interaction."""
        await self.fake.wait_until(lambda: len(self.fake.followup_texts(token)) >= n)
        return self.fake.followup_texts(token)

    async def open_round(self, channel: int, prompt: str = "alpha") -> dict:
        token = await self.fake.slash(ADMIN, channel, "now", prompt_id=prompt)
        await self.replies(token)
        return await self.fake.wait_until(lambda: self.round_message(channel))

    def round_message(self, channel: int) -> dict | None:
        found = [m for m in self.fake.channel_messages(channel) if m["embeds"]]
        return found[-1] if found else None


@pytest.fixture
async def fake():
    f = await FakeDiscord().start()
    yield f
    await f.stop()


async def make_bot(
    tmp_path: Path,
    fake: FakeDiscord,
    *,
    read_replies: bool = True,
    n_channels: int = 2,
    guild_ids: list[int] | None = None,
    sets: dict[str, str] | None = None,
) -> Bot:
    channels = [fake.add_channel(f"team-{i}") for i in range(n_channels)]
    name = next(iter(sets)) if sets else "mini"
    config = discord_config(
        fake, channels, read_replies=read_replies, guild_ids=guild_ids, prompt_set=name
    )
    path = write_library(tmp_path, config, sets)
    clock = FakeClock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    bot = Bot(fake, path, f"sqlite+aiosqlite:///{tmp_path / 'rt.db'}", clock, channels=channels)
    return await bot.start()


@pytest.fixture
async def bot(tmp_path, fake):
    b = await make_bot(tmp_path, fake)
    yield b
    await b.stop()
