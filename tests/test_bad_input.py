"""Whatever bytes an admin saves, loading ends in data or in ``path:line:col`` problems.

Explicit cases for every input that used to crash the loader (control characters,
deep nesting, recursive aliases, alias bombs, huge numbers, unusable paths), plus
property-based tests over mutated prompt sets and configs: the loader and
``roundtable validate`` never raise.
"""

from __future__ import annotations

import os
import re
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import cli
from bot.library import load_library
from bot.yamlsource import MAX_DEPTH, MAX_NODES, ProblemsFound, load_yaml, parse_yaml
from tests.support import MINI_CONFIG, MINI_SET, write_library

POSITIONED = re.compile(r"^[^:]+:\d+:\d+: .+")

BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
)  # 10^9 values once expanded, in under 400 bytes


def problems_of(text: str) -> list[str]:
    with pytest.raises(ProblemsFound) as err:
        parse_yaml(text, "x.yaml")
    return [str(p) for p in err.value.problems]


def library_problems(tmp_path, config=MINI_CONFIG, sets=None) -> list[str]:
    path = write_library(tmp_path, config, sets)
    os.chdir(tmp_path)
    with pytest.raises(ProblemsFound) as err:
        load_library(path)
    root = str(tmp_path) + "/"
    return [str(p).replace(root, "") for p in err.value.problems]


# ---- the loader: each crasher, refused with a position ----------------------------------


@pytest.mark.parametrize(
    ("char", "where"),
    [("\x08", "x.yaml:2:11:"), ("\x00", "x.yaml:2:11:"), ("\x1b", "x.yaml:2:11:")],
)
def test_a_control_character_is_a_positioned_problem(char, where):
    (line,) = problems_of(f"title: ok\nsummary: a{char}b\n")
    assert line.startswith(where) and f"U+{ord(char):04X}" in line


def test_deep_flow_nesting_is_refused_at_the_level_that_is_too_deep():
    (line,) = problems_of("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert line.startswith("x.yaml:1:") and f"nested deeper than {MAX_DEPTH} levels" in line


def test_deep_block_nesting_is_refused():
    text = "".join("  " * i + f"k{i}:\n" for i in range(1000))
    (line,) = problems_of(text)
    assert line.startswith(f"x.yaml:{MAX_DEPTH}:") and "nested deeper" in line


def test_a_recursive_alias_is_refused_at_the_alias():
    assert problems_of("a: &x [1, *x]\n") == [
        "x.yaml:1:11: invalid YAML: recursive alias '*x' (it refers to a value that contains itself)"
    ]


def test_a_recursive_merge_key_is_refused():
    (line,) = problems_of("a: &x {b: 1, <<: *x}\n")
    assert line.startswith("x.yaml:1:18:") and "recursive alias" in line


def test_an_alias_bomb_is_refused_without_expanding_it():
    (line,) = problems_of(BOMB)
    assert re.match(r"x\.yaml:\d+:\d+: ", line)
    assert f"more than {MAX_NODES} values once aliases are expanded" in line


def test_an_alias_bomb_in_a_file_is_refused_in_the_cli(tmp_path, capsys):
    config = write_library(tmp_path, sets={"mini": MINI_SET, "bomb": BOMB})
    assert cli.main(["--config", str(config), "validate"]) == 1
    err = capsys.readouterr().err
    assert "bomb.yaml:" in err and "once aliases are expanded" in err


def test_aliases_and_merge_keys_still_work():
    doc = parse_yaml("base: &b {x: 1, y: 2}\nm: {<<: *b, y: 3}\nl: [*b, *b]\n", "x.yaml")
    assert doc.data["m"] == {"x": 1, "y": 3}
    assert doc.data["l"] == [{"x": 1, "y": 2}, {"x": 1, "y": 2}]


def test_many_aliases_are_refused():
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * 1500) + "]\n"
    (line,) = problems_of(text)
    assert line.startswith("x.yaml:2:") and "more than 1000 aliases" in line


def test_a_number_too_long_to_convert_stays_text():
    digits = "9" * 5000
    assert parse_yaml(f"title: {digits}\n", "x.yaml").data == {"title": digits}


def test_invalid_utf8_is_a_positioned_problem(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"title: ok\nsummary: caf\xe9\n")
    with pytest.raises(ProblemsFound) as err:
        load_yaml(path)
    assert str(err.value.problems[0]).endswith(":2:13: file is not valid UTF-8")


