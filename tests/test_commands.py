"""The /discuss grammar, parsed once for every platform."""

import pytest

from bot.core.commands import CommandError, help_text, is_command, parse, split_numbered


def test_bare_discuss_is_help():
    assert parse("/discuss").name == "help"
    assert parse("").name == "help"


@pytest.mark.parametrize("text", ["/discuss now", "now", "  NOW  "])
def test_now_with_and_without_prefix(text):
    assert parse(text).name == "now"
    assert parse(text).prompt_id is None


def test_now_with_prompt_id():
    assert parse("/discuss now meta-culture-of-fear").prompt_id == "meta-culture-of-fear"


def test_answer_with_number_and_anonymous_in_any_order():
    a = parse("/discuss answer 2 --anonymous Teams need room: to fail")
    b = parse("answer --anonymous 2 Teams need room: to fail")
    for cmd in (a, b):
        assert (cmd.name, cmd.question, cmd.anonymous) == ("answer", 2, True)
        assert cmd.text == "Teams need room: to fail"


def test_answer_plain_text_keeps_numbers_inside():
    cmd = parse("answer we ran 3 hackathons")
    assert (cmd.question, cmd.anonymous, cmd.text) == (None, False, "we ran 3 hackathons")


def test_unknown_subcommand_suggests_closest():
    with pytest.raises(CommandError) as err:
        parse("/discuss resluts")
    assert "Did you mean `/discuss results`?" in str(err.value)


def test_unknown_subcommand_without_close_match_points_to_help():
    with pytest.raises(CommandError) as err:
        parse("/discuss xyzzy")
    assert "Did you mean" not in str(err.value)
    assert "/discuss help" in str(err.value)


def test_commands_without_arguments_refuse_extra_words():
    with pytest.raises(CommandError, match="takes no arguments"):
        parse("/discuss results now please")


def test_help_lists_every_command_once():
    text = help_text(is_admin=False)
    for name in ("help", "now", "answer", "results", "next", "sets", "preview"):
        assert text.count(f"/discuss {name}") == 1
    assert "(admin)" in text


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("2: teams need room", (2, "teams need room")),
        ("Q3: ship it", (3, "ship it")),
        ("note: not a number", (None, "note: not a number")),
        ("10:30 is too early", (10, "30 is too early")),
        ("just text", (None, "just text")),
    ],
)
def test_split_numbered(line, expected):
    assert split_numbered(line) == expected


def test_is_command():
    assert is_command("/discuss now")
    assert is_command("/discuss")
    assert not is_command("/discussion is good")
    assert not is_command("hello")
