"""Every kind of bad input gets a precise ``path:line:col: message``."""

import os
import textwrap

import pytest

from bot.library import load_library
from bot.yamlsource import ProblemsFound
from tests.support import MINI_CONFIG, MINI_SET, write_library


def problems(tmp_path, config=MINI_CONFIG, sets=None) -> list[str]:
    path = write_library(tmp_path, config, sets)
    os.chdir(tmp_path)  # prompt files are shown relative to the working directory
    with pytest.raises(ProblemsFound) as err:
        load_library(path)
    root = str(tmp_path) + "/"
    return [str(p).replace(root, "") for p in err.value.problems]


def test_the_shipped_content_is_valid():
    from tests.support import REPO

    library = load_library(REPO / "config" / "roundtable.yaml")
    assert library.summary() == "1 prompt set, 4 prompts, 1 schedule"


def test_malformed_yaml_points_at_the_spot(tmp_path):
    config = "timezone: UTC\nschedules:\n  - name: x\n    cron: [unclosed\n"
    (line,) = problems(tmp_path, config)
    assert line.startswith("config/roundtable.yaml:5:1: invalid YAML")


def test_unknown_key_is_an_error_at_the_key(tmp_path):
    config = MINI_CONFIG.replace("    cron:", "    scheudle: daily\n    cron:")
    assert problems(tmp_path, config) == ["config/roundtable.yaml:6:5: unknown key 'scheudle'"]


def test_unknown_top_level_key(tmp_path):
    assert problems(tmp_path, MINI_CONFIG + "timezon: UTC\n") == [
        "config/roundtable.yaml:8:1: unknown key 'timezon'"
    ]


def test_duplicate_yaml_key(tmp_path):
    lines = problems(tmp_path, MINI_CONFIG + "timezone: Europe/Berlin\n")
    assert lines == ["config/roundtable.yaml:8:1: duplicate key 'timezone' (first at line 1)"]


def test_duplicate_prompt_ids(tmp_path):
    other = MINI_SET.replace("id: beta", "id: alpha")
    lines = problems(tmp_path, sets={"mini": other})
    assert lines == [
        "prompts/mini.yaml:11:9: duplicate prompt id 'alpha' (first at prompts/mini.yaml:3)"
    ]


def test_duplicate_prompt_ids_across_sets(tmp_path):
    lines = problems(tmp_path, sets={"mini": MINI_SET, "more": MINI_SET})
    assert any("duplicate prompt id 'alpha'" in line for line in lines)


def test_prompt_without_questions(tmp_path):
    bad = MINI_SET.replace(
        '    questions:\n      - {text: "What is beta?", origin: ours}\n', "    questions: []\n"
    )
    lines = problems(tmp_path, sets={"mini": bad})
    assert len(lines) == 1 and "a prompt needs at least one question" in lines[0]
    assert lines[0].startswith("prompts/mini.yaml:15:16: prompts.1.questions:")


def test_prompt_missing_a_required_key(tmp_path):
    bad = MINI_SET.replace("    source: Example\n    summary: Beta", "    summary: Beta")
    (line,) = problems(tmp_path, sets={"mini": bad})
    assert line == "prompts/mini.yaml:11:5: 'source' is required"


def test_schedule_naming_unknown_prompt_set(tmp_path):
    config = MINI_CONFIG.replace("prompt_set: mini", "prompt_set: minnie")
    assert problems(tmp_path, config) == [
        "config/roundtable.yaml:5:17: unknown prompt set 'minnie' (known: mini)"
    ]


def test_invalid_cron(tmp_path):
    config = MINI_CONFIG.replace('"0 10 * * mon"', '"0 25 * * mon"')
    (line,) = problems(tmp_path, config)
    assert line.startswith("config/roundtable.yaml:6:11: schedules.0.cron: invalid cron expression")


def test_cron_with_wrong_field_count(tmp_path):
    config = MINI_CONFIG.replace('"0 10 * * mon"', '"every monday"')
    (line,) = problems(tmp_path, config)
    assert "is not a five-field cron expression" in line and ":6:11:" in line


def test_invalid_time_zone(tmp_path):
    config = MINI_CONFIG.replace("timezone: UTC", "timezone: Mars/Olympus")
    assert problems(tmp_path, config) == [
        "config/roundtable.yaml:1:11: timezone: unknown time zone 'Mars/Olympus' "
        "(use an IANA name like Europe/Berlin)"
    ]


def test_unknown_channel_scheme(tmp_path):
    config = MINI_CONFIG.replace("[console:general]", "[teams:general]")
    (line,) = problems(tmp_path, config)
    assert line.startswith("config/roundtable.yaml:7:15: schedules.0.channels:")
    assert "'teams:general' is not a channel" in line


def test_bad_duration(tmp_path):
    config = MINI_CONFIG + "    close_after: soon\n"
    (line,) = problems(tmp_path, config)
    assert ":8:18:" in line and "'soon' is not a duration" in line


def test_all_problems_reported_at_once(tmp_path):
    config = MINI_CONFIG.replace("timezone: UTC", "timezone: Nowhere").replace(
        "prompt_set: mini", "prompt_set: mini\n    colour: blue"
    )
    assert len(problems(tmp_path, config)) == 2


def test_empty_prompts_directory(tmp_path):
    lines = problems(tmp_path, sets={})
    assert len(lines) == 1 and "no prompt sets" in lines[0]


def test_config_that_is_not_a_mapping(tmp_path):
    (line,) = problems(tmp_path, "- just\n- a list\n")
    assert line.startswith("config/roundtable.yaml:1:1:")


def test_problem_lines_use_one_based_positions(tmp_path):
    config = textwrap.dedent(
        """\
        timezone: UTC
        admins:
          slack: [U1]
          telegram: [x]
        """
    )
    assert problems(tmp_path, config) == ["config/roundtable.yaml:4:3: unknown key 'telegram'"]