def test_a_path_with_a_nul_or_too_long_is_a_problem(tmp_path):
    for path in (tmp_path / "a\x00b.yaml", tmp_path / ("x" * 5000 + ".yaml")):
        with pytest.raises(ProblemsFound) as err:
            load_yaml(path)
        assert "cannot read file" in str(err.value.problems[0])


# ---- the config: each value that crashed validation ---------------------------------------


def test_a_huge_duration_is_a_problem_not_an_overflow(tmp_path):
    (line,) = library_problems(tmp_path, MINI_CONFIG + "    close_after: 9999999999d\n")
    assert line.startswith("config/roundtable.yaml:8:18:")
    assert "'9999999999d' is too long; a duration is at most 3650d" in line


@pytest.mark.parametrize(
    "value",
    ['"a\\0b"', '"' + "x" * 5000 + '"', '"' + "/".join(["y" * 300] * 2) + '"', '"\\x08"'],
    ids=["nul", "over-long", "long-folder-name", "control"],
)
def test_an_unusable_prompts_dir_is_a_problem(tmp_path, value):
    config = MINI_CONFIG.replace("prompts_dir: ../prompts", f"prompts_dir: {value}")
    lines = library_problems(tmp_path, config)
    assert lines and all(POSITIONED.match(line) for line in lines)
    assert any(line.startswith("config/roundtable.yaml:2:14: ") for line in lines), lines


def test_discord_channel_must_be_a_number(tmp_path):
    config = MINI_CONFIG.replace("[console:general]", "[discord:notanumber]")
    (line,) = library_problems(tmp_path, config)
    assert "'discord:notanumber' is not a channel" in line and ":7:15:" in line


def test_slack_channel_must_be_an_id_not_a_name(tmp_path):
    config = MINI_CONFIG.replace("[console:general]", "[slack:general]")
    (line,) = library_problems(tmp_path, config)
    assert "Slack channel ID" in line


def test_a_bad_skip_date_does_not_hide_a_bad_holiday_country(tmp_path):
    config = MINI_CONFIG + "    skip_dates: [2026-13-45, soon]\n    holidays: {country: XX}\n"
    lines = library_problems(tmp_path, config)
    assert len(lines) == 3, lines
    assert "'2026-13-45' is not a valid date" in lines[0]
    assert "'soon' is not a date" in lines[1]
    assert "unknown country code 'XX'" in lines[2]


def test_a_config_error_does_not_hide_prompt_set_errors(tmp_path):
    config = MINI_CONFIG.replace("timezone: UTC", "timezone: Nowhere")
    broken = MINI_SET.replace("    summary: Alpha is", "    sumary: Alpha is", 1)
    lines = library_problems(tmp_path, config, {"mini": broken, "other": "title: [\n"})
    assert any(line.startswith("config/roundtable.yaml:1:11:") for line in lines)
    assert any(line.startswith("prompts/mini.yaml:7:5: unknown key 'sumary'") for line in lines)
    assert any(line.startswith("prompts/other.yaml:") for line in lines)


def test_an_unparseable_config_still_checks_the_default_prompts_folder(tmp_path):
    broken = MINI_SET.replace("id: beta", "id: Not A Slug")
    lines = library_problems(tmp_path, "timezone: [\n", {"mini": broken})
    assert any(line.startswith("config/roundtable.yaml:") for line in lines)
    assert any(line.startswith("prompts/mini.yaml:11:9:") for line in lines)


def test_a_broken_set_is_not_also_reported_as_unknown(tmp_path):
    lines = library_problems(tmp_path, sets={"mini": "title: [\n"})
    assert len(lines) == 1 and lines[0].startswith("prompts/mini.yaml:")


def test_a_bad_database_url_is_a_problem(tmp_path):
    (line,) = library_problems(tmp_path, MINI_CONFIG + "database_url: mysql://x@y/z\n")
    assert "unsupported database 'mysql'" in line and ":8:15:" in line


# ---- property-based: mutated files never crash the loader or validate ---------------------

NASTY = [
    "\x00", "\x08", "\x1b", "\t", "\r", "\n", "\ufeff", "\u2028", "\x85", "é", "💥",
    "[", "]", "{", "}", ":", ": ", "- ", "&x ", "*x", "&a [*a]", "<<: *x", "!!python/object ",
    "!!binary ", "!!int ", "!!timestamp ", "? ", "|", ">", "'", '"', "#", "%YAML 1.1\n---\n",
    "9999999999d", "9" * 400, "2026-13-45", "2026-02-30", "0x" + "f" * 50, ".inf", "-.nan",
    '"\\ud800"', '"\\0"', "~", "null", "yes", "[" * 80, "{a: " * 70, " " * 200, "---\n", "...\n",
]  # fmt: skip


