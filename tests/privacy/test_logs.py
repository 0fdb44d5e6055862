"""No log line at any level puts an anonymous answer next to anything naming its author.

The bot runs at DEBUG through the project's own logging set-up (``setup_logging``, as
``roundtable --log-level DEBUG run`` does), on Slack and on Discord, with the real
slack-bolt / discord.py clients against the loopback fakes. The authors here answer
only anonymously, so any record that names them, or that repeats an anonymous text,
could tie the two together (by content, or by sitting next to each other in the log).
"""

from __future__ import annotations

import logging

import pytest

from bot.logsetup import setup_logging
from tests.discord.conftest import MEMBER, make_bot
from tests.discord.conftest import fake as fake_discord  # noqa: F401  (fixture)
from tests.slack.conftest import fake, slack  # noqa: F401  (fixtures)


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name} {record.levelname} {text}")


@pytest.fixture
def debug_log():
    setup_logging("text", "DEBUG")
    recorder = Recorder()
    logging.getLogger().addHandler(recorder)
    try:
        yield recorder
    finally:
        logging.getLogger().removeHandler(recorder)
        setup_logging("text", "INFO")


def tied(lines: list[str], secrets: list[str], identities: list[str]) -> list[str]:
    """Log lines that repeat an anonymous answer or name one of its authors."""
    return [
        line
        for line in lines
        if any(s.lower() in line.lower() for s in secrets)
        or any(who.lower() in line.lower() for who in identities)
    ]


async def test_slack_at_debug_logs_no_anonymous_answer_next_to_its_author(
    slack,  # noqa: F811
    debug_log,
):
    assert await slack.command("now") == 200
    await slack.settle()
    round_ = await slack.runtime.store.open_round_in("slack:C1")
    assert logging.getLogger().isEnabledFor(logging.DEBUG)
    before = len(debug_log.lines)
    slack.fake.names["UQUIET"] = "Quentin Quiet"
    slack.fake.names["UHUSH"] = "Harriet Hush"
    # A failed profile look-up used to log the fallback name (the user id) at INFO.
    slack.fake.fail("users.info", status=200, error="user_not_found")
    await slack.command("answer --anonymous my manager scares me", user="UQUIET")
    await slack.settle()
    await slack.press_share(round_.id, "UHUSH")
    await slack.settle()
    view = slack.fake.calls_to("views.open")[0]["view"]
    await slack.submit(view, {2: "nobody reads the docs"}, "UHUSH", anonymous=True)
    await slack.settle()
    reposts = [m for m in slack.fake.posted("C1") if m.get("thread_ts")]
    assert len(reposts) == 2  # both answers were re-posted, anonymously
    assert (
        tied(
            debug_log.lines[before:],
            ["my manager scares me", "nobody reads the docs"],
            ["UQUIET", "UHUSH", "Quentin", "Harriet"],
        )
        == []
    )


async def test_discord_at_debug_logs_no_anonymous_answer_next_to_its_author(
    tmp_path,
    fake_discord,  # noqa: F811
    debug_log,
):
    bot = await make_bot(tmp_path, fake_discord)
    try:
        message = await bot.open_round(bot.channels[0])
        thread_id = int(message["id"])
        before = len(debug_log.lines)
        token = await bot.fake.slash(
            MEMBER, bot.channels[0], "answer", text="I dread the standup", anonymous=True
        )
        await bot.replies(token)
        token = await bot.fake.click(MEMBER, thread_id, "rt:answer:1")
        [callback] = await bot.fake.wait_until(lambda: bot.fake.replies_to(token))
        token = await bot.fake.submit_modal(
            MEMBER, bot.channels[0], callback["data"], {"q2": "Quietly unhappy", "anonymous": True}
        )
        await bot.replies(token)
        posts = await bot.fake.wait_until(
            lambda: [
                r
                for r in bot.fake.sent("POST", rf"/channels/{thread_id}/messages")
                if "Quietly" in str(r.body)
            ]
        )
        assert posts
        assert logging.getLogger("bot").isEnabledFor(logging.DEBUG)
        assert (
            tied(
                debug_log.lines[before:],
                ["I dread the standup", "Quietly unhappy"],
                [str(MEMBER.id), MEMBER.name],
            )
            == []
        )
    finally:
        await bot.stop()


async def test_a_database_error_in_the_log_carries_no_answer_text(sqlite_url):
    """SQLAlchemy puts statement parameters into its error messages unless told not to;
    a traceback logged at ERROR would then hold answer texts and author ids."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from bot.storage.store import Store

    store = await Store.open(sqlite_url)
    try:
        with pytest.raises(IntegrityError) as err:
            async with store.engine.begin() as conn:
                await conn.execute(
                    text("INSERT INTO processed_events (key, seen_at) VALUES (:k, NULL)"),
                    {"k": "an anonymous confession"},
                )
        assert "an anonymous confession" not in str(err.value)
    finally:
        await store.close()


def test_the_cli_at_debug_logs_no_anonymous_answer_or_its_author(tmp_path):
    """``roundtable --log-level DEBUG run`` (console): the whole process's log, database
    and scheduler included, never shows an anonymous answer or who gave it."""
    import subprocess
    import sys

    from tests.support import REPO

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "roundtable.yaml").write_text(
        f"prompts_dir: {REPO / 'prompts'}\nconsole:\n  user: quentin\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "--log-level",
            "DEBUG",
            "--config",
            str(tmp_path / "config" / "roundtable.yaml"),
            "run",
        ],
        input="/discuss now\n/discuss answer --anonymous my boss scares me\n/discuss close\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "ROUNDTABLE_DATABASE_URL": f"sqlite:///{tmp_path / 'rt.db'}"},
    )
    assert result.returncode == 0, result.stderr
    assert "my boss scares me" in result.stdout  # the answer was taken and re-posted
    assert " DEBUG " in result.stderr  # the log really ran at DEBUG
    assert tied(result.stderr.splitlines(), ["my boss scares me"], ["quentin"]) == []
