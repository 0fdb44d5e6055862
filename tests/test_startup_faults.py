"""Start-up faults print ONE line that says what is wrong and what to do, and exit with
a documented code (``bot.faults.ExitCode``, docs/exit-codes.md) — never a traceback.

Run as a user sees it: ``python -m bot …`` in a subprocess. The PostgreSQL faults use
the shared server only to be refused by it (a closed port, a database or role that does
not exist); nothing here stops or changes it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid

import pytest

from bot.faults import EXIT_CODES_HELP, ExitCode
from tests.conftest import PG_URL, _pg_reachable
from tests.support import MINI_CONFIG, REPO, write_library
from tests.test_cli import bot

SECRET_PASSWORD = "s3cr3t-pa55word"


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def roundtable(*args: str, cwd, env: dict[str, str] | None = None, stdin: str = ""):
    """The CLI with no platform or Roundtable variables from this shell leaking in."""
    return bot(
        *args,
        cwd=cwd,
        env=env,
        stdin=stdin,
        drop=("SLACK_", "DISCORD_", "ROUNDTABLE_"),
        timeout=90,
    )


def the_one_line(result, level: str = "ERROR") -> str:
    """The single line of the fault: no traceback, exactly one error line."""
    err = result.stderr
    assert "Traceback" not in err and 'File "' not in err, err
    errors = [line for line in err.splitlines() if f" {level} " in f" {line} "]
    assert len(errors) == 1, err
    return errors[0]


@pytest.fixture
def site(tmp_path):
    """A valid library in a temp dir, with no schedules due."""
    write_library(tmp_path)
    return tmp_path


def pg(url_tail: str, user: str = "postgres") -> str:
    base = PG_URL.replace("postgresql+asyncpg://", "postgresql://").rsplit("@", 1)[1]
    host = base.split("/", 1)[0]
    return f"postgresql://{user}@{host}/{url_tail}"


@pytest.fixture
def need_pg():
    if problem := _pg_reachable():
        pytest.skip(f"PostgreSQL not reachable ({problem})")


# ---- the database -----------------------------------------------------------------------


def test_wrong_port(site):
    url = f"postgresql://postgres:{SECRET_PASSWORD}@127.0.0.1:{closed_port()}/roundtable"
    result = roundtable("run", cwd=site, env={"ROUNDTABLE_DATABASE_URL": url})
    assert result.returncode == ExitCode.DATABASE == 4
    line = the_one_line(result)
    assert "cannot connect to PostgreSQL at 127.0.0.1:" in line and "connection refused" in line
    assert "ROUNDTABLE_DATABASE_URL" in line
    assert SECRET_PASSWORD not in result.stderr + result.stdout


def test_missing_database(site, need_pg):
    name = f"rt_missing_{uuid.uuid4().hex[:8]}"
    result = roundtable("run", cwd=site, env={"ROUNDTABLE_DATABASE_URL": pg(name)})
    assert result.returncode == ExitCode.DATABASE
    line = the_one_line(result)
    assert f"the database '{name}' does not exist; create it (createdb {name})" in line


def test_bad_credentials(site, need_pg):
    url = pg("postgres", user=f"nobody_{uuid.uuid4().hex[:6]}:{SECRET_PASSWORD}")
    result = roundtable("run", cwd=site, env={"ROUNDTABLE_DATABASE_URL": url})
    assert result.returncode == ExitCode.DATABASE
    line = the_one_line(result)
    assert "refused the login" in line and "check the user and password" in line
    assert SECRET_PASSWORD not in result.stderr + result.stdout


def test_unknown_database_host(site):
    url = "postgresql://postgres@no-such-host.invalid/roundtable"
    result = roundtable("run", cwd=site, env={"ROUNDTABLE_DATABASE_URL": url})
    assert result.returncode == ExitCode.DATABASE
    assert "cannot find the database host 'no-such-host.invalid'" in the_one_line(result)


def test_unwritable_sqlite_directory(site):
    blocker = site / "a-file"
    blocker.write_text("not a folder")
    url = f"sqlite:///{blocker}/data/roundtable.db"
    result = roundtable("run", cwd=site, env={"ROUNDTABLE_DATABASE_URL": url})
    assert result.returncode == ExitCode.DATABASE
    # the anonymity key file beside the database is the first thing written there
    (line,) = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert f"{blocker}/data/roundtable.key: cannot read or create the key file" in line
    assert "Not a directory" in line


def test_a_file_that_is_not_a_sqlite_database(site):
    bogus = site / "bogus.db"
    bogus.write_text("this is not SQLite\n" * 100)
    result = roundtable("run", cwd=site, env={"ROUNDTABLE_DATABASE_URL": f"sqlite:///{bogus}"})
    assert result.returncode == ExitCode.DATABASE
    assert "is not a SQLite database file" in the_one_line(result)


def test_an_unusable_database_url_from_the_environment(site):
    result = roundtable("history", cwd=site, env={"ROUNDTABLE_DATABASE_URL": "mysql://x@y/z"})
    assert result.returncode == ExitCode.DATABASE
    assert "the database URL is not usable" in the_one_line(result)


def test_history_and_plan_report_database_faults_too(site):
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/roundtable"
    for command in ("history", "plan"):
        result = roundtable(command, cwd=site, env={"ROUNDTABLE_DATABASE_URL": url})
        assert result.returncode == ExitCode.DATABASE, command
        assert "connection refused" in the_one_line(result)


# ---- credentials and platforms -----------------------------------------------------------


def test_slack_token_without_signing_secret_or_app_token(site, tmp_path):
    env = {"SLACK_BOT_TOKEN": "xoxb-1-2-3", "ROUNDTABLE_DATABASE_URL": f"sqlite:///{tmp_path}/d"}
    result = roundtable("run", cwd=site, env=env)
    assert result.returncode == ExitCode.SETUP == 3
    line = the_one_line(result)
    assert "neither SLACK_APP_TOKEN (Socket Mode) nor SLACK_SIGNING_SECRET (HTTP mode)" in line
    assert "xoxb-1-2-3" not in result.stderr


def test_slack_app_token_without_bot_token(site, tmp_path):
    env = {"SLACK_APP_TOKEN": "xapp-1-2", "ROUNDTABLE_DATABASE_URL": f"sqlite:///{tmp_path}/d"}
    result = roundtable("run", cwd=site, env=env)
    assert result.returncode == ExitCode.SETUP
    assert "SLACK_BOT_TOKEN is not" in the_one_line(result)


@pytest.mark.parametrize(
    ("token", "hint"),
    [
        ("garbage", ""),
        ('"MTIzNDU2.abcdef.ghijklmnop"', "remove the spaces or quotes"),
        ("Bot MTIzNDU2.abcdef.ghijklmnop", "without 'Bot '"),
        ("MTIzNDU2.abcdef.ghijklmnop ", "remove the spaces or quotes"),
    ],
)
def test_malformed_discord_token_is_reported_as_malformed(site, tmp_path, token, hint):
    env = {"DISCORD_BOT_TOKEN": token, "ROUNDTABLE_DATABASE_URL": f"sqlite:///{tmp_path}/d"}
    result = roundtable("run", cwd=site, env=env)
    assert result.returncode == ExitCode.SETUP
    line = the_one_line(result)
    assert "DISCORD_BOT_TOKEN is malformed" in line and hint in line
    assert "not set" not in line and token not in result.stderr


def test_discord_unreachable(site, tmp_path):
    port = closed_port()
    config = site / "config" / "roundtable.yaml"
    config.write_text(
        MINI_CONFIG
        + f"discord:\n  api_url: http://127.0.0.1:{port}/api/v10\n"
        + f"  gateway_url: ws://127.0.0.1:{port}/\n"
    )
    token = "MTIzNDU2.abcdef.ghijklmnopqrstuvwxyz0123456"
    env = {"DISCORD_BOT_TOKEN": token, "ROUNDTABLE_DATABASE_URL": f"sqlite:///{tmp_path}/d"}
    result = roundtable("run", cwd=site, env=env)
    assert result.returncode == ExitCode.NETWORK == 5
    line = the_one_line(result)
    assert f"cannot reach Discord at 127.0.0.1:{port}" in line and "discord.api_url" in line
    assert token not in result.stderr


def test_slack_unreachable_in_json_log_format(site, tmp_path):
    port = closed_port()
    config = site / "config" / "roundtable.yaml"
    config.write_text(MINI_CONFIG + f"slack:\n  api_url: http://127.0.0.1:{port}/api/\n")
    env = {
        "SLACK_BOT_TOKEN": "xoxb-unreachable-token",
        "SLACK_SIGNING_SECRET": "signing-secret-value",
        "ROUNDTABLE_DATABASE_URL": f"sqlite:///{tmp_path}/d",
    }
    result = roundtable("--log-format", "json", "run", cwd=site, env=env)
    assert result.returncode == ExitCode.NETWORK
    records = [json.loads(line) for line in result.stderr.splitlines()]  # every line is JSON
    errors = [r for r in records if r["level"] == "error"]
    assert len(errors) == 1 and "cannot reach Slack at " in errors[0]["message"]
    assert f"127.0.0.1:{port}" in errors[0]["message"]
    assert "xoxb-unreachable-token" not in result.stderr
    assert "signing-secret-value" not in result.stderr


# ---- options and output ------------------------------------------------------------------


def test_a_bad_log_level_is_one_line(site):
    result = roundtable("--log-level", "LOUD", "validate", cwd=site)
    assert result.returncode == ExitCode.USAGE == 2
    assert result.stderr.splitlines() == [
        "roundtable: argument --log-level: 'LOUD' is not a log level; use DEBUG, INFO, "
        "WARNING or ERROR (see roundtable --help)"
    ]
    assert roundtable("--log-level", "debug", "validate", cwd=site).returncode == 0


def test_schema_into_a_folder_that_cannot_be_created(site):
    (site / "a-file").write_text("x")
    result = roundtable("schema", "--out", str(site / "a-file" / "schemas"), cwd=site)
    assert result.returncode == ExitCode.OUTPUT == 6
    line = the_one_line(result)
    assert f"cannot write {site}/a-file/schemas: Not a directory" in line


def test_plan_refuses_negative_days_and_unknown_channels(site):
    result = roundtable("plan", "--days", "-5", cwd=site)
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.splitlines() == [
        "roundtable plan: argument --days: -5 is not between 1 and 3650 days "
        "(see roundtable plan --help)"
    ]
    result = roundtable("plan", "--channel", "slack:NOPE", cwd=site)
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.splitlines() == [
        "--channel: no schedule posts in slack:NOPE (scheduled channels: console:general)"
    ]
    result = roundtable("plan", "--channel", "discord:abc", cwd=site)
    assert result.returncode == ExitCode.USAGE and "is not a channel" in result.stderr


def test_preview_into_a_closed_pipe_is_quiet(site):
    """``roundtable preview | head``: the reader leaves early; no traceback, exit 141."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "preview"],
        cwd=site,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("ROUNDTABLE_")},
    )
    process.stdout.close()  # like `head` exiting before we write
    _, err = process.communicate(timeout=60)
    assert process.returncode == ExitCode.BROKEN_PIPE == 141
    assert err == b""