@st.composite
def mutated(draw, text: str) -> str:
    """``text`` with a few insertions, deletions and duplicated lines."""
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "delete", "dup_line", "replace_value"]))
        pos = draw(st.integers(0, len(text)))
        if op == "insert":
            piece = draw(st.one_of(st.sampled_from(NASTY), st.text(max_size=8)))
            text = text[:pos] + piece + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 40)) :]
        elif op == "dup_line":
            lines = text.splitlines(keepends=True) or [""]
            i = pos % len(lines)
            lines.insert(i, lines[i])
            text = "".join(lines)
        else:
            start = text.find(": ", pos)
            if start >= 0:
                end = text.find("\n", start)
                end = len(text) if end < 0 else end
                text = text[: start + 2] + draw(st.sampled_from(NASTY)) + text[end:]
    return text


FUZZ = settings(
    max_examples=60,
    derandomize=True,
    database=None,  # no example files written into the checkout
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _validate(config: str, sets: dict[str, str]) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "config").mkdir()
        (root / "prompts").mkdir()
        (root / "config" / "roundtable.yaml").write_text(config, "utf-8", errors="surrogatepass")
        for name, text in sets.items():
            (root / "prompts" / f"{name}.yaml").write_text(text, "utf-8", errors="surrogatepass")
        try:
            load_library(root / "config" / "roundtable.yaml")
        except ProblemsFound as exc:
            assert all(POSITIONED.match(str(p)) for p in exc.problems), exc.problems
        return cli.main(["--config", str(root / "config" / "roundtable.yaml"), "validate"]), tmp


@FUZZ
@given(mutated(MINI_SET))
def test_mutated_prompt_sets_never_crash_the_loader_or_validate(capsys, text):
    _assert_validated_cleanly(capsys, MINI_CONFIG, {"mini": text})


@FUZZ
@given(mutated(MINI_CONFIG + "    close_after: 2d\n    skip_dates: [2026-12-24]\n"))
def test_mutated_configs_never_crash_the_loader_or_validate(capsys, text):
    _assert_validated_cleanly(capsys, text, {"mini": MINI_SET})


def _assert_validated_cleanly(capsys, config: str, sets: dict[str, str]) -> None:
    """``validate`` answers 0 or 1 (never a crash) and prints no traceback."""
    code, _ = _validate(config, sets)
    out = capsys.readouterr()
    assert code in (0, 1)
    assert "Traceback" not in out.err + out.out


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_loader(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.yaml"
        path.write_bytes(data)
        try:
            load_yaml(path)
        except ProblemsFound as exc:
            assert all(POSITIONED.match(str(p)) for p in exc.problems)


def test_validate_lists_every_problem_of_config_and_every_set_in_one_run(tmp_path, capsys):
    config = MINI_CONFIG.replace("[console:general]", "[discord:notanumber]")
    sets = {
        "mini": MINI_SET,
        "ctrl": "title: a\x08\n",
        "deep": "title: " + "[" * 200 + "\n",
        "loop": "title: &t [*t]\n",
        "bomb": BOMB,
        "keys": textwrap.dedent("title: x\nprompts: []\ncolour: red\n"),
    }
    path = write_library(tmp_path, config, sets)
    os.chdir(tmp_path)
    assert cli.main(["--config", str(path), "validate"]) == 1
    err = capsys.readouterr().err.splitlines()
    for name in ("config/roundtable.yaml", "ctrl.yaml", "deep.yaml", "loop.yaml", "bomb.yaml"):
        assert any(name in line for line in err), (name, err)
    assert any("keys.yaml" in line and "unknown key 'colour'" in line for line in err)
    assert err[-1] == f"{len(err) - 1} problems found."


def test_half_a_character_is_refused_before_it_reaches_a_database():
    (line,) = problems_of('title: ok\nsummary: "caf\\ud800"\n')
    assert line.startswith("x.yaml:2:10: invalid text:") and "half a character" in line
    assert parse_yaml('t: "\\U0001F4A5 \\u00e9"\n', "x.yaml").data == {"t": "💥 é"}


@pytest.mark.parametrize("escape", ["\\0", "\\e", "\\x07"])
def test_control_characters_written_as_escapes_are_refused(escape):
    (line,) = problems_of(f'title: ok\nsummary: "a{escape}b"\n')
    assert line.startswith("x.yaml:2:10: invalid text: control character U+")
    assert parse_yaml('t: "tab\\there\\nnewline"\n', "x.yaml").data == {"t": "tab\there\nnewline"}
