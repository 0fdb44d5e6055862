"""Discord as real Discord behaves (issue 13): each test drives the real adapter and the
real discord.py client against the loopback fake, whose payloads, limits and errors
follow Discord's documentation (see ``fake_discord``'s docstring)."""

from __future__ import annotations

import logging

import pytest

from bot.adapters.discord.adapter import FAILED, REPLY_PREFIX
from bot.adapters.discord.embeds import (
    DESCRIPTION_LIMIT,
    FIELD_VALUE_LIMIT,
    MESSAGE_LIMIT,
    chunks,
    escape,
    round_messages,
    summary_texts,
)
from bot.adapters.discord.forms import form_layout, split_rest
from bot.core.dispatch import PostFailed
from bot.core.events import Answer, AnswerGroup, PromptView, RoundPost, Summary, ThreadPost
from bot.core.handlers import UNREADABLE
from tests.discord.conftest import ADMIN, MEMBER, ROLE_ADMIN, make_bot
from tests.discord.fake_discord import GUILD_MESSAGES, GUILDS, MESSAGE_CONTENT
from tests.discord.test_discord_adapter import eventually, responses

EPHEMERAL = 64


def how_to_answer(message: dict) -> str:
    [field] = [
        f for e in message["embeds"] for f in e.get("fields", []) if f["name"] == "How to answer"
    ]
    return field["value"]


# ---- 1 and 9: thread replies and intents ---------------------------------------------------


async def test_default_config_asks_only_for_guilds_and_never_invites_thread_replies(tmp_path, fake):
    bot = await make_bot(tmp_path, fake, read_replies=False)
    try:
        assert fake.identifies[-1]["intents"] == GUILDS
        message = await bot.open_round(bot.channels[0])
        text = how_to_answer(message)
        assert "Reply in" not in text and "Share your thoughts" in text
        assert "/discuss answer" in text and "does not read replies" in text
        token = await fake.slash(MEMBER, bot.channels[0], "help")
        [help_text] = await bot.replies(token)
        assert "reply in the round's thread" not in help_text
        assert "Share your thoughts" in help_text
    finally:
        await bot.stop()


async def test_reading_replies_asks_for_messages_and_content_and_invites_replies(bot):
    assert bot.fake.identifies[-1]["intents"] == GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT
    message = await bot.open_round(bot.channels[0])
    assert "Reply in this message's thread" in how_to_answer(message)


async def test_an_unreadable_reply_gets_one_pointer_per_person_per_round(tmp_path, fake):
    """read_thread_replies on, Message Content not granted: Discord delivers replies with
    empty content. Each person is pointed to the button once per round; nothing is lost
    silently and nothing is stored."""
    fake.grant_message_content = False
    bot = await make_bot(tmp_path, fake, read_replies=True)
    try:
        assert fake.identifies[-1]["intents"] == GUILDS | GUILD_MESSAGES  # content dropped
        message = await bot.open_round(bot.channels[0])
        assert "does not read replies" in how_to_answer(message)  # new rounds say so
        thread = int(message["id"])
        await fake.user_message(MEMBER, thread, "1: my first thought")
        await fake.user_message(MEMBER, thread, "2: and another")
        await fake.user_message(ROLE_ADMIN, thread, "me too")

        def pointers() -> list[dict]:
            return [m for m in fake.channel_messages(thread) if m["author"]["bot"]]

        await fake.wait_until(lambda: len(pointers()) >= 2)
        assert await responses(bot) == []
        # a message that mentions the bot carries its text even without the intent
        await fake.user_message(MEMBER, thread, f"<@{fake.APP}> 2: read this one")
        [row] = await eventually(lambda: responses(bot))
        assert row.question == 2
        # by now every earlier reply has been handled: one pointer per person
        assert [p["content"] for p in pointers()] == [UNREADABLE, UNREADABLE]
        replied_to = [fake.messages[int(p["message_reference"]["message_id"])] for p in pointers()]
        authors = sorted(m["author"]["id"] for m in replied_to)
        assert authors == sorted([str(MEMBER.id), str(ROLE_ADMIN.id)])
        assert all(p["allowed_mentions"]["parse"] == [] for p in pointers())  # pings nobody
    finally:
        await bot.stop()


