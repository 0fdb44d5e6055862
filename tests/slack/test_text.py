"""Text as Slack sends it: encoded ``& < >`` in, escaped exactly once out, nothing cut,
and edits read like new replies (issue 12, defects 1–3)."""

from __future__ import annotations

import json

from bot.adapters.slack import blocks
from bot.core.events import Answer, AnswerGroup, PromptView, RoundPost, Summary
from tests.slack.conftest import (
    ADMIN,
    deleted_event,
    edited_event,
    harness,
    message_event,
    slack_ts,
)
from tests.slack.fake_slack import block_problems


async def open_round(slack) -> tuple[int, str]:
    assert await slack.command("now") == 200
    await slack.settle()
    round_ = await slack.runtime.store.open_round_in("slack:C1")
    return round_.id, round_.message_ref


async def reply(slack, text, n, thread_ts, user="UBOB") -> None:
    event = message_event(text, user=user, ts=slack_ts(n), thread_ts=thread_ts)
    assert await slack.event(event, f"Ev{n}") == 200
    await slack.settle()


def shown(message: dict) -> str:
    return json.dumps(message.get("blocks") or message.get("text"))


def sections_text(messages: list[dict]) -> str:
    """All section text of some messages, run together (a long answer spans sections)."""
    return "".join(
        b["text"]["text"].replace("\n", "")
        for m in messages
        for b in m["blocks"]
        if b["type"] == "section"
    )


# ---- 1: decode on the way in, escape once on the way out -------------------------------


async def test_thread_reply_with_ampersands_is_stored_as_typed_and_shown_once_escaped(slack):
    round_id, ts = await open_round(slack)
    await reply(slack, "1: R&D <3 is a>b", 1, ts)
    [row] = await slack.runtime.store.responses(round_id)
    assert row.text == "R&D <3 is a>b"  # plain text in the database
    await slack.command("results", user="UBOB")
    await slack.settle()
    results = shown(slack.fake.responses[-1])
    await slack.command("close")
    await slack.settle()
    digest = shown(slack.fake.posted("C1")[-1])
    for text in (results, digest):
        assert "R&amp;D &lt;3 is a&gt;b" in text
        assert "&amp;amp;" not in text and "&amp;lt;" not in text


async def test_slash_command_text_is_decoded_and_anonymous_repost_escaped_once(slack):
    round_id, ts = await open_round(slack)
    await slack.command("answer --anonymous Q&A <b>", user="UBOB")
    await slack.settle()
    [row] = await slack.runtime.store.responses(round_id)
    assert row.text == "Q&A <b>"
    repost = slack.fake.posted("C1")[-1]
    assert repost["thread_ts"] == ts
    assert "Q&amp;A &lt;b&gt;" in shown(repost) and "&amp;amp;" not in shown(repost)


async def test_the_length_limit_counts_what_the_person_typed(slack):
    round_id, ts = await open_round(slack)
    typed = "&" * 10 + "x" * 3980  # 3,990 characters typed; 4,030 as Slack sends them
    await reply(slack, typed, 1, ts)
    [row] = await slack.runtime.store.responses(round_id)
    assert row.text == typed


async def test_form_values_arrive_unencoded_and_are_kept_as_typed(slack):
    round_id, _ = await open_round(slack)
    await slack.press_share(round_id, "UBOB")
    await slack.settle()
    view = slack.fake.calls_to("views.open")[0]["view"]
    assert await slack.submit(view, {1: "Fish &amp; chips & <peas>"}, "UBOB") == 200
    await slack.settle()
    [row] = await slack.runtime.store.responses(round_id)
    assert row.text == "Fish &amp; chips & <peas>"


# ---- 2: nothing cut silently --------------------------------------------------------

LONG_SET = """\
title: Long set
prompts:
  - id: long
    title: {title}
    source: Example
    summary: {summary}
    questions:
{questions}
"""


def long_set(title: str, summary: str, questions: list[str]) -> dict[str, str]:
    qs = "\n".join(f'      - {{text: "{q}", origin: ours}}' for q in questions)
    return {"mini": LONG_SET.format(title=title, summary=summary, questions=qs)}


async def test_a_long_round_post_keeps_every_question_and_the_whole_title(
    tmp_path, sqlite_url, fake
):
    title = "T" * 200
    summary = " ".join(["word"] * 700)  # about 3,500 characters
    questions = [f"Question number {i} " + "q" * 900 for i in range(1, 6)]
    sets = long_set(title, summary, questions)
    async with harness(tmp_path, sqlite_url, fake, sets=sets) as slack:
        await open_round(slack)
        [post] = slack.fake.posted("C1")  # Slack accepted the blocks (validated by the fake)
        assert block_problems(post["blocks"]) == []
        text = shown(post)
        for i in range(1, 6):
            assert f"{i}. Question number {i} " + "q" * 900 in text
        assert summary.count("word") == text.count("word")
        assert title in text  # the header is shortened, the full title is right below
        await slack.command("close")
        await slack.settle()
        digest = slack.fake.posted("C1")[-1]
        assert digest["blocks"][0]["type"] == "header" and title in shown(digest)
        assert block_problems(digest["blocks"]) == []