def test_unexpected_errors_are_one_log_line_in_the_configured_format(monkeypatch, capsys):
    from bot import cli

    secret = "xoxb-leaky-token-0123456789"
    monkeypatch.setenv("SLACK_BOT_TOKEN", secret)

    def broken(_args):
        raise ValueError(f"a bug that mentions {secret}")

    monkeypatch.setattr(cli, "cmd_validate", broken)
    code = cli.main(
        ["--log-format", "json", "--config", str(REPO / "config/roundtable.yaml"), "validate"]
    )
    err = capsys.readouterr().err
    assert code == ExitCode.INTERNAL == 70
    (record,) = [json.loads(line) for line in err.splitlines()]
    assert record["level"] == "error" and "ValueError: a bug that mentions" in record["message"]
    assert secret not in err and "[redacted]" in record["message"]


def test_exit_codes_are_documented():
    assert "exit codes:" in roundtable("--help", cwd=REPO).stdout
    doc = (REPO / "docs" / "exit-codes.md").read_text(encoding="utf-8")
    for code in ExitCode:
        assert f"| {code.value} " in doc, code
        assert f"  {code.value} " in EXIT_CODES_HELP, code


def test_invite_url_with_a_malformed_token_says_malformed_not_missing(site):
    result = roundtable("discord", "invite-url", cwd=site, env={"DISCORD_BOT_TOKEN": "garbage"})
    assert result.returncode == ExitCode.SETUP
    line = the_one_line(result)
    assert "DISCORD_BOT_TOKEN is malformed" in line and "garbage" not in result.stderr


