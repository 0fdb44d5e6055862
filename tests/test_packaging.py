"""What can be checked about packaging without a Docker engine."""

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

from tests.support import REPO

RUN_COMMAND = "pip install -e . && python -m bot run"
TEST_COMMAND = "pip install -e '.[test]' && python -m pytest"


def test_readme_has_the_two_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    assert RUN_COMMAND in readme and TEST_COMMAND in readme
    ci = (REPO / ".ci" / "run").read_text()
    lines = [line for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    (test,) = [i for i, line in enumerate(lines) if line.startswith(TEST_COMMAND)]
    assert lines[test] == f"{TEST_COMMAND} || exit"  # a failing pip stops CI too
    assert "ROUNDTABLE_REQUIRE_PG=1" in ci
    # After it only the image step, which can never fail CI.
    assert lines[test + 1 :] == [
        'timeout 1500 .ci/build-image || echo "image: step ended with exit $? (it never decides CI)"'
    ]


def test_dockerfile_installs_this_package_and_runs_the_same_entry_point():
    docker = (REPO / "Dockerfile").read_text()
    # users get the official image; CI passes a local Debian base through the same argument
    assert re.search(r"^ARG BASE_IMAGE=python:3\.1[1-9]-slim$", docker, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", docker, re.M)
    # a venv: Debian's own python3 refuses system-wide pip installs (PEP 668)
    assert re.search(
        r"^RUN python3 -m venv /opt/venv && /opt/venv/bin/python -m pip install \.$", docker, re.M
    )
    assert "PATH=/opt/venv/bin:$PATH" in docker
    assert re.search(r"^USER (?!root)\w+", docker, re.M)
    assert 'VOLUME ["/data"]' in docker
    assert "ROUNDTABLE_DATABASE_URL=sqlite:////data/roundtable.db" in docker
    assert 'CMD ["python", "-m", "bot", "run"]' in docker
    copied = re.findall(r"^COPY (.+) \./", docker, re.M)
    for source in " ".join(copied).split():
        assert (REPO / source).exists(), f"Dockerfile copies {source}, which does not exist"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["roundtable"] == "bot.cli:main"
    assert "from bot.cli import main" in (REPO / "bot" / "__main__.py").read_text()


def test_the_wheel_carries_the_migrations(tmp_path):
    """``pip install .`` (as in the Dockerfile) must ship Alembic's files, or start-up fails."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("roundtable-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "bot/storage/migrations/env.py" in names
    assert "bot/storage/migrations/versions/0001_initial.py" in names
    assert "bot/cli.py" in names


def test_slack_manifest_asks_for_exactly_what_the_adapter_needs():
    import yaml

    manifest = yaml.safe_load((REPO / "deploy" / "slack-app-manifest.yaml").read_text())
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert scopes == {"commands", "chat:write", "channels:history", "groups:history", "users:read"}
    settings = manifest["settings"]
    assert set(settings["event_subscriptions"]["bot_events"]) == {
        "message.channels",
        "message.groups",
    }
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["socket_mode_enabled"] is True
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/discuss"


def test_the_image_step_skips_with_a_reason_where_it_cannot_work(tmp_path):
    """CI must never fail for lack of a container engine: no apt-get here, so it skips."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "id", "dirname", "mktemp", "rm", "env"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    result = subprocess.run(
        [str(bin_dir / "bash"), str(REPO / ".ci" / "build-image")],
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("image: skipped: ")
    assert os.access(REPO / ".ci" / "build-image", os.X_OK)