async def test_results_and_digest_show_every_long_answer_and_only_the_first_part_is_broadcast(
    slack,
):
    _, ts = await open_round(slack)
    for n in range(12):
        await slack.command(f"answer 1 answer-{n:02d} " + "y" * 3900, user=f"U{n:02d}")
        await slack.settle()
    before = len(slack.fake.responses)
    await slack.command("results", user="UBOB")
    await slack.settle()
    results = slack.fake.responses[before:]
    assert 1 < len(results) <= 5
    for response in results:
        assert block_problems(response["blocks"]) == []
    text = sections_text(results)
    for n in range(12):  # every answer whole, or the last message says what is missing
        if f"answer-{n:02d} " + "y" * 3900 not in text:
            assert "did not fit here" in json.dumps(results[-1]) and len(results) == 5
            break
    await slack.command("close")
    await slack.settle()
    digest = [m for m in slack.fake.posted("C1") if m.get("thread_ts") == ts]
    assert len(digest) > 1
    assert [bool(m.get("reply_broadcast")) for m in digest] == [True] + [False] * (len(digest) - 1)
    joined = sections_text(digest)
    for n in range(12):
        assert f"answer-{n:02d} " + "y" * 3900 in joined


def test_results_beyond_five_replies_say_how_many_answers_are_left_out():
    answers = tuple(Answer(f"a{n} " + "z" * 2900, f"P{n}") for n in range(40))
    summary = Summary(1, "slack:C1", "1.0", "Title", 40, (AnswerGroup(1, "Q?", answers),), False)
    messages = blocks.summary_messages(summary, max_messages=5)
    assert len(messages) == 5
    note = messages[-1][-1]["elements"][0]["text"]
    shown_answers = sum(
        1
        for m in messages
        for b in m
        if b["type"] == "section"
        for a in answers
        if blocks.escape(a.text) in b["text"]["text"]
    )
    assert f"{40 - shown_answers} more answers did not fit here" in note
    assert all(block_problems(m) == [] for m in messages)


def test_a_modal_label_that_must_be_cut_says_where_the_rest_is():
    view = blocks.answer_modal(1, "C1", "Title", ["Why " + "w" * 2500, "Short?"], True)
    label = view["blocks"][1]["label"]["text"]
    assert len(label) <= 2000 and "full question is in the round's post" in label
    assert block_problems(view["blocks"], max_blocks=100) == []


def test_a_long_thread_post_is_split_not_cut():
    prompt = PromptView("p", "T", "S", None, "sum", (("q", "ours"),))
    post = RoundPost(1, "rt-1", "slack:C1", prompt, True)
    assert block_problems(blocks.round_blocks(post)) == []
    pieces = blocks.split_text(blocks.escape("a&b " * 2000), 3000)
    assert all(len(p) <= 3000 for p in pieces)
    assert "".join(p if p.endswith(" ") else p + " " for p in pieces).count("a&amp;b") == 2000


# ---- 3: edits -----------------------------------------------------------------------


async def test_an_edited_reply_is_read_by_the_same_rule_as_a_new_one(slack):
    round_id, ts = await open_round(slack)
    await reply(slack, "first words", 1, ts)
    edit = edited_event(
        "10:30 works for me",
        "first words",
        user="UBOB",
        ts=slack_ts(1),
        thread_ts=ts,
        edit_ts=slack_ts(2),
    )
    assert await slack.event(edit, "Ev2") == 200
    await slack.settle()
    [row] = await slack.runtime.store.responses(round_id)
    assert (row.question, row.text) == (None, "10:30 works for me")  # not question 10
    edit = edited_event(
        "2: R&D",
        "10:30 works for me",
        user="UBOB",
        ts=slack_ts(1),
        thread_ts=ts,
        edit_ts=slack_ts(3),
    )
    await slack.event(edit, "Ev3")
    await slack.settle()
    [row] = await slack.runtime.store.responses(round_id)
    assert (row.question, row.text) == (2, "R&D")


async def test_a_closed_rounds_answers_do_not_change_on_edit_or_delete(slack):
    round_id, ts = await open_round(slack)
    await reply(slack, "1: as it was", 1, ts)
    await slack.command("close", user=ADMIN)
    await slack.settle()
    edit = edited_event(
        "1: rewritten later",
        "1: as it was",
        user="UBOB",
        ts=slack_ts(1),
        thread_ts=ts,
        edit_ts=slack_ts(2),
    )
    await slack.event(edit, "Ev2")
    await slack.settle()
    [row] = await slack.runtime.store.responses(round_id)
    assert (row.question, row.text) == (1, "as it was")
    gone = deleted_event(
        "1: as it was", user="UBOB", ts=slack_ts(1), thread_ts=ts, delete_ts=slack_ts(3)
    )
    await slack.event(gone, "Ev3")
    await slack.settle()
    [row] = await slack.runtime.store.responses(round_id)
    assert row.text == "as it was"


def test_a_reply_longer_than_five_messages_says_what_did_not_fit():
    from bot.core.events import Reply

    reply = Reply("\n".join(f"line {n} " + "r" * 100 for n in range(400)))
    payloads = blocks.reply_payloads(reply, max_messages=5)
    assert len(payloads) == 5 and all(len(p["text"]) <= 4000 for p in payloads)
    assert "more characters did not fit" in payloads[-1]["text"]
    everything = blocks.reply_payloads(reply)
    assert "".join(p["text"] for p in everything).count("line ") == 400


async def test_results_needing_more_than_five_replies_end_with_what_was_left_out(slack):
    await open_round(slack)
    for n in range(30):
        await slack.command(f"answer 1 answer-{n:02d} " + "x" * 2900, user=f"U{n:02d}")
        await slack.settle()
    before = len(slack.fake.responses)
    await slack.command("results", user="UBOB")
    await slack.settle()
    results = slack.fake.responses[before:]
    assert len(results) == 5  # all a response_url takes
    assert all(block_problems(r["blocks"]) == [] for r in results)
    text = sections_text(results)
    shown_answers = sum(f"answer-{n:02d} " + "x" * 2900 in text for n in range(30))
    note = results[-1]["blocks"][-1]["elements"][0]["text"]
    assert f"{30 - shown_answers} more answers did not fit here" in note
    assert 0 < shown_answers < 30
