"""The command line, driven as a user would: ``python -m bot …`` in a subprocess."""

import os
import shutil
import subprocess
import sys

import pytest

from bot.cli import build_parser
from tests.support import REPO

DEMO = "/discuss now\nTeams need room to fail\n/discuss results\n"


def bot(
    *args: str,
    stdin: str = "",
    cwd=REPO,
    env: dict | None = None,
    db=None,
    drop: tuple[str, ...] = ("SLACK_", "DISCORD_"),
    timeout: float = 60,
):
    """``python -m bot ARGS`` as a user runs it, without the variables named in ``drop``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    if db is not None:
        environment["ROUNDTABLE_DATABASE_URL"] = f"sqlite:///{db}"
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=timeout,
    )


@pytest.fixture
def workdir(tmp_path):
    """A copy of the shipped config and prompts with no schedules due, in a temp dir."""
    shutil.copytree(REPO / "prompts", tmp_path / "prompts")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "roundtable.yaml").write_text(
        "timezone: Europe/Berlin\ndefault_prompt_set: ai-research-culture\n"
    )
    return tmp_path


def test_piped_demo_prints_round_saves_answer_and_shows_results(workdir):
    result = bot("run", stdin=DEMO, cwd=workdir)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "The Impact of a Toxic Culture on Big Tech’s AI Research" in out
    assert "Source: Unattributed blog post (seed 000)" in out
    assert "1. How can organizations cultivate a performance-driven culture" in out
    assert "Saved your answer." in out
    assert "Results so far" in out and "you: Teams need room to fail" in out
    assert (workdir / "data" / "roundtable.db").exists()  # the embedded default


def test_answers_and_rotation_survive_a_restart(workdir, tmp_path):
    db = tmp_path / "shared.db"
    first = bot("run", stdin="/discuss now\nfirst answer\n", cwd=workdir, db=db)
    assert first.returncode == 0, first.stderr
    second = bot("run", stdin="/discuss results\n/discuss now\n", cwd=workdir, db=db)
    assert second.returncode == 0, second.stderr
    assert "you: first answer" in second.stdout
    # the rotation moved on: the second round is the second article, not the first again
    assert "Former Meta LLaMA Scientist" in second.stdout


def test_unknown_subcommand_gets_a_suggestion(workdir):
    result = bot("run", stdin="/discuss resluts\n", cwd=workdir)
    assert "Did you mean `/discuss results`?" in result.stdout


def test_validate_ok_prints_a_summary_and_exits_0():
    result = bot("validate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK: 1 prompt set, 4 prompts, 1 schedule."


def test_validate_reports_problems_with_positions_and_exits_1(workdir):
    (workdir / "config" / "roundtable.yaml").write_text("timezone: Nowhere\nscheudle: x\n")
    result = bot("validate", cwd=workdir)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert "config/roundtable.yaml:1:11: timezone: unknown time zone 'Nowhere'" in lines[0]
    assert lines[1] == "config/roundtable.yaml:2:1: unknown key 'scheudle'"
    assert lines[-1] == "2 problems found."


def test_run_refuses_to_start_with_invalid_config(workdir):
    (workdir / "prompts" / "ai-research-culture.yaml").write_text("title: [broken\n")
    result = bot("run", stdin=DEMO, cwd=workdir)
    assert result.returncode == 1
    assert "prompts/ai-research-culture.yaml:2:1: invalid YAML" in result.stderr
    assert "Refusing to start" in result.stderr
    assert result.stdout == ""


def test_config_path_from_flag_and_environment(workdir, tmp_path):
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text(f"prompts_dir: {workdir / 'prompts'}\n")
    assert bot("--config", str(elsewhere), "validate").returncode == 0
    env = {"ROUNDTABLE_CONFIG": str(elsewhere)}
    assert "0 schedules" in bot("validate", env=env).stdout


def test_preview_prints_a_prompt_as_a_round_would():
    result = bot("preview", "meta-hackathon-discontent")
    assert result.returncode == 0
    assert result.stdout.startswith("== Preview")
    assert "Meta and AI: Internal Discontent Over Zuckerberg's Hackathon" in result.stdout
    assert "(ours)" in result.stdout
    unknown = bot("preview", "nope")
    assert unknown.returncode == 1 and "unknown prompt id 'nope'" in unknown.stderr


def test_schema_files_in_the_repo_are_up_to_date(tmp_path):
    result = bot("schema", "--out", str(tmp_path))
    assert result.returncode == 0
    for name in ("config.schema.json", "prompt-set.schema.json"):
        assert (tmp_path / name).read_text() == (REPO / "schemas" / name).read_text(), (
            f"schemas/{name} is stale: run `roundtable schema`"
        )


def test_shipped_yaml_files_point_editors_at_the_schemas():
    for path in [REPO / "config" / "roundtable.yaml", *(REPO / "prompts").glob("*.yaml")]:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema=../schemas/"), path


def test_every_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:
        result = bot(name, "--help") if " " not in name else None
        assert result.returncode == 0 and "usage:" in result.stdout, name


def test_roundtable_console_script_is_the_same_cli():
    exe = shutil.which("roundtable", path=os.path.dirname(sys.executable))
    assert exe, "the roundtable entry point is not installed"
    result = subprocess.run([exe, "validate"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("OK:")
