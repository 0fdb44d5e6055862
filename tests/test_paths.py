"""Where the database lives: relative to the config file, never to the working directory.

Before, ``./data/roundtable.db`` was relative to wherever you stood, so ``history`` or
``run`` from another folder silently opened an empty database and the rotation restarted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.config import Config, database_url
from tests.support import REPO
from tests.test_cli import bot

CONFIG = """\
timezone: Europe/Berlin
default_prompt_set: ai-research-culture
schedules:
  - name: weekly
    prompt_set: ai-research-culture
    cron: "0 10 * * mon"
    channels: [console:general]
    catch_up_within: 1s
"""


@pytest.fixture
def project(tmp_path) -> Path:
    """A project folder (config/ and prompts/) plus two unrelated folders to run from."""
    root = tmp_path / "project"
    shutil.copytree(REPO / "prompts", root / "prompts")
    (root / "config").mkdir()
    (root / "config" / "roundtable.yaml").write_text(CONFIG)
    for name in ("elsewhere", "somewhere-else"):
        (tmp_path / name).mkdir()
    return root


def test_the_default_database_is_next_to_the_config_folder(tmp_path):
    config_path = tmp_path / "config" / "roundtable.yaml"
    url = database_url(Config(), env={}, config_path=config_path)
    assert url == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'roundtable.db'}"


def test_relative_sqlite_paths_resolve_against_the_config_file(tmp_path):
    config_path = tmp_path / "conf" / "roundtable.yaml"
    from_file = Config(database_url="sqlite:///state/rt.db")
    assert database_url(from_file, env={}, config_path=config_path) == (
        f"sqlite+aiosqlite:///{tmp_path / 'conf' / 'state' / 'rt.db'}"
    )
    from_env = {"ROUNDTABLE_DATABASE_URL": "sqlite:///../x.db"}
    assert database_url(Config(), env=from_env, config_path=config_path) == (
        f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    )


def test_absolute_memory_and_server_urls_are_left_alone(tmp_path):
    config_path = tmp_path / "roundtable.yaml"
    for given, expected in (
        ("sqlite:////srv/rt.db", "sqlite+aiosqlite:////srv/rt.db"),
        ("sqlite://", "sqlite+aiosqlite://"),
        ("sqlite:///:memory:", "sqlite+aiosqlite:///:memory:"),
        ("postgresql://rt:pw@db/rt", "postgresql+asyncpg://rt:pw@db/rt"),
    ):
        env = {"ROUNDTABLE_DATABASE_URL": given}
        assert database_url(Config(), env=env, config_path=config_path) == expected


def test_every_command_sees_the_same_database_from_any_folder(project, tmp_path):
    """run from one folder, then history and plan from others: one database, one rotation."""
    config = str(project / "config" / "roundtable.yaml")
    env = {"ROUNDTABLE_DATABASE_URL": "", "ROUNDTABLE_CONFIG": ""}
    first = bot("--config", config, "run", stdin="/discuss now\nan answer\n", env=env,
                cwd=tmp_path / "elsewhere")  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert (project / "data" / "roundtable.db").exists()
    assert not (tmp_path / "elsewhere" / "data").exists()

    history = bot("--config", config, "history", env=env, cwd=tmp_path / "somewhere-else")
    assert history.returncode == 0, history.stderr
    assert "meta-culture-of-fear" in history.stdout and "1 person answered" in history.stdout

    plan = bot("plan", "--days", "8", env={**env, "ROUNDTABLE_CONFIG": config}, cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    first_planned = plan.stdout.splitlines()[1]
    assert "meta-pervasive-fear-rd" in first_planned  # the rotation moved on, not restarted

    second = bot("--config", config, "run", stdin="/discuss results\n", env=env, cwd=project)
    assert "you: an answer" in second.stdout


async def test_the_key_file_of_a_postgresql_database_lives_beside_the_config_too(
    project, pg_url, tmp_path, monkeypatch
):
    """With PostgreSQL there is no database file to sit beside: the server secret's key
    file goes to the default data folder, found from the config file, not the cwd."""
    from bot.app import build_runtime

    monkeypatch.delenv("ROUNDTABLE_SECRET", raising=False)
    monkeypatch.delenv("ROUNDTABLE_KEY_FILE", raising=False)
    monkeypatch.chdir(tmp_path / "elsewhere")
    runtime = await build_runtime(project / "config" / "roundtable.yaml", database=pg_url)
    await runtime.close()
    assert (project / "data" / "roundtable.key").is_file()
    assert not (tmp_path / "elsewhere" / "data").exists()


@pytest.mark.parametrize("command", [["history"], ["plan", "--days", "7"]])
def test_history_and_plan_on_postgresql_use_the_config_relative_key_file(
    project, pg_url, tmp_path, command
):
    """``history`` and ``plan`` open (and may migrate) the database too: they must use the
    same key file as the bot, not one relative to wherever they are run from."""
    elsewhere = tmp_path / "elsewhere"
    env = {"ROUNDTABLE_DATABASE_URL": pg_url, "ROUNDTABLE_SECRET": "", "ROUNDTABLE_KEY_FILE": ""}
    config = str(project / "config" / "roundtable.yaml")
    result = bot(*command, "--config", config, cwd=elsewhere, env=env)
    assert result.returncode == 0, result.stderr
    assert (project / "data" / "roundtable.key").is_file()
    assert not (elsewhere / "data").exists()
