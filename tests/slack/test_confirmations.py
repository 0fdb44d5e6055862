"""The person who acted always learns what happened (issue 12, defect 5)."""

from __future__ import annotations

import json

from tests.slack.conftest import ADMIN


async def open_round(slack) -> int:
    await slack.command("now")
    await slack.settle()
    return (await slack.runtime.store.open_round_in("slack:C1")).id


async def open_form(slack, round_id: int, user: str = "UBOB") -> dict:
    await slack.press_share(round_id, user)
    await slack.settle()
    return slack.fake.calls_to("views.open")[-1]["view"]


async def test_a_form_answer_from_a_non_member_is_confirmed_by_direct_message(slack):
    round_id = await open_round(slack)
    view = await open_form(slack, round_id)
    slack.fake.members["C1"] = {ADMIN}  # UBOB answers in a public channel without joining
    assert await slack.submit(view, {1: "From outside"}, "UBOB") == 200
    await slack.settle()
    [row] = await slack.runtime.store.responses(round_id)
    assert row.text == "From outside"
    assert slack.fake.calls_to("chat.postEphemeral")[-1]["user"] == "UBOB"  # refused first
    [dm] = slack.fake.dms["UBOB"]
    assert dm["text"] == "Saved your answer to question 1. Thank you!"


async def test_a_refused_form_stays_open_with_the_reason_and_nothing_else_is_sent(slack):
    round_id = await open_round(slack)
    view = await open_form(slack, round_id)
    await slack.command("close")  # the round closes while the form is open
    await slack.settle()
    ephemerals = len(slack.fake.calls_to("chat.postEphemeral"))
    status, body = await slack.submit_response(view, {2: "Too late, sadly"}, "UBOB")
    await slack.settle()
    assert status == 200
    answer = json.loads(body)
    assert answer["response_action"] == "errors"
    assert "closed" in answer["errors"]["q2"]  # shown under the question that was typed in
    assert await slack.runtime.store.responses(round_id) == []
    assert len(slack.fake.calls_to("chat.postEphemeral")) == ephemerals  # the modal says it


async def test_a_saved_form_closes_the_modal(slack):
    round_id = await open_round(slack)
    view = await open_form(slack, round_id)
    status, body = await slack.submit_response(view, {1: "Fine"}, "UBOB")
    await slack.settle()
    assert status == 200 and "errors" not in body
    assert "Saved your answer" in slack.fake.calls_to("chat.postEphemeral")[-1]["text"]


async def test_a_slow_save_closes_the_modal_and_confirms_by_message(slack):
    slack.adapter.submit_wait = 0  # the save takes longer than the modal may wait
    round_id = await open_round(slack)
    view = await open_form(slack, round_id)
    status, body = await slack.submit_response(view, {1: "Eventually"}, "UBOB")
    await slack.settle()
    assert status == 200 and "errors" not in body
    assert "Saved your answer" in slack.fake.calls_to("chat.postEphemeral")[-1]["text"]


async def test_a_form_held_back_by_a_rate_limit_until_its_trigger_expired_is_explained(slack):
    round_id = await open_round(slack)
    slack.fake.fail("views.open", status=429, error="ratelimited", retry_after=3)
    slack.fake.fail("views.open", status=200, error="expired_trigger_id")
    assert await slack.press_share(round_id, "UBOB") == 200
    await slack.settle()
    assert len(slack.fake.calls_to("views.open")) == 2  # waited Retry-After, then expired
    told = slack.fake.calls_to("chat.postEphemeral")[-1]
    assert told["user"] == "UBOB"
    assert "form" in told["text"] and "again" in told["text"]


async def test_a_form_that_fails_on_our_side_stays_open_to_try_again(slack, monkeypatch):
    round_id = await open_round(slack)
    view = await open_form(slack, round_id)

    async def broken(event):
        raise RuntimeError("a bug on our side")

    monkeypatch.setattr(slack.runtime.dispatcher.inbox, "_handle", broken)
    status, body = await slack.submit_response(view, {1: "Keep this text"}, "UBOB")
    await slack.settle()
    answer = json.loads(body)
    assert status == 200 and answer["response_action"] == "errors"
    assert "try again" in answer["errors"]["q1"]


async def test_over_socket_mode_a_refused_form_stays_open_too(tmp_path, sqlite_url, fake):
    """The same ``response_action: errors``, sent back in the envelope's acknowledgement
    (https://docs.slack.dev/apis/events-api/using-socket-mode#acknowledge)."""
    from bot.adapters.slack import SlackAdapter, blocks
    from bot.config import Secrets
    from tests.slack.conftest import APP_TOKEN, BOT_TOKEN, Sleeps, make_runtime

    secrets = Secrets(slack_bot_token=BOT_TOKEN, slack_app_token=APP_TOKEN)
    runtime = await make_runtime(tmp_path, sqlite_url, fake, mode="socket", secrets=secrets)
    adapter = SlackAdapter(runtime.ports, sleep=Sleeps(), ping_interval=0.2)
    await adapter.start(host="127.0.0.1", port=0)
    try:
        await fake.wait_for(lambda: fake.connections == 1)
        view = blocks.answer_modal(999, "C1", "Gone", ["Q one?"], False)  # no such round
        values = {"q1": {"answer": {"type": "plain_text_input", "value": "typed text"}}}
        payload = {
            "type": "view_submission",
            "team": {"id": "T1"},
            "user": {"id": "UBOB", "username": "ubob", "name": "ubob", "team_id": "T1"},
            "api_app_id": "A1",
            "token": "legacy",
            "trigger_id": "trigger-s1",
            "view": {**view, "id": "V1", "state": {"values": values}, "hash": "h"},
            "response_urls": [],
        }
        envelope = {
            "envelope_id": "env-form",
            "type": "interactive",
            "accepts_response_payload": True,
            "payload": payload,
        }
        await fake.wait_for(lambda: fake._ws is not None)
        await fake.send_envelope(envelope)
        await fake.wait_for(lambda: any(a.get("envelope_id") == "env-form" for a in fake.acks))
        [ack] = [a for a in fake.acks if a.get("envelope_id") == "env-form"]
        assert ack["payload"]["response_action"] == "errors"
        assert "no longer exists" in ack["payload"]["errors"]["q1"]
        await adapter.drain()
        assert fake.calls_to("chat.postEphemeral") == []
    finally:
        await adapter.stop()
        await runtime.close()


async def test_a_form_kept_for_later_by_a_database_outage_closes_and_says_so(slack, monkeypatch):
    """The inbox holds the submission while the database is away: no reason to keep the
    modal open (nothing to fix), and the person learns it will be carried out."""
    from bot.core.inbox import DELAYED

    round_id = await open_round(slack)
    view = await open_form(slack, round_id)
    inbox = slack.runtime.dispatcher.inbox

    async def away(event):
        raise ConnectionError("database restarting")

    async def no_wait(seconds):
        return None

    monkeypatch.setattr(inbox, "_handle", away)
    monkeypatch.setattr(inbox, "_sleep", no_wait)
    status, body = await slack.submit_response(view, {1: "Later is fine"}, "UBOB")
    await slack.settle()
    assert status == 200 and "errors" not in body
    assert slack.fake.calls_to("chat.postEphemeral")[-1]["text"] == DELAYED
