"""Thread replies, edits, deletions, redeliveries and request signatures."""

from __future__ import annotations

import time

from tests.slack.conftest import message_event


async def open_round(slack) -> tuple[int, str]:
    await slack.command("now")
    await slack.settle()
    round_ = await slack.runtime.store.open_round_in("slack:C1")
    return round_.id, round_.message_ref


async def reply(slack, text, ts, thread_ts, event_id, user="UBOB", retry=None) -> int:
    event = message_event(text, user=user, ts=ts, thread_ts=thread_ts)
    status = await slack.event(event, event_id, retry=retry)
    await slack.settle()
    return status


async def test_thread_reply_is_an_answer_confirmed_ephemerally_in_the_thread(slack):
    round_id, ts = await open_round(slack)
    slack.fake.names["UBOB"] = "Bob"
    assert await reply(slack, "2: it matters a lot", "1800.1", ts, "Ev1") == 200
    [row] = await slack.runtime.store.responses(round_id)
    assert (row.author_name, row.question, row.text, row.message_ref) == (
        "Bob",
        2,
        "it matters a lot",
        "1800.1",
    )
    [ephemeral] = slack.fake.calls_to("chat.postEphemeral")
    assert ephemeral["user"] == "UBOB" and ephemeral["thread_ts"] == ts
    assert ephemeral["text"] == "Saved your answer to question 2."


async def test_messages_outside_the_round_thread_and_from_bots_are_ignored(slack):
    round_id, ts = await open_round(slack)
    await reply(slack, "just chatting", "1800.1", None, "Ev1")  # top level, not a reply
    await reply(slack, "other thread", "1800.2", "1700.5", "Ev2")  # someone else's thread
    bot = message_event("I am a bot", user="UOTHER", ts="1800.3", thread_ts=ts)
    bot["bot_id"] = "BOTHER"
    await slack.event(bot, "Ev3")
    ours = message_event("echo", user="UBOT", ts="1800.4", thread_ts=ts)
    ours["bot_id"] = "BBOT"
    await slack.event(ours, "Ev4")
    await slack.settle()
    assert await slack.runtime.store.responses(round_id) == []
    assert slack.fake.calls_to("chat.postEphemeral") == []


async def test_editing_and_deleting_a_reply_follow_the_stored_answer(slack):
    round_id, ts = await open_round(slack)
    await reply(slack, "first words", "1800.1", ts, "Ev1")
    edited = {
        "type": "message",
        "subtype": "message_changed",
        "channel": "C1",
        "hidden": True,
        "ts": "1800.9",
        "message": {
            "type": "message",
            "user": "UBOB",
            "text": "1: better words",
            "ts": "1800.1",
            "thread_ts": ts,
        },
        "previous_message": {
            "type": "message",
            "user": "UBOB",
            "text": "first words",
            "ts": "1800.1",
            "thread_ts": ts,
        },
    }
    assert await slack.event(edited, "Ev2") == 200
    await slack.settle()
    [row] = await slack.runtime.store.responses(round_id)
    assert (row.text, row.question) == ("better words", 1)
    deleted = {
        "type": "message",
        "subtype": "message_deleted",
        "channel": "C1",
        "hidden": True,
        "ts": "1800.10",
        "deleted_ts": "1800.1",
        "previous_message": {
            "type": "message",
            "user": "UBOB",
            "text": "1: better words",
            "ts": "1800.1",
            "thread_ts": ts,
        },
    }
    assert await slack.event(deleted, "Ev3") == 200
    await slack.settle()
    assert await slack.runtime.store.responses(round_id) == []


async def test_redelivered_events_are_stored_once(slack):
    round_id, ts = await open_round(slack)
    await reply(slack, "once", "1800.1", ts, "Ev1")
    await reply(slack, "once", "1800.1", ts, "Ev1", retry=1)  # Slack's retry: same event_id
    await reply(slack, "once", "1800.1", ts, "Ev1-other")  # same channel + ts, new event id
    assert len(await slack.runtime.store.responses(round_id)) == 1
    assert len(slack.fake.calls_to("chat.postEphemeral")) == 1  # confirmed once
    # the dedupe lives in the database, so it holds for another instance too
    # (the inbox row is keyed by channel + ts)
    now = slack.runtime.clock.now()
    assert await slack.runtime.store.inbox_add("slack:C1:1800.1", {}, now) is None


async def test_forged_signature_and_stale_timestamp_get_401(slack):
    body = "command=%2Fdiscuss&text=now&user_id=UADMIN&channel_id=C1"
    form = "application/x-www-form-urlencoded"
    status, _ = await slack.send(body, form, headers={"X-Slack-Signature": "v0=" + "0" * 64})
    assert status == 401
    status, _ = await slack.send(body, form, timestamp=int(time.time()) - 6 * 60)
    assert status == 401
    await slack.settle()
    assert slack.fake.calls_to("chat.postMessage") == []


async def test_healthz_answers_when_ready(slack):
    async with slack.session.get(f"{slack.url}/healthz") as r:
        assert r.status == 200