# ---- 2: no permission to create threads ----------------------------------------------------


async def test_without_create_public_threads_everything_goes_to_the_channel(tmp_path, fake, caplog):
    bot = await make_bot(tmp_path, fake)
    try:
        channel = bot.channels[0]
        fake.no_threads.add(channel)
        with caplog.at_level(logging.ERROR, logger="bot.adapters.discord"):
            message = await bot.open_round(channel)
            round_ = await eventually(
                lambda: bot.runtime.store.get_round(1), until=lambda r: r.status == "posted"
            )
        assert round_.message_ref == message["id"]
        assert round_.thread_ref == f"{REPLY_PREFIX}{message['id']}"  # never the message id
        assert any("Create Public Threads" in r.getMessage() for r in caplog.records)
        [notice] = [m for m in fake.channel_messages(channel) if not m["embeds"]]
        assert "Create Public Threads" in notice["content"]
        assert notice["message_reference"]["message_id"] == message["id"]
        # an anonymous answer and the digest go to the channel, replying to the round
        token = await fake.slash(MEMBER, channel, "answer", text="Quietly", anonymous=True)
        await bot.replies(token)
        token = await fake.slash(ADMIN, channel, "close")
        await bot.replies(token)

        def texts() -> list[dict]:
            return [m for m in fake.channel_messages(channel) if not m["embeds"]][1:]

        await fake.wait_until(lambda: len(texts()) >= 2)
        posts = texts()
        assert "Quietly" in posts[0]["content"] and "Digest" in posts[1]["content"]
        assert all(p["message_reference"]["message_id"] == message["id"] for p in posts)
        assert not fake.sent("POST", rf"/channels/{message['id']}/messages")  # no 404s
    finally:
        await bot.stop()


async def test_a_deleted_thread_does_not_lose_the_digest(bot):
    message = await bot.open_round(bot.channels[0])
    thread = int(message["id"])
    del bot.fake.threads[thread]  # someone deleted the thread: 404 10003 from now on
    token = await bot.fake.slash(ADMIN, bot.channels[0], "close")
    await bot.replies(token)
    [digest] = await bot.fake.wait_until(
        lambda: [m for m in bot.fake.channel_messages(bot.channels[0]) if not m["embeds"]]
    )
    assert "Digest" in digest["content"]
    assert digest["message_reference"]["message_id"] == message["id"]


# ---- 3: /discuss answer's typed options ----------------------------------------------------


@pytest.mark.parametrize(
    ("options", "stored"),
    [
        (
            {"text": "3 teams I worked with did this"},
            (None, "3 teams I worked with did this", False),
        ),
        ({"text": "-a is how I see it", "anonymous": False}, (None, "-a is how I see it", False)),
        (
            {"text": "--anonymous 1 stays text", "question": 2, "anonymous": True},
            (2, "--anonymous 1 stays text", True),
        ),
        ({"text": "2: my view", "question": 1}, (1, "2: my view", False)),
    ],
)
async def test_typed_answer_options_are_the_only_source_and_the_text_is_stored_as_typed(
    bot, options, stored
):
    await bot.open_round(bot.channels[0])
    token = await bot.fake.slash(MEMBER, bot.channels[0], "answer", **options)
    await bot.replies(token)
    [row] = await responses(bot)
    assert (row.question, row.text, row.anonymous) == stored


# ---- 4: long prompts -----------------------------------------------------------------------


def long_set(summary: str, questions: list[str]) -> dict[str, str]:
    qs = "\n".join(f'      - {{text: "{q}", origin: ours}}' for q in questions)
    return {
        "long": f"""\
title: Long set
prompts:
  - id: long
    title: A long article
    source: Example
    summary: "{summary}"
    questions:
{qs}
"""
    }


def question(i: int, size: int) -> str:
    return (f"Q{i} " + "why does this matter so much to our team * _ " * 40)[: size - 1] + "?"