def test_the_database_password_is_redacted_from_every_log_line(monkeypatch, capsys):
    import logging

    from bot import cli

    monkeypatch.setenv("ROUNDTABLE_DATABASE_URL", f"postgresql://u:{SECRET_PASSWORD}@h/db")

    def chatty(_args):
        logging.getLogger("sqlalchemy.engine").warning(
            "connecting with %s", os.environ["ROUNDTABLE_DATABASE_URL"]
        )
        return 0

    monkeypatch.setattr(cli, "cmd_validate", chatty)
    assert cli.main(["--config", str(REPO / "config/roundtable.yaml"), "validate"]) == 0
    err = capsys.readouterr().err
    assert "connecting with postgresql://u:[redacted]@h/db" in err and SECRET_PASSWORD not in err


async def test_a_port_in_use_is_named_with_the_setting_to_change():
    from aiohttp import web

    from bot.config import Config
    from bot.faults import platform_fault

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    runner = web.AppRunner(web.Application())
    await runner.setup()
    try:
        with pytest.raises(OSError) as err:
            await web.TCPSite(runner, "127.0.0.1", port).start()
    finally:
        await runner.cleanup()
        taken.close()
    config = Config.model_validate({"slack": {"port": port, "mode": "http"}})
    fault = platform_fault(err.value, config)
    assert fault is not None and fault.code == ExitCode.NETWORK
    assert fault.message.startswith(f"port {port} is already in use; stop the other program")


