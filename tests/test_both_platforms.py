"""Slack and Discord in one process: ``python -m bot run`` with both sets of tokens.

The bot runs as a real subprocess, exactly as a user starts it (config/ and prompts/ in
the working directory, the database from ``ROUNDTABLE_DATABASE_URL``, credentials from
the environment), against the loopback fakes of Slack's Web API and of Discord's REST
API and gateway, which run here in the test's event loop. ``/discuss now`` on each
platform posts one round in that platform's channel; SIGTERM stops the bot cleanly.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

from bot.storage.store import Store
from tests.discord.conftest import ADMIN as DISCORD_ADMIN
from tests.discord.fake_discord import FakeDiscord
from tests.slack.conftest import ADMIN as SLACK_ADMIN
from tests.slack.conftest import command_form, sign
from tests.slack.fake_slack import FakeSlack
from tests.support import REPO, write_library

SLACK_BOT_TOKEN = "xoxb-both-platforms-e2e-token"
SLACK_SIGNING_SECRET = "both-platforms-signing-secret"
# A Discord bot token's first segment is the base64 of the application id.
DISCORD_BOT_TOKEN = (
    base64.b64encode(str(FakeDiscord.APP).encode()).decode().rstrip("=")
    + ".both-platforms.e2e-secret"
)
SLACK_CHANNEL = "C1"
STARTUP_LIMIT = 20.0  # seconds; polling stops as soon as both platforms are up
WORK_LIMIT = 10.0
EXIT_LIMIT = 10.0

# No schedules: the scheduler has nothing to catch up, so the only rounds are ours.
CONFIG = """\
timezone: UTC
prompts_dir: ../prompts
default_prompt_set: mini
admins:
  slack: [{slack_admin}]
  discord: ["{discord_admin}"]
slack:
  mode: http
  port: {slack_port}
  api_url: {slack_api}