async def test_a_long_prompt_keeps_every_question_and_the_instructions(tmp_path, fake):
    summary = ("A summary sentence about the article, with *stars* and _under_ scores. " * 40)[
        :2500
    ]
    questions = [question(i, 150) for i in range(1, 9)]
    bot = await make_bot(tmp_path, fake, sets=long_set(summary, questions))
    try:
        message = await bot.open_round(bot.channels[0], prompt="long")
        fields = [f for e in message["embeds"] for f in e.get("fields", [])]
        assert [f["value"] for f in fields[:8]] == [escape(q) for q in questions]
        assert fields[-1]["name"] == "How to answer"
        assert message["embeds"][0]["description"] == escape(summary)
    finally:
        await bot.stop()


def test_a_huge_prompt_is_split_across_fields_embeds_and_messages_within_the_limits():
    summary = "Word " * 2500 + "\\" * 9  # long, and ending in backslashes
    questions = tuple((question(i, 1500), "ours") for i in range(1, 31))
    source = "A very long source name " * 200  # the round key must still end the footer
    prompt = PromptView("p", "Title " * 60, source, None, summary.strip(), questions)
    post = RoundPost(1, "rt-1", "discord:1", prompt, anonymous_allowed=True)
    messages = round_messages(post)
    assert len(messages) > 1
    for embeds in messages:
        assert len(embeds) <= 10 and sum(len(e) for e in embeds) <= 6000
        for e in embeds:
            assert len(e.description or "") <= DESCRIPTION_LIMIT and len(e.fields) <= 25
            assert all(len(f.value) <= FIELD_VALUE_LIMIT for f in e.fields)
    embeds = [e for m in messages for e in m]
    assert "".join(e.description or "" for e in embeds).replace(" ", "") == escape(
        summary.strip()
    ).replace(" ", "")
    for i, (text, _) in enumerate(questions, 1):
        pieces = [
            f.value for e in embeds for f in e.fields if f.name.split(" (")[0] == f"Question {i}"
        ]
        assert " ".join(pieces).replace(" ", "") == escape(text).replace(" ", "")
    assert [f.name for f in embeds[-1].fields][-1] == "How to answer"
    assert messages[0][-1].footer.text.endswith(" · rt-1")


def test_splitting_never_ends_a_part_on_a_lone_backslash():
    for text in ["*" * 5000, "a*" * 3000, "x" * 1999 + "*" + "y" * 100, "\\" * 4001]:
        escaped = escape(text)
        parts = chunks(escaped, MESSAGE_LIMIT)
        assert "".join(parts) == escaped
        for part in parts:
            assert len(part) <= MESSAGE_LIMIT
            trailing = len(part) - len(part.rstrip("\\"))
            assert trailing % 2 == 0, part[-10:]


def test_a_long_digest_is_split_into_messages_within_the_content_limit():
    answers = tuple(Answer("x\\*" * 400 + str(i), f"P{i}") for i in range(10))
    summary = Summary(1, "discord:1", None, "T", 10, (AnswerGroup(1, "Q?", answers),), True)
    texts = summary_texts(summary)
    assert len(texts) > 1 and all(len(t) <= MESSAGE_LIMIT for t in texts)
    assert all((len(t) - len(t.rstrip("\\"))) % 2 == 0 for t in texts)


# ---- 5: the form ---------------------------------------------------------------------------


async def test_the_form_shows_long_questions_in_full_and_keeps_paragraphs_with_them(tmp_path, fake):
    questions = [question(i, 150) for i in range(1, 9)]
    bot = await make_bot(tmp_path, fake, sets=long_set("Short summary.", questions))
    try:
        message = await bot.open_round(bot.channels[0], prompt="long")
        token = await fake.click(MEMBER, int(message["id"]), "rt:answer:1")
        [callback] = await fake.wait_until(lambda: fake.replies_to(token))
        assert callback["type"] == 9  # accepted: within the fake's documented limits
        modal = callback["data"]
        [display] = [c for c in modal["components"] if c["type"] == 10]
        assert all(escape(q) in display["content"] for q in questions)
        labels = [c for c in modal["components"] if c["type"] == 18]
        assert [c["component"]["custom_id"] for c in labels] == ["q1", "q2", "rest", "anonymous"]
        rest = "3: third\n\n6: sixth, first paragraph\n\nsecond paragraph of 6\n8: eighth"
        token = await fake.submit_modal(
            MEMBER, bot.channels[0], modal, {"q1": "one", "rest": rest, "anonymous": False}
        )
        await bot.replies(token)
        saved = {r.question: r.text for r in await responses(bot)}
        assert saved == {
            1: "one",
            3: "third",
            6: "sixth, first paragraph\n\nsecond paragraph of 6",
            8: "eighth",
        }
    finally:
        await bot.stop()


