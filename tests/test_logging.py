"""Secrets never reach a log line, whatever logs them and in whichever format."""

import json
import logging
import subprocess
import sys

from bot.config import Secrets
from bot.logsetup import setup_logging
from tests.support import REPO

TOKEN = "xoxb-1234567890-abcdefghijkl"
SECRET = "8f14e45fceea167a5a36dedd4bea2543"


def test_known_secrets_and_token_shapes_are_redacted(capsys):
    setup_logging("text", "INFO", [SECRET])
    log = logging.getLogger("slack_sdk.web")  # third-party loggers go through the same filter
    log.info("calling with token=%s and secret %s", TOKEN, SECRET)
    try:
        raise RuntimeError(f"auth failed for {SECRET}")
    except RuntimeError:
        log.exception("boom")
    err = capsys.readouterr().err
    assert TOKEN not in err and SECRET not in err
    assert err.count("[redacted]") == 3


def test_json_format_is_one_object_per_line(capsys):
    setup_logging("json", "INFO", [SECRET])
    logging.getLogger("bot.test").warning("secret is %s", SECRET)
    (line,) = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert record["level"] == "warning" and record["message"] == "secret is [redacted]"


def test_secrets_repr_shows_which_are_present_never_values():
    secrets = Secrets.from_env({"SLACK_BOT_TOKEN": TOKEN, "DISCORD_BOT_TOKEN": ""})
    assert TOKEN not in repr(secrets)
    assert "SLACK_BOT_TOKEN" in repr(secrets) and "DISCORD" not in repr(secrets)
    assert secrets.slack and not secrets.discord


def test_cli_log_format_json_writes_parseable_lines(tmp_path):
    config = tmp_path / "roundtable.yaml"
    config.write_text(f"prompts_dir: {REPO / 'prompts'}\n")
    env = {"PATH": "/usr/bin:/bin", "ROUNDTABLE_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--log-format", "json", "--config", str(config), "run"],
        input="/discuss now\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert any("console adapter" in r["message"] for r in records)
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)


def test_library_tracebacks_are_one_line_unless_debug(capsys):
    """discord.py logs a traceback on every gateway reconnect: admins get one line."""
    setup_logging("text", "INFO", [SECRET])
    try:
        raise ConnectionRefusedError(111, f"Connect call failed ({SECRET})")
    except ConnectionRefusedError:
        logging.getLogger("discord.client").exception("Attempting a reconnect in 1.00s")
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(
        "Attempting a reconnect in 1.00s (ConnectionRefusedError: [Errno 111] "
        "Connect call failed ([redacted]))"
    )
    setup_logging("json", "DEBUG", [SECRET])
    try:
        raise ConnectionRefusedError(111, "refused")
    except ConnectionRefusedError:
        logging.getLogger("discord.client").exception("Attempting a reconnect")
    (record,) = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert "Traceback" in record["exception"]  # DEBUG keeps the details


def test_uncaught_errors_in_threads_are_one_log_line(capsys):
    import threading

    from bot.logsetup import install_excepthooks

    setup_logging("json", "INFO", [SECRET])
    before = threading.excepthook, sys.excepthook
    install_excepthooks()
    try:
        thread = threading.Thread(target=lambda: 1 / 0, name="worker")
        thread.start()
        thread.join()
    finally:
        threading.excepthook, sys.excepthook = before
    (record,) = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert (
        record["message"]
        == "unexpected error in thread worker: ZeroDivisionError: division by zero"
    )
