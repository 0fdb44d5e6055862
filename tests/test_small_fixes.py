"""The smaller items of "bad input never stops the bot": each with a clear message."""

from __future__ import annotations

import json

import pytest

from bot.core import render
from bot.core.events import PromptView, RoundPost
from bot.drafting import Draft, same_article
from bot.yamlsource import Problem
from tests.support import MINI_SET, write_library


def _post(questions: int) -> RoundPost:
    view = PromptView(
        "p",
        "Title",
        "Source",
        None,
        "Summary.",
        tuple((f"Q{i}?", "ours") for i in range(questions)),
    )
    return RoundPost(1, "k", "console:general", view, True)


@pytest.mark.parametrize("questions", [1, 2])
def test_the_answer_question_2_hint_only_when_there_is_a_question_2(questions):
    from bot.adapters.discord.embeds import round_messages
    from bot.adapters.slack.blocks import round_blocks

    post = _post(questions)
    embeds = [e.to_dict() for message in round_messages(post) for e in message]
    shown = [render.round_text(post), json.dumps(round_blocks(post)), json.dumps(embeds)]
    for text in shown:
        assert ("2:" in text) == (questions > 1), text


def test_draft_append_recognises_the_same_article_by_url(tmp_path):
    write_library(tmp_path, sets={"mini": MINI_SET})
    draft = Draft(
        id="x",
        title="A different title",
        source="Example",
        source_known=True,
        url="http://www.example.org/alpha/#comments",
        summary="s",
        questions=["q?"],
    )
    where = same_article(tmp_path / "prompts", draft)
    assert where is not None and "as 'alpha' (same URL)" in where
    other = Draft("y", "Something new", "Example", True, "https://example.org/new", "s", ["q?"])
    assert same_article(tmp_path / "prompts", other) is None


async def test_discuss_sets_lists_at_most_twenty_problems(chat):
    chat.library.last_problems = [Problem("p.yaml", i, 1, f"problem {i}") for i in range(1, 501)]
    text = await chat.say("/discuss sets")
    assert "500 problems" in text and "problem 20" in text and "problem 21" not in text
    assert "… and 480 more (`roundtable validate` lists them all)" in text