def test_short_questions_each_get_a_labelled_box_with_the_question_in_full():
    questions = tuple(
        (f"Question number {i} asks something rather specific?", "ours") for i in (1, 2, 3)
    )
    layout = form_layout(questions, anonymous_allowed=True)
    assert layout.questions_text == ()
    assert [(b.label, b.description) for b in layout.inputs] == [
        (f"Question {i}", text) for i, (text, _) in enumerate(questions, 1)
    ]
    assert layout.anonymous_box


def test_text_before_any_number_answers_the_first_shared_question():
    assert split_rest("intro\n\nmore\n7: seven", 5, 7) == {5: "intro\n\nmore", 7: "seven"}
    assert split_rest("9: out of range", 5, 7) == {5: "9: out of range"}


async def test_an_old_anonymous_button_opens_the_form_with_the_box_ticked(bot):
    message = await bot.open_round(bot.channels[0])
    # a round posted by an earlier version carries a second, anonymous button
    anon = {"type": 2, "style": 2, "label": "Share anonymously", "custom_id": "rt:answer:1:anon"}
    message["components"][0]["components"].append(anon)
    token = await bot.fake.click(MEMBER, int(message["id"]), "rt:answer:1:anon")
    [callback] = await bot.fake.wait_until(lambda: bot.fake.replies_to(token))
    [box] = [c for c in callback["data"]["components"] if c["type"] == 18][-1:]
    assert box["component"]["default"] is True


# ---- 6: command scopes ---------------------------------------------------------------------


async def test_commands_register_with_contexts_and_without_dm_permission(bot):
    [put] = bot.fake.command_syncs()
    [command] = put.body
    assert command["contexts"] == [0] and command["integration_types"] == [0]
    assert "dm_permission" not in command


async def test_switching_from_global_to_a_guild_removes_the_global_command(tmp_path, fake):
    bot = await make_bot(tmp_path, fake, guild_ids=[])
    try:
        assert [c["name"] for c in fake.commands["global"]] == ["discuss"]
        assert fake.GUILD not in fake.commands
        bot.configure(guild_ids=[fake.GUILD])
        await bot.restart()
        assert fake.commands["global"] == []  # the server no longer shows /discuss twice
        assert [c["name"] for c in fake.commands[fake.GUILD]] == ["discuss"]
        bot.configure(guild_ids=[])  # and back: the guild's copy goes
        await bot.restart()
        assert fake.commands[fake.GUILD] == []
        assert [c["name"] for c in fake.commands["global"]] == ["discuss"]
        syncs = len(fake.command_syncs())
        await bot.restart()  # nothing changed: nothing written
        assert len(fake.command_syncs()) == syncs
    finally:
        await bot.stop()


async def test_a_command_removed_on_discords_side_is_registered_again(bot):
    assert len(bot.fake.command_syncs()) == 1
    bot.fake.commands[bot.fake.GUILD] = []  # e.g. deleted by hand, or another deploy
    await bot.restart()
    assert len(bot.fake.command_syncs()) == 2
    assert [c["name"] for c in bot.fake.commands[bot.fake.GUILD]] == ["discuss"]


async def test_the_stored_hash_includes_the_scope(bot):
    before = await bot.runtime.store.get_value("discord.command_tree_hash")
    bot.configure(guild_ids=[])
    await bot.restart()
    after = await bot.runtime.store.get_value("discord.command_tree_hash")
    assert before != after


