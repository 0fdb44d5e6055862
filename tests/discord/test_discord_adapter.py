"""The Discord adapter end to end: the real discord.py client against the loopback fake."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

from bot.adapters.discord.client import PORTAL_SWITCH, member_role_ids
from bot.adapters.discord.forms import form_layout, parse_form
from bot.core.dispatch import Posted
from bot.core.rounds import round_post
from bot.storage.models import Response
from tests.discord.conftest import ADMIN, MEMBER, ROLE_ADMIN, Bot, make_bot

EPHEMERAL = 64


async def responses(bot: Bot, round_id: int = 1) -> list[Response]:
    return await bot.runtime.store.responses(round_id)


def thread_texts(bot: Bot, thread_id: int) -> list[str]:
    return [m["content"] for m in bot.fake.channel_messages(thread_id)]


async def test_help_and_next_are_ephemeral_follow_ups(bot):
    token = await bot.fake.slash(MEMBER, bot.channels[0], "help")
    [text] = await bot.replies(token)
    assert "/discuss answer" in text
    callback, follow_up = bot.fake.replies_to(token)
    assert callback["type"] == 5 and callback["data"]["flags"] & EPHEMERAL  # deferred first
    assert follow_up["flags"] & EPHEMERAL
    token = await bot.fake.slash(MEMBER, bot.channels[0], "next")
    [text] = await bot.replies(token)
    assert "Alpha article" in text


async def test_now_posts_an_embed_with_buttons_and_opens_a_thread(bot):
    channel = bot.channels[0]
    message = await bot.open_round(channel)
    embed = message["embeds"][0]
    assert embed["title"] == "Alpha article"
    assert embed["url"] == "https://example.org/alpha"
    assert [f["value"] for f in embed["fields"][:2]] == ["What is alpha?", "Why does alpha matter?"]
    assert embed["footer"]["text"].startswith("Source: Example")
    buttons = [c for row in message["components"] for c in row["components"]]
    assert [b["custom_id"] for b in buttons] == ["rt:answer:1"]  # anonymity: in the form
    assert [b["label"] for b in buttons] == ["Share your thoughts"]
    assert message["nonce"] == "rt-1"
    thread = await bot.fake.wait_until(lambda: bot.fake.threads.get(int(message["id"])))
    assert thread["parent_id"] == str(channel)
    round_ = await bot.runtime.store.get_round(1)
    assert round_.message_ref == message["id"] and round_.thread_ref == message["id"]


async def test_admin_commands_are_refused_for_non_admins(bot):
    token = await bot.fake.slash(MEMBER, bot.channels[0], "now")
    [text] = await bot.replies(token)
    assert "for admins only" in text
    assert bot.round_message(bot.channels[0]) is None
    # an admin by role (admins.discord lists role:77)
    token = await bot.fake.slash(ROLE_ADMIN, bot.channels[0], "close")
    [text] = await bot.replies(token)
    assert "for admins only" not in text


async def test_answer_command_then_results(bot):
    await bot.open_round(bot.channels[0])
    token = await bot.fake.slash(MEMBER, bot.channels[0], "answer", text="Things", question=1)
    assert await bot.replies(token) == ["Saved your answer to question 1."]
    token = await bot.fake.slash(MEMBER, bot.channels[0], "results")
    [text] = await bot.replies(token)
    assert "**Bob**: Things" in text and "1 person" in text


async def test_answer_from_inside_the_round_thread_goes_to_the_round(bot):
    message = await bot.open_round(bot.channels[0])
    thread_id = int(message["id"])
    await bot.fake.wait_until(lambda: thread_id in bot.fake.threads)
    token = await bot.fake.slash(MEMBER, thread_id, "answer", text="From the thread")
    assert await bot.replies(token) == ["Saved your answer."]
    assert [r.text for r in await responses(bot)] == ["From the thread"]


async def test_button_opens_a_modal_and_submitting_saves_named_answers(bot):
    message = await bot.open_round(bot.channels[0])
    token = await bot.fake.click(MEMBER, int(message["id"]), "rt:answer:1")
    [callback] = await bot.fake.wait_until(lambda: bot.fake.replies_to(token))
    assert callback["type"] == 9  # a modal, as the first response
    modal = callback["data"]
    boxes = [c["component"]["custom_id"] for c in modal["components"] if c["type"] == 18]
    assert boxes == ["q1", "q2", "anonymous"]
    token = await bot.fake.submit_modal(
        MEMBER, bot.channels[0], modal, {"q1": "It is a letter", "q2": "It starts things"}
    )
    assert await bot.replies(token) == ["Saved your answers to questions 1 and 2. Thank you!"]
    saved = sorted((r.question, r.text, r.author_name) for r in await responses(bot))
    assert saved == [(1, "It is a letter", "Bob"), (2, "It starts things", "Bob")]


async def test_anonymous_button_posts_the_answer_in_the_thread_without_its_author(bot):
    message = await bot.open_round(bot.channels[0])
    thread_id = int(message["id"])
    token = await bot.fake.click(MEMBER, thread_id, "rt:answer:1")
    [callback] = await bot.fake.wait_until(lambda: bot.fake.replies_to(token))
    modal = callback["data"]
    assert modal["custom_id"] == "rt:form:1"
    [box] = [c for c in modal["components"] if c["type"] == 18 and c["component"]["type"] == 23]
    assert box["component"] == {"type": 23, "custom_id": "anonymous", "default": False}
    values = {"q2": "Quietly", "anonymous": True}
    token = await bot.fake.submit_modal(MEMBER, bot.channels[0], modal, values)
    [text] = await bot.replies(token)
    assert text == "Saved your anonymous answer to question 2. Thank you!"
    [posted] = await bot.fake.wait_until(lambda: thread_texts(bot, thread_id))
    assert "Quietly" in posted and "Bob" not in posted and "22" not in posted
    [row] = await responses(bot)
    assert row.anonymous and row.author_id is None and row.author_name is None


async def test_thread_replies_are_answers_and_edits_and_deletes_follow(bot):
    message = await bot.open_round(bot.channels[0])
    thread_id = int(message["id"])
    reply = await bot.fake.user_message(MEMBER, thread_id, "2: because it matters")
    [row] = await eventually(lambda: responses(bot))
    assert (row.question, row.text, row.message_ref) == (2, "because it matters", str(reply))
    assert thread_texts(bot, thread_id) == ["2: because it matters"]  # no public "saved" noise
    await bot.fake.edit_message(reply, "2: because it really matters")
    [row] = await eventually(
        lambda: responses(bot), until=lambda rows: rows[0].text == "because it really matters"
    )
    await bot.fake.delete_message(reply)
    assert await eventually(lambda: responses(bot), until=lambda rows: not rows) == []


async def eventually(fetch, until=bool):
    """Poll the database until ``until(value)``: gateway events are handled in tasks and a
    saved thread reply shows nothing on Discord to wait for. Bounded, never timed."""
    for _ in range(2000):
        value = await fetch()
        if until(value):
            return value
        await asyncio.sleep(0.005)
    raise AssertionError(f"never reached; last value {value!r}")


async def test_thread_replies_are_ignored_without_the_message_content_intent(tmp_path, fake):
    bot = await make_bot(tmp_path, fake, read_replies=False)
    try:
        assert not fake.identifies[-1]["intents"] & (1 << 15)  # not even requested
        message = await bot.open_round(bot.channels[0])
        await fake.user_message(MEMBER, int(message["id"]), "lost to the intent")
        token = await fake.slash(ADMIN, bot.channels[0], "answer", text="by command")
        assert await bot.replies(token) == ["Saved your answer."]
        assert [r.text for r in await responses(bot)] == ["by command"]
    finally:
        await bot.stop()


async def test_message_content_requested_but_not_granted_logs_once_and_keeps_working(
    tmp_path, fake, caplog
):
    fake.grant_message_content = False
    with caplog.at_level(logging.ERROR, logger="bot.adapters.discord"):
        bot = await make_bot(tmp_path, fake, read_replies=True)
    try:
        assert fake.closed_4014 == 1 and fake.sessions == 1
        [error] = [r for r in caplog.records if r.name == "bot.adapters.discord.adapter"]
        assert PORTAL_SWITCH in error.getMessage()
        message = await bot.open_round(bot.channels[0])
        await fake.user_message(MEMBER, int(message["id"]), "blanked by Discord")
        token = await fake.slash(MEMBER, bot.channels[0], "answer", text="slash works")
        assert await bot.replies(token) == ["Saved your answer."]
        assert [r.text for r in await responses(bot)] == ["slash works"]
    finally:
        await bot.stop()


async def test_a_429_is_waited_out_and_the_round_posted_once(bot):
    bot.fake.rate_limit_next[rf"/channels/{bot.channels[0]}/messages"] = 0.01
    message = await bot.open_round(bot.channels[0])
    posts = bot.fake.sent("POST", rf"/channels/{bot.channels[0]}/messages")
    assert len(posts) == 2  # the 429, then the retry
    assert [m for m in bot.fake.channel_messages(bot.channels[0]) if m["embeds"]] == [message]


async def test_a_502_is_retried_and_the_round_posted_once(bot):
    # discord.py retries 500/502/504/524 itself after sleeping 1 s (the only slow test).
    # The worst case: Discord made the message but its answer was lost; the retry carries
    # the same nonce, so Discord returns that message instead of posting a second one.
    channel = bot.channels[0]
    bot.fake.server_error_next[rf"/channels/{channel}/messages"] = (502, True)
    message = await bot.open_round(channel)
    posts = bot.fake.sent("POST", rf"/channels/{channel}/messages")
    assert len(posts) == 2  # the 502, then the retry
    assert posts[0].body["nonce"] == posts[1].body["nonce"] == "rt-1"
    assert [m for m in bot.fake.channel_messages(channel) if m["embeds"]] == [message]
    round_ = await eventually(
        lambda: bot.runtime.store.get_round(1), until=lambda r: r.status == "posted"
    )
    assert round_.message_ref == message["id"] and round_.thread_ref == message["id"]


async def test_gateway_close_then_resume_loses_and_doubles_nothing(bot):
    message = await bot.open_round(bot.channels[0])
    thread_id = int(message["id"])
    await bot.fake.force_close(4000)
    # sent while the bot is disconnected: Discord replays it after RESUME
    await bot.fake.user_message(MEMBER, thread_id, "1: said during the outage")
    await bot.fake.wait_until(lambda: bot.fake.resumes)
    [row] = await eventually(lambda: responses(bot))
    assert row.text == "said during the outage"
    assert bot.fake.resumes[0]["session_id"] == "session-1" and bot.fake.sessions == 1
    token = await bot.fake.slash(MEMBER, bot.channels[0], "answer", text="after", question=2)
    assert await bot.replies(token) == ["Saved your answer to question 2."]
    assert len(await responses(bot)) == 2
    assert len([m for m in bot.fake.channel_messages(bot.channels[0]) if m["embeds"]]) == 1


async def test_restart_skips_an_unchanged_sync_and_old_buttons_still_open_the_modal(bot):
    assert len(bot.fake.command_syncs()) == 1
    message = await bot.open_round(bot.channels[0])
    token = await bot.fake.click(ADMIN, int(message["id"]), "rt:answer:1")
    [before] = await bot.fake.wait_until(lambda: bot.fake.replies_to(token))
    await bot.restart()
    assert len(bot.fake.command_syncs()) == 1  # same tree: no second sync
    token = await bot.fake.click(MEMBER, int(message["id"]), "rt:answer:1")
    [callback] = await bot.fake.wait_until(lambda: bot.fake.replies_to(token))
    assert callback["type"] == 9 and callback["data"]["custom_id"] == "rt:form:1"
    token = await bot.fake.submit_modal(MEMBER, bot.channels[0], callback["data"], {"q1": "Yes"})
    assert await bot.replies(token) == ["Saved your answer to question 1. Thank you!"]
    # a form opened before the restart is still saved when submitted after it
    token = await bot.fake.submit_modal(ADMIN, bot.channels[0], before["data"], {"q2": "Also"})
    assert await bot.replies(token) == ["Saved your answer to question 2. Thank you!"]


async def test_a_forbidden_channel_is_skipped_and_the_others_get_their_round(bot):
    blocked, open_ = bot.channels
    bot.fake.forbidden.add(blocked)
    posts = []
    for channel in (blocked, open_):
        _, outcome = await bot.runtime.service.open_round(f"discord:{channel}")
        posts += outcome.posts
    failures = await bot.runtime.dispatcher.publish(posts)
    assert [ch for ch, _ in failures] == [f"discord:{blocked}"]
    assert "403" in failures[0][1]
    assert bot.round_message(open_) is not None and bot.round_message(blocked) is None
    assert len(bot.fake.sent("POST", rf"/channels/{blocked}/messages")) == 1  # not retried


async def test_everyone_in_an_answer_pings_nobody(bot):
    message = await bot.open_round(bot.channels[0])
    thread_id = int(message["id"])
    text = "@everyone look <@&77> **now**"
    token = await bot.fake.slash(MEMBER, bot.channels[0], "answer", text=text, anonymous=True)
    await bot.replies(token)
    [post] = await bot.fake.wait_until(
        lambda: bot.fake.sent("POST", rf"/channels/{thread_id}/messages")
    )
    assert post.body["allowed_mentions"] == {"parse": []}
    assert "\\*\\*now\\*\\*" in post.body["content"]  # markdown escaped
    token = await bot.fake.slash(MEMBER, bot.channels[0], "results")
    await bot.replies(token)
    [follow_up] = [r.body for r in bot.fake.sent("POST", rf"/webhooks/\d+/{token}")]
    assert follow_up["allowed_mentions"] == {"parse": []}


async def test_find_post_recognises_an_earlier_post_of_the_round(bot):
    message = await bot.open_round(bot.channels[0])
    found = await bot.adapter.find_post(f"discord:{bot.channels[0]}", "rt-1")
    assert found == Posted(message["id"], message["id"])
    assert await bot.adapter.find_post(f"discord:{bot.channels[0]}", "rt-2") is None


async def test_a_retried_round_post_is_not_doubled(bot):
    await bot.open_round(bot.channels[0])
    round_ = await bot.runtime.store.get_round(1)
    posted = await bot.adapter.post(round_post(round_))  # e.g. after a timeout mid-post
    assert posted == Posted(round_.message_ref, round_.thread_ref)
    assert len([m for m in bot.fake.channel_messages(bot.channels[0]) if m["embeds"]]) == 1


def test_more_than_five_questions_share_the_last_box():
    questions = tuple((f"Question {i}?", "ours") for i in range(1, 8))
    layout = form_layout(questions, anonymous_allowed=False)
    assert len(layout.questions_text) == 1  # every question, in full, above the boxes
    assert [b.custom_id for b in layout.inputs] == ["q1", "q2", "q3", "rest"]
    assert layout.inputs[-1].label == "Questions 4–7"
    rows = [{"type": 10, "id": 1}]
    rows += [
        {"type": 18, "id": 2, "component": {"type": 4, "custom_id": "q1", "value": "one"}},
        {"type": 18, "id": 3, "component": {"type": 4, "custom_id": "q2", "value": ""}},
        {"type": 18, "id": 4, "component": {"type": 4, "custom_id": "q3", "value": ""}},
    ]
    rest = "four\n\n7: seven"
    rows.append({"type": 18, "id": 5, "component": {"type": 4, "custom_id": "rest", "value": rest}})
    assert parse_form(rows, 7) == ({1: "one", 4: "four", 7: "seven"}, None)


def role(role_id: int, default: bool = False) -> SimpleNamespace:
    return SimpleNamespace(id=role_id, is_default=lambda: default)


def test_role_ids_fall_back_to_public_roles_if_the_private_list_goes():
    # what a future discord.py Member without ``_roles`` might look like
    member = SimpleNamespace(id=33, roles=[role(500, default=True), role(77)])
    assert member_role_ids(member) == ("77",)  # @everyone is no role anyone was given
    reshaped = SimpleNamespace(id=33, _roles=[role(77)], roles=[role(77)])
    assert member_role_ids(reshaped) == ("77",)
    assert member_role_ids(SimpleNamespace(id=22)) == ()  # a discord.User: no server roles
