"""The documentation cannot drift from what the bot accepts.

Every YAML block in README.md, docs/*.md and prompts/README.md is preceded by a marker
saying what it is, ``<!-- yaml: KIND -->``, and is checked as that kind: configs are
validated like ``roundtable validate`` does (with the shipped prompt sets, so an unknown
``prompt_set`` fails), prompt sets are loaded as a set. Snippets that are deliberately
incomplete say so (``<!-- yaml: partial, why -->``) and must still parse. A block with no
marker fails, so nothing is skipped silently.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from bot.library import load_library
from bot.prompts import load_prompt_sets
from bot.yamlsource import ProblemsFound
from tests.support import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "prompts" / "README.md"]
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?:yaml|yml)[ \t]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S
)
MARKER = re.compile(r"^\s*<!-- yaml: (?P<kind>[a-z-]+)(?:, (?P<why>[^>]+?))? -->\s*$")
KINDS = ("config", "prompt-set", "pre-commit-config", "github-workflow", "compose", "partial")
# Files other branches deliver; a link to them is allowed before they land.
DELIVERED_ELSEWHERE = {
    REPO / "docs" / name for name in ("performance.md", "privacy.md", "exit-codes.md")
}


@dataclass
class Snippet:
    where: str  # file:line of the opening fence
    kind: str | None
    why: str | None
    text: str

    def __str__(self) -> str:
        return self.where


def snippets() -> list[Snippet]:
    found = []
    for doc in DOCS:
        source = doc.read_text(encoding="utf-8")
        for match in FENCE.finditer(source):
            line = source.count("\n", 0, match.start()) + 1
            before = [x for x in source[: match.start()].splitlines() if x.strip()]
            marker = MARKER.match(before[-1]) if before else None
            body = textwrap.dedent(match["body"])
            where = f"{doc.relative_to(REPO)}:{line}"
            kind, why = (marker["kind"], marker["why"]) if marker else (None, None)
            found.append(Snippet(where, kind, why, body))
    return found


SNIPPETS = snippets()


def test_the_docs_have_yaml_examples_of_each_main_kind():
    kinds = {s.kind for s in SNIPPETS}
    assert {"config", "prompt-set", "compose"} <= kinds, kinds


@pytest.mark.parametrize("snippet", SNIPPETS, ids=str)
def test_every_yaml_example_validates_as_what_it_says_it_is(snippet, tmp_path):
    assert snippet.kind in KINDS, (
        f"{snippet.where}: precede the block with <!-- yaml: KIND --> "
        f"(KIND one of {', '.join(KINDS)}; partial needs a reason)"
    )
    data = yaml.safe_load(snippet.text)  # every kind must at least be YAML
    if snippet.kind == "partial":
        assert snippet.why, f"{snippet.where}: say why the snippet is partial"
    elif snippet.kind == "config":
        shutil.copytree(REPO / "prompts", tmp_path / "prompts")
        (tmp_path / "config").mkdir()
        path = tmp_path / "config" / "roundtable.yaml"
        path.write_text(snippet.text, encoding="utf-8")
        try:
            load_library(path)
        except ProblemsFound as exc:
            pytest.fail(f"{snippet.where}: " + "; ".join(map(str, exc.problems)))
    elif snippet.kind == "prompt-set":
        (tmp_path / "prompts").mkdir()
        (tmp_path / "prompts" / "example.yaml").write_text(snippet.text, encoding="utf-8")
        try:
            load_prompt_sets(tmp_path / "prompts")
        except ProblemsFound as exc:
            pytest.fail(f"{snippet.where}: " + "; ".join(map(str, exc.problems)))
    elif snippet.kind == "pre-commit-config":
        hooks = {h["id"] for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
        for repo in data["repos"]:
            assert {h["id"] for h in repo["hooks"]} <= hooks
            assert honest_revision(repo["rev"]), (
                f"{snippet.where}: rev {repo['rev']} does not exist"
            )
    elif snippet.kind == "github-workflow":
        assert data["jobs"] and all("steps" in job for job in data["jobs"].values())
    elif snippet.kind == "compose":
        shipped = yaml.safe_load((REPO / "compose.yaml").read_text())
        assert set(data["services"]) <= set(shipped["services"])


def honest_revision(rev: str) -> bool:
    """A full commit SHA (a placeholder for the reader's own), or a tag this repository has."""
    if re.fullmatch(r"[0-9a-f]{40}", rev):
        return True
    tags = subprocess.run(["git", "tag"], cwd=REPO, capture_output=True, text=True).stdout
    return rev in tags.split()


LINK = re.compile(
    r"\[[^\]]*\]\((?!https?://|mailto:)(?P<target>[^)#\s]*)(?:#(?P<anchor>[^)\s]+))?\)"
)


def anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#{1,6} (.+)$", doc.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_relative_link_and_anchor_in_the_docs_resolves():
    broken = []
    for doc in DOCS:
        for match in LINK.finditer(doc.read_text(encoding="utf-8")):
            target = (doc.parent / match["target"]).resolve() if match["target"] else doc
            if target in DELIVERED_ELSEWHERE and not target.exists():
                continue
            if not target.exists():
                broken.append(f"{doc.relative_to(REPO)}: {match[0]}")
            elif match["anchor"] and match["anchor"] not in anchors(target):
                broken.append(f"{doc.relative_to(REPO)}: {match[0]} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_readme_is_short_and_links_every_doc():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    for doc in sorted((REPO / "docs").glob("*.md")):
        assert f"(docs/{doc.name})" in readme, f"README.md does not link docs/{doc.name}"
    assert "(docs/performance.md)" in readme and "(docs/privacy.md)" in readme


def test_each_thing_is_said_once():
    """The commands table, the config reference and the Slack manifest live in one place."""
    text = {doc: doc.read_text(encoding="utf-8") for doc in DOCS}
    row = "| `/discuss withdraw` |"
    assert sum(t.count(row) for t in text.values()) == 1
    reference = "catch_up_within: 6h              # after downtime"
    assert [d.name for d, t in text.items() if reference in t] == ["configuration.md"]
    manifest_line = "display_information:"
    assert not any(manifest_line in t for t in text.values())  # linked, not pasted
    assert "deploy/slack-app-manifest.yaml" in text[REPO / "docs" / "slack.md"]


def test_the_readme_transcript_is_what_the_demo_prints(tmp_path):
    """The console session in the README is real output of its own command, on a clean start."""
    import sys

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```console\n\$ (?P<command>[^\n]+)\n(?P<output>.*?)```", readme, re.S)
    assert block, "README.md has no ```console transcript"
    command = block["command"].replace("python -m bot", f"{sys.executable} -m bot")
    shutil.copytree(REPO / "prompts", tmp_path / "prompts")
    shutil.copytree(REPO / "config", tmp_path / "config")
    config = tmp_path / "config" / "roundtable.yaml"  # the shipped file, minus a Monday catch-up
    config.write_text(config.read_text().replace("    anonymous_answers: allowed\n",
                                                 "    anonymous_answers: allowed\n    catch_up_within: 1s\n"))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DISCORD_"))}
    env.pop("ROUNDTABLE_DATABASE_URL", None)
    env.pop("ROUNDTABLE_CONFIG", None)
    result = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0
    actual = result.stdout.splitlines()
    expected = block["output"].splitlines()
    at = 0
    for i, line in enumerate(expected):
        if line.endswith("[...]"):  # an elision: this line's start, then skip to the next
            assert actual[at].startswith(line.removesuffix("[...]").rstrip()), actual[at]
            at = actual.index(expected[i + 1], at)
            continue
        assert actual[at] == line, f"README transcript line {i + 1}: {line!r} != {actual[at]!r}"
        at += 1
    assert at == len(actual), "the demo prints more than the README shows"