async def test_autocomplete_offers_prompt_ids(bot):
    token = await bot.fake.autocomplete(ADMIN, bot.channels[0], "now", "prompt_id", "al")
    [callback] = await bot.fake.wait_until(lambda: bot.fake.replies_to(token))
    assert callback["type"] == 8
    assert callback["data"]["choices"] == [{"name": "alpha", "value": "alpha"}]


# ---- 7: permanent refusals -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("revoke", "status", "code"),
    [("forbidden", 403, 50001), ("no_send", 403, 50013), ("deleted", 404, 10003)],
)
async def test_a_channel_refusing_after_the_first_post_raises_post_failed(
    bot, revoke, status, code
):
    channel = bot.channels[1]
    message = await bot.open_round(channel)
    if revoke == "deleted":
        del bot.fake.channels[channel]
        del bot.fake.threads[int(message["id"])]
    else:
        getattr(bot.fake, revoke).add(channel)
        getattr(bot.fake, revoke).add(int(message["id"]))
    round_ = await bot.runtime.store.get_round(1)
    posts = [
        ThreadPost(1, f"discord:{channel}", round_.thread_ref, "notice", "hello"),
        Summary(1, f"discord:{channel}", round_.thread_ref, "T", 0, (), True),
        RoundPost(
            2, "rt-2", f"discord:{channel}", PromptView.from_json(round_.prompt_snapshot), True
        ),
    ]
    for post in posts:
        with pytest.raises(PostFailed) as failed:
            await bot.adapter.post(post)
        assert f"{status}, code {code}" in str(failed.value)


# ---- 8: every interaction ends with a message ----------------------------------------------


async def test_a_failure_after_defer_ends_with_a_message(bot, monkeypatch):
    await bot.open_round(bot.channels[0])

    async def broken(ticket):
        raise RuntimeError("database went away")

    monkeypatch.setattr(bot.adapter.ports, "process", broken)
    token = await bot.fake.slash(MEMBER, bot.channels[0], "answer", text="hello")
    assert await bot.replies(token) == [FAILED]
    callback, follow_up = bot.fake.replies_to(token)
    assert callback["type"] == 5 and follow_up["flags"] & EPHEMERAL


async def test_a_failing_form_submit_ends_with_a_message(bot, monkeypatch):
    message = await bot.open_round(bot.channels[0])
    token = await bot.fake.click(MEMBER, int(message["id"]), "rt:answer:1")
    [callback] = await bot.fake.wait_until(lambda: bot.fake.replies_to(token))

    async def broken(ticket):
        raise RuntimeError("database went away")

    monkeypatch.setattr(bot.adapter.ports, "process", broken)
    token = await bot.fake.submit_modal(MEMBER, bot.channels[0], callback["data"], {"q1": "x"})
    assert await bot.replies(token) == [FAILED]


async def test_a_failing_button_answers_instead_of_timing_out(bot, monkeypatch):
    message = await bot.open_round(bot.channels[0])

    async def broken(round_id):
        raise RuntimeError("database went away")

    monkeypatch.setattr(bot.runtime.store, "get_round", broken)
    token = await bot.fake.click(MEMBER, int(message["id"]), "rt:answer:1")
    [callback] = await bot.fake.wait_until(lambda: bot.fake.replies_to(token))
    assert callback["type"] == 4 and callback["data"]["content"] == FAILED
    assert callback["data"]["flags"] & EPHEMERAL


def test_typed_answers_and_unreadable_replies_survive_the_inbox():
    """An event is stored before the ack and may be processed after a restart: the typed
    options and the "cannot read" mark must come back from the inbox as they went in."""
    from bot.core.codec import decode_incoming, encode_incoming
    from bot.core.events import Actor, CommandInvoked, MessagePosted, TypedAnswer

    actor = Actor("discord", "22", "Bob")
    typed = CommandInvoked(actor, "discord:1", "answer", TypedAnswer("3 teams", 2, True))
    unread = MessagePosted(actor, "discord:1", "", "9", "8", readable=False)
    for event in (typed, unread, CommandInvoked(actor, "discord:1", "help")):
        assert decode_incoming(encode_incoming(event)) == event
