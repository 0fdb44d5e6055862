"""Slash commands, the Share button and the modal, through the real Bolt app over HTTP."""

from __future__ import annotations

import json

from tests.slack.conftest import ADMIN


async def open_round(slack) -> tuple[int, str]:
    assert await slack.command("now") == 200
    await slack.settle()
    round_ = await slack.runtime.store.open_round_in("slack:C1")
    return round_.id, round_.message_ref


async def test_help_is_answered_ephemerally_in_the_ack_itself(slack):
    assert await slack.command("help", user="UBOB") == 200
    await slack.settle()
    assert slack.fake.responses == []  # no second request to the response_url
    [response] = slack.responses()
    assert response["response_type"] == "ephemeral"
    assert "Roundtable commands" in response["text"]
    assert "/discuss answer" in response["text"]


async def test_now_posts_the_round_as_block_kit_with_metadata(slack):
    round_id, ts = await open_round(slack)
    [message] = slack.fake.posted("C1")
    assert message["ts"] == ts  # Posted(message_ref=ts) was stored on the round
    types = [b["type"] for b in message["blocks"]]
    assert types[0] == "header" and "actions" in types
    assert message["blocks"][0]["text"]["text"] == "Alpha article"
    text = json.dumps(message["blocks"])
    assert "<https://example.org/alpha|Example>" in text
    assert "1. What is alpha?" in text and "2. Why does alpha matter?" in text
    button = next(b for b in message["blocks"] if b["type"] == "actions")["elements"][0]
    assert button["text"]["text"] == "Share your thoughts" and button["value"] == str(round_id)
    assert message["metadata"] == {
        "event_type": "roundtable_round",
        "event_payload": {"round_key": f"rt-{round_id}", "round_id": round_id},
    }


async def test_admin_commands_are_refused_for_other_people(slack):
    assert await slack.command("now", user="UBOB") == 200
    await slack.settle()
    assert slack.fake.calls_to("chat.postMessage") == []
    [response] = slack.fake.responses
    assert response["response_type"] == "ephemeral"
    assert "for admins only" in response["text"]


async def test_answer_results_and_next(slack):
    await open_round(slack)
    slack.fake.names["UBOB"] = "Bob <@UADMIN>"
    for text in ("answer 2 because <!channel> said so & more", "results", "next"):
        await slack.command(text, user="UBOB")
        await slack.settle()  # each command's work runs after its ack; keep them in order
    saved, results, nxt = slack.fake.responses
    assert saved["text"] == "Saved your answer to question 2."
    assert saved["response_type"] == "ephemeral"
    shown = json.dumps(results["blocks"])
    assert "because &lt;!channel&gt; said so &amp; more" in shown
    assert "Bob &lt;@UADMIN&gt;" in shown  # display names cannot ping either
    assert "<!channel>" not in shown and "<@UADMIN>" not in shown
    assert "Beta article" in nxt["text"]


async def test_share_button_opens_the_modal(slack):
    round_id, _ = await open_round(slack)
    assert await slack.press_share(round_id, "UBOB") == 200
    await slack.settle()
    [call] = slack.fake.calls_to("views.open")
    view = call["view"]
    assert view["callback_id"] == "roundtable_answers"
    block_ids = [b.get("block_id") for b in view["blocks"]]
    assert {"q1", "q2", "anon"} <= set(block_ids)
    assert json.loads(view["private_metadata"]) == {"round": round_id, "channel": "C1"}


async def test_modal_named_answers_are_saved_and_confirmed(slack):
    round_id, _ = await open_round(slack)
    await slack.press_share(round_id, "UBOB")
    await slack.settle()
    view = slack.fake.calls_to("views.open")[0]["view"]
    slack.fake.names["UBOB"] = "Bob"
    assert await slack.submit(view, {1: "It is a letter", 2: ""}, "UBOB") == 200
    await slack.settle()
    [ephemeral] = slack.fake.calls_to("chat.postEphemeral")
    assert ephemeral["user"] == "UBOB" and ephemeral["channel"] == "C1"
    assert ephemeral["text"] == "Saved your answer to question 1. Thank you!"
    [row] = await slack.runtime.store.responses(round_id)
    assert (row.author_name, row.question, row.text) == ("Bob", 1, "It is a letter")


async def test_modal_anonymous_answer_is_reposted_in_the_thread_without_a_trace(slack):
    round_id, ts = await open_round(slack)
    await slack.press_share(round_id, "UBOB")
    await slack.settle()
    view = slack.fake.calls_to("views.open")[0]["view"]
    secret = "@here look <@UADMIN> *bold* ```"
    await slack.submit(view, {2: secret}, "UBOB", anonymous=True)
    await slack.settle()
    [_, repost] = slack.fake.posted("C1")
    assert repost["thread_ts"] == ts
    shown = json.dumps(repost)
    assert "UBOB" not in shown and "ubob" not in shown
    assert "&lt;@UADMIN&gt;" in shown and "<@UADMIN>" not in shown
    assert "@here" not in shown  # a joiner keeps a literal @here from being linked
    assert "Anonymous answer to Q2:" in repost["blocks"][0]["text"]["text"]
    [row] = await slack.runtime.store.responses(round_id)
    assert row.anonymous and row.author_id is None and row.author_name is None
    [ephemeral] = slack.fake.calls_to("chat.postEphemeral")
    assert "anonymous answer" in ephemeral["text"]


async def test_a_closed_round_does_not_open_the_modal(slack):
    round_id, _ = await open_round(slack)
    await slack.command("close")
    await slack.settle()
    await slack.press_share(round_id, "UBOB")
    await slack.settle()
    assert slack.fake.calls_to("views.open") == []
    assert "closed" in slack.fake.calls_to("chat.postEphemeral")[-1]["text"]


async def test_final_digest_goes_into_the_thread_and_the_channel(slack):
    _, ts = await open_round(slack)
    await slack.command("answer 1 first thoughts", user="UBOB")
    await slack.settle()
    await slack.command("close", user=ADMIN)
    await slack.settle()
    digest = slack.fake.posted("C1")[-1]
    assert digest["thread_ts"] == ts and digest.get("reply_broadcast") is True
    assert digest["blocks"][0]["text"]["text"].startswith("Digest — Alpha article")
    assert "first thoughts" in json.dumps(digest["blocks"])