discord:
  guild_ids: [{guild}]
  api_url: {discord_api}
  gateway_url: {discord_gateway}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bot_environment(database_url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "DISCORD_", "ROUNDTABLE_"))
    }
    pythonpath = [str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env.update(
        PYTHONPATH=os.pathsep.join(pythonpath),
        PYTHONUNBUFFERED="1",
        ROUNDTABLE_DATABASE_URL=database_url,
        SLACK_BOT_TOKEN=SLACK_BOT_TOKEN,
        SLACK_SIGNING_SECRET=SLACK_SIGNING_SECRET,
        DISCORD_BOT_TOKEN=DISCORD_BOT_TOKEN,
    )
    return env


class BotProcess:
    """``python -m bot run`` in ``root``; its output goes to files (no pipe can fill up)."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.stderr_path, self.stdout_path = root / "bot.stderr", root / "bot.stdout"
        with self.stderr_path.open("wb") as stderr, self.stdout_path.open("wb") as stdout:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "run"],
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,  # tokens are set, so no console reads stdin
                stdout=stdout,
                stderr=stderr,
            )

    def output(self) -> str:
        return self.stderr_path.read_text() + self.stdout_path.read_text()

    def problem(self, what: str) -> str | None:
        """Why waiting for ``what`` is pointless: the bot has exited."""
        code = self.proc.poll()
        if code is None:
            return None
        return f"the bot exited ({code}) before {what}:\n{self.output()}"

    async def until(self, check, what: str, limit: float):
        """Poll ``check()`` (sync or async) every 50 ms while the fakes keep serving."""
        deadline = time.monotonic() + limit
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
            if problem := self.problem(what):
                raise AssertionError(problem)
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.output()}")
            await asyncio.sleep(0.05)

    async def terminate(self, limit: float) -> int:
        """SIGTERM, then wait without blocking the event loop the fakes run in."""
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + limit
        while (code := self.proc.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the bot did not exit within {limit}s of SIGTERM:\n{self.output()}"
                )
            await asyncio.sleep(0.05)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def test_slack_and_discord_run_together_in_one_process(tmp_path):
    slack = FakeSlack()
    await slack.start()
    discord = await FakeDiscord().start()
    discord_channel = discord.add_channel("team")
    slack_port = free_port()
    write_library(
        tmp_path,
        CONFIG.format(
            slack_admin=SLACK_ADMIN,
            discord_admin=DISCORD_ADMIN.id,
            slack_port=slack_port,
            slack_api=slack.api_url,
            guild=discord.GUILD,
            discord_api=discord.api_url,
            discord_gateway=discord.gateway_url,
        ),
    )
    database = f"sqlite+aiosqlite:///{tmp_path / 'roundtable.db'}"
    bot_url = f"http://127.0.0.1:{slack_port}"
    bot: BotProcess | None = None
    try:
        bot = BotProcess(tmp_path, bot_environment(database))
        async with aiohttp.ClientSession() as http:

            async def slack_healthy() -> bool:
                try:
                    async with http.get(f"{bot_url}/healthz") as r:
                        return r.status == 200
                except aiohttp.ClientError:
                    return False

            # Both adapters start in the one process, on its one event loop.
            await bot.until(slack_healthy, "Slack's /healthz", STARTUP_LIMIT)
            await bot.until(
                lambda: discord.sessions >= 1 and discord.connected,
                "a Discord gateway session",
                STARTUP_LIMIT,
            )
            assert len(discord.identifies) == 1
            assert discord.identifies[0]["token"] == DISCORD_BOT_TOKEN
            assert slack.calls_to("auth.test"), "the Slack adapter never checked its token"

            # Slack: a correctly signed /discuss now, as Slack would send it.
            body = urlencode(command_form(slack, "now", SLACK_ADMIN, SLACK_CHANNEL, 1))
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                **sign(body, secret=SLACK_SIGNING_SECRET),
            }
            async with http.post(f"{bot_url}/slack/events", data=body, headers=headers) as r:
                assert r.status == 200, await r.text()

            # Discord: the /discuss now application command over the gateway.
            token = await discord.slash(DISCORD_ADMIN, discord_channel, "now")

            # Each platform's round is out. On Slack the round is the whole answer to
            # /discuss now; on Discord the deferred interaction is also followed up.
            await bot.until(lambda: slack.posted(SLACK_CHANNEL), "the Slack round", WORK_LIMIT)
            await bot.until(
                lambda: discord.channel_messages(discord_channel) and discord.followup_texts(token),
                "the Discord round and the follow-up to /discuss now",
                WORK_LIMIT,
            )

        # SIGTERM stops both adapters and the process exits cleanly, promptly.
        code = await bot.terminate(EXIT_LIMIT)
        assert code == 0, bot.output()
    finally:
        if bot is not None:
            bot.kill()
        await discord.stop()
        await slack.close()

    # The bot drained its work before exiting: these are all the posts there will be.
    slack_posts = slack.calls_to("chat.postMessage")
    assert [p["channel"] for p in slack_posts] == [SLACK_CHANNEL]
    (slack_round,) = slack.posted(SLACK_CHANNEL)
    assert slack_round["blocks"][0]["text"]["text"] == "Alpha article"
    assert slack_round["metadata"]["event_type"] == "roundtable_round"

    discord_posts = discord.sent("POST", r"/channels/\d+/messages")
    assert [p.path for p in discord_posts] == [f"/channels/{discord_channel}/messages"]
    (discord_round,) = discord.channel_messages(discord_channel)
    (embed,) = discord_round["embeds"]
    assert embed["title"] == "Alpha article"
    assert discord.followup_texts(token) == ["Done."]

    # One process, one database: both rounds are in it, each posted in its own channel.
    store = await Store.open(database)
    try:
        rounds = await store.rounds()
    finally:
        await store.close()
    assert sorted((r.channel, r.status, r.message_ref) for r in rounds) == sorted(
        [
            (f"slack:{SLACK_CHANNEL}", "posted", slack_round["ts"]),
            (f"discord:{discord_channel}", "posted", discord_round["id"]),
        ]
    )

    logs = bot.output()
    assert "Slack adapter ready (HTTP mode" in logs
    assert "Traceback" not in logs, logs
    for secret in (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, DISCORD_BOT_TOKEN):
        assert secret not in logs
    assert DISCORD_BOT_TOKEN.split(".", 1)[1] not in logs  # not even part of it