async def test_discord_gateway_unreachable_after_login(tmp_path):
    """The API answers (login works) but the gateway does not: one line naming the setting."""
    from tests.discord.conftest import TOKEN
    from tests.discord.fake_discord import FakeDiscord

    fake = await FakeDiscord().start()
    port = closed_port()
    config = write_library(
        tmp_path,
        MINI_CONFIG
        + f"discord:\n  api_url: {fake.api_url}\n  gateway_url: ws://127.0.0.1:{port}/\n",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DISCORD_"))}
    env.update(DISCORD_BOT_TOKEN=TOKEN, ROUNDTABLE_DATABASE_URL=f"sqlite:///{tmp_path}/d.db")
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "--config", str(config), "run",
            env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(process.communicate(), 90)
    finally:
        await fake.stop()
    stderr = err.decode()
    assert process.returncode == ExitCode.NETWORK, stderr
    assert "Traceback" not in stderr and TOKEN not in stderr
    ours = [line for line in stderr.splitlines() if " ERROR   bot: " in line]
    assert len(ours) == 1 and f"cannot reach Discord at 127.0.0.1:{port}" in ours[0]
    assert "discord.gateway_url" in ours[0]


def test_a_database_from_a_newer_version(site):
    import sqlite3

    db = site / "future.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
    result = roundtable("run", cwd=site, env={"ROUNDTABLE_DATABASE_URL": f"sqlite:///{db}"})
    assert result.returncode == ExitCode.DATABASE
    line = the_one_line(result)
    assert "cannot migrate the SQLite database" in line and "newer Roundtable" in line


def test_a_sqlite_lock_at_start_up_is_one_line():
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from bot.faults import database_fault

    error = OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked"))
    fault = database_fault(error, "sqlite+aiosqlite:///data/roundtable.db")
    assert fault is not None and fault.code == ExitCode.DATABASE
    assert fault.message.startswith(
        "the SQLite database data/roundtable.db stayed locked by another process for 30 s"
    )
