"""The shipped pre-commit hook runs ``roundtable validate`` and fails on broken files."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support import MINI_SET, REPO, write_library

HOOKS = REPO / ".pre-commit-hooks.yaml"
BIN = Path(sys.executable).parent


def _hook() -> dict:
    hooks = yaml.safe_load(HOOKS.read_text(encoding="utf-8"))
    (hook,) = [h for h in hooks if h["id"] == "roundtable-validate"]
    return hook


def _run_hook(cwd: Path, args: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run the hook the way pre-commit does: entry + args, no file names, in the repo."""
    hook = _hook()
    command = shlex.split(hook["entry"]) + list(args or hook.get("args", []))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUNDTABLE_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_hook_definition():
    hook = _hook()
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is False  # validate checks everything together
    assert shlex.split(hook["entry"])[:2] == ["roundtable", "validate"]
    files = re.compile(hook["files"])
    assert files.search("prompts/team-habits.yaml") and files.search("config/roundtable.yaml")
    assert not files.search("README.md")


def test_hook_passes_on_valid_files_and_fails_on_broken_ones(tmp_path):
    write_library(tmp_path)
    ok = _run_hook(tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK: 1 prompt set, 3 prompts, 1 schedule")

    (tmp_path / "prompts" / "mini.yaml").write_text(
        MINI_SET.replace("summary: Beta", "sumary: Beta"), encoding="utf-8"
    )
    bad = _run_hook(tmp_path)
    assert bad.returncode == 1
    assert "prompts/mini.yaml:14:5: unknown key 'sumary'" in bad.stderr
    assert bad.stderr.rstrip().endswith("problems found.")


def test_hook_accepts_a_config_path_in_args(tmp_path):
    repo = tmp_path / "team-prompts"
    config = write_library(repo)
    moved = repo / "roundtable.yaml"
    moved.write_text(config.read_text(encoding="utf-8").replace("../prompts", "prompts"), "utf-8")
    config.unlink()
    assert _run_hook(repo).returncode == 1  # default path is gone
    result = _run_hook(repo, ["--config", "roundtable.yaml"])
    assert result.returncode == 0, result.stderr
