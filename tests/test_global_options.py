"""``--config``, ``--log-format`` and ``--log-level`` work before or after any command."""

from __future__ import annotations

import json

import pytest

from bot.cli import build_parser, subcommand_parsers
from tests.test_cli import bot

# One invocation per command (positional arguments included), without the global options.
COMMANDS = [
    ["run"],
    ["validate"],
    ["history"],
    ["forget", "slack:U0123"],
    ["export"],
    ["plan"],
    ["prompts", "draft", "article.txt"],
    ["preview"],
    ["schema"],
    ["discord", "invite-url"],
]
GLOBAL = ["--config", "other/roundtable.yaml", "--log-format", "json", "--log-level", "DEBUG"]


def test_every_command_is_covered_here():
    leaves = {p.prog.removeprefix("roundtable ") for p in subcommand_parsers(build_parser())}
    assert {" ".join(c[:2]) if c[0] in ("prompts", "discord") else c[0] for c in COMMANDS} == {
        name for name in leaves if name not in ("prompts", "discord")
    }


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_global_options_before_or_after_the_command_mean_the_same(command):
    before = build_parser().parse_args([*GLOBAL, *command])
    after = build_parser().parse_args([*command, *GLOBAL])
    for args in (before, after):
        assert args.config == "other/roundtable.yaml"
        assert args.log_format == "json" and args.log_level == "DEBUG"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_defaults_hold_and_a_value_before_the_command_is_not_overwritten(command):
    plain = build_parser().parse_args(command)
    assert (plain.config, plain.log_format, plain.log_level) == (None, "text", "INFO")
    early = build_parser().parse_args(["--log-level", "WARNING", *command])
    assert early.log_level == "WARNING"


def test_each_commands_help_lists_the_global_options():
    for parser in subcommand_parsers(build_parser()):
        text = parser.format_help()
        for option in ("--config", "--log-format", "--log-level"):
            assert option in text, f"{parser.prog} --help does not list {option}"


def test_run_and_plan_accept_config_after_the_command(tmp_path):
    """Used to be rejected: `roundtable run --config X` (only `--config X run` worked)."""
    import shutil

    from tests.support import REPO
    from tests.test_paths import CONFIG

    shutil.copytree(REPO / "prompts", tmp_path / "prompts")
    (tmp_path / "config").mkdir()
    config = tmp_path / "config" / "roundtable.yaml"
    config.write_text(CONFIG)
    env = {"ROUNDTABLE_DATABASE_URL": "", "ROUNDTABLE_CONFIG": ""}
    run = bot("run", "--config", str(config), "--log-format", "json", stdin="/discuss now\n",
              env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "Round 1" in run.stdout
    log_lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert log_lines and all(json.loads(line) for line in log_lines)  # JSON, as asked after `run`
    plan = bot("plan", "--config", str(config), "--days", "8", env=env)
    assert plan.returncode == 0, plan.stderr
    assert "[weekly]" in plan.stdout
