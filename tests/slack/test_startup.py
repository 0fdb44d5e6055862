"""Start-up: a wrong token is one line naming SLACK_BOT_TOKEN, auth.test runs once at
start, and ``slack.host`` picks the listening address (issue 12, defects 6 and 7)."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from bot.adapters import StartupError
from bot.adapters.slack import SlackAdapter
from bot.config import Secrets, SlackSettings
from tests.slack.conftest import CONFIG, Sleeps, make_runtime
from tests.support import REPO, write_library


async def test_a_wrong_token_stops_start_with_one_line_naming_the_variable(
    tmp_path, sqlite_url, fake
):
    fake.auth_error = "invalid_auth"
    runtime = await make_runtime(tmp_path, sqlite_url, fake)
    adapter = SlackAdapter(runtime.ports, sleep=Sleeps())
    try:
        with pytest.raises(StartupError) as raised:
            await adapter.start(host="127.0.0.1", port=0)
    finally:
        await adapter.stop()
        await runtime.close()
    message = str(raised.value)
    assert "SLACK_BOT_TOKEN" in message and "invalid_auth" in message and "\n" not in message


async def test_a_wrong_app_token_in_socket_mode_is_one_line_naming_the_variable(
    tmp_path, sqlite_url, fake
):
    fake.fail("apps.connections.open", status=200, error="invalid_auth")
    secrets = Secrets(slack_bot_token="xoxb-t", slack_app_token="xapp-wrong")
    runtime = await make_runtime(tmp_path, sqlite_url, fake, mode="socket", secrets=secrets)
    adapter = SlackAdapter(runtime.ports, sleep=Sleeps())
    try:
        with pytest.raises(StartupError, match="SLACK_APP_TOKEN"):
            await adapter.start(host="127.0.0.1", port=0)
    finally:
        await adapter.stop()
        await runtime.close()


async def test_roundtable_run_with_a_wrong_token_exits_non_zero_with_one_line(tmp_path, fake):
    fake.auth_error = "invalid_auth"
    config = CONFIG.format(admin="UADMIN", mode="http", port=0, api_url=fake.api_url)
    path = write_library(tmp_path, config=config.replace("port: 0", "port: 3999"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DISCORD_"))}
    env |= {
        "SLACK_BOT_TOKEN": "xoxb-wrong",
        "SLACK_SIGNING_SECRET": "s",
        "ROUNDTABLE_DATABASE_URL": f"sqlite:///{tmp_path / 'rt.db'}",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "--config",
        str(path),
        "run",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    lines = err.decode().strip().splitlines()
    assert process.returncode != 0
    problems = [line for line in lines if " INFO " not in line]  # progress logs aside
    assert len(problems) == 1, lines
    assert "SLACK_BOT_TOKEN" in problems[0] and "invalid_auth" in problems[0]
    assert "xoxb-wrong" not in err.decode() + out.decode()  # the secret itself never shows


async def test_auth_test_runs_at_start_not_inside_the_first_ack(slack):
    assert len(slack.fake.calls_to("auth.test")) == 1  # during start()
    gate = slack.fake.hold("auth.test")  # any call now would hold up the ack
    try:
        async with asyncio.timeout(5):
            assert await slack.command("help") == 200
        await slack.settle()
    finally:
        gate.set()
    assert len(slack.fake.calls_to("auth.test")) == 1
    assert "Roundtable commands" in slack.responses()[-1]["text"]


def test_slack_host_defaults_to_every_interface():
    assert SlackSettings().host == "0.0.0.0"


async def test_slack_host_sets_the_listening_address(tmp_path, sqlite_url, fake):
    runtime = await make_runtime(tmp_path, sqlite_url, fake, extra="  host: 127.0.0.1\n")
    assert runtime.library.current.config.slack.host == "127.0.0.1"
    adapter = SlackAdapter(runtime.ports, sleep=Sleeps())
    try:
        await adapter.start(port=0)  # no host passed: the config decides
        assert adapter._runner.addresses[0][0] == "127.0.0.1"
    finally:
        await adapter.stop()
        await runtime.close()
