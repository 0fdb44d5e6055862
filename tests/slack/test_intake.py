"""How Slack requests reach the core: stored before the ack, names looked up only after
the answer is saved, one HTTP session for every Web API and response_url call."""

from __future__ import annotations

import asyncio
import gc
import warnings

from sqlalchemy import event, select

from bot.anonymity import open_payload
from bot.core.inbox import Inbox
from bot.storage.models import InboxEntry
from tests.slack.conftest import message_event


async def test_an_answer_is_stored_and_confirmed_while_users_info_is_stuck(slack):
    await slack.command("now")
    await slack.settle()
    round_ = await slack.runtime.store.open_round_in("slack:C1")
    gate = slack.fake.hold("users.info")  # a slow (or failing) profile lookup
    slack.fake.names["UBOB"] = "Bob"
    event = message_event("1: stored first", user="UBOB", ts="1800.1", thread_ts=round_.message_ref)
    assert await slack.event(event, "Ev1") == 200
    await slack.fake.wait_for(lambda: slack.fake.calls_to("chat.postEphemeral"))
    [row] = await slack.runtime.store.responses(round_.id)
    assert row.text == "stored first" and not gate.is_set()
    gate.set()
    await slack.settle()
    [row] = await slack.runtime.store.responses(round_.id)
    assert row.author_name == "Bob"  # corrected once the name was known
    await slack.event(
        message_event("2: again", user="UBOB", ts="1800.2", thread_ts=round_.message_ref), "Ev2"
    )
    await slack.settle()
    assert [c["user"] for c in slack.fake.calls_to("users.info")].count("UBOB") == 1  # cached


async def test_the_inbox_row_is_committed_before_the_ack(slack):
    await slack.command("now")
    await slack.settle()
    gate = slack.fake.hold("chat.postEphemeral")  # processing cannot finish
    assert await slack.command("answer 1 durable", user="UBOB") == 200
    async with slack.runtime.store.session() as s:
        rows = (await s.scalars(select(InboxEntry).order_by(InboxEntry.id))).all()
    assert rows[-1].key.startswith("slack:trigger:")
    if rows[-1].status == "pending":  # payloads are sealed at rest (docs/privacy.md)
        payload = open_payload(slack.runtime.service.keyring, rows[-1].payload)
        assert payload["text"].endswith("durable")
    else:  # already processed (payload wiped): the answer it carried is committed
        round_ = await slack.runtime.store.open_round_in("slack:C1")
        assert [r.text for r in await slack.runtime.store.responses(round_.id)] == ["durable"]
    gate.set()
    await slack.settle()


async def test_one_http_session_for_every_call(slack):
    adapter = slack.adapter
    assert adapter.client.session is adapter.http
    assert adapter.post_client.session is adapter.http


async def test_my_results_right_after_my_reply_include_it(slack):
    await slack.command("now")
    await slack.settle()
    round_ = await slack.runtime.store.open_round_in("slack:C1")
    event = message_event("1: quick", user="UBOB", ts="1800.1", thread_ts=round_.message_ref)
    assert await slack.event(event, "Ev1") == 200
    assert await slack.command("results", user="UBOB") == 200  # before the reply is processed
    await slack.settle()
    [results] = [r for r in slack.fake.responses if "Results so far" in r.get("text", "")]
    assert "1 person shared" in results["text"]


async def test_a_slash_command_is_acknowledged_without_bolts_dispatch(slack, monkeypatch):
    """In HTTP mode a command's form needs no routing: it is stored and acknowledged by
    the adapter itself (Socket Mode still goes through Bolt's listener, test_socket_mode)."""

    async def not_bolt(_request):
        raise AssertionError("a slash command went through Bolt's dispatch")

    monkeypatch.setattr(slack.adapter.app, "async_dispatch", not_bolt)
    assert await slack.command("help") == 200
    assert "/discuss answer" in slack.acks[-1]["text"]  # answered in the ack's body
    assert await slack.command("now") == 200
    await slack.settle()
    assert slack.fake.posted("C1")


async def test_an_answer_is_processed_once_no_other_ack_is_being_made(slack):
    """Processing waits while other requests are being acknowledged (bot.adapters.precedence):
    the answer is stored before its own ack, then processed when the acks stop."""
    await slack.command("now")
    await slack.settle()
    with slack.adapter.acks.ongoing():  # someone else's request is being acknowledged
        assert await slack.command("answer 1 after the acks", user="UBOB") == 200
        await asyncio.sleep(0.1)
        async with slack.runtime.store.session() as s:
            row = (await s.scalars(select(InboxEntry).order_by(InboxEntry.id.desc()))).first()
        assert row.status == "pending"  # stored, and waiting
    await slack.settle()
    round_ = await slack.runtime.store.open_round_in("slack:C1")
    assert [r.text for r in await slack.runtime.store.responses(round_.id)] == ["after the acks"]


async def test_a_burst_of_acks_starts_no_processing_until_it_pauses(slack):
    """Each stored command's processing task is started once the acks pause, in the order
    they were stored: during the burst, an ack pays for no task that could only wait."""
    await slack.command("now")
    await slack.settle()

    def processing() -> list[asyncio.Task]:
        return [t for t in slack.adapter.tasks if t.get_name() == "slack-command"]

    with slack.adapter.acks.ongoing():  # a burst: another ack is still being made
        for n, user in enumerate(("UANN", "UBOB", "UCAT")):
            assert await slack.command(f"answer 1 thought {n}", user=user) == 200
        await asyncio.sleep(0.05)
        assert processing() == []
    await slack.settle()
    round_ = await slack.runtime.store.open_round_in("slack:C1")
    texts = [r.text for r in await slack.runtime.store.responses(round_.id)]
    assert texts == ["thought 0", "thought 1", "thought 2"]


async def test_answers_that_waited_for_a_burst_are_processed_together(slack, monkeypatch):
    """32 answers acknowledged in a burst are processed in one transaction (one commit,
    one wait for the disk), not in many small ones: the batch is what throughput rests on."""
    await slack.command("now")
    await slack.settle()
    batches: list[int] = []
    batch_fast = Inbox._batch_fast

    async def noting(self: Inbox, batch: list) -> dict:
        batches.append(len(batch))
        return await batch_fast(self, batch)

    monkeypatch.setattr(Inbox, "_batch_fast", noting)
    people = [f"U{n:03d}" for n in range(32)]
    with slack.adapter.acks.ongoing():  # a burst: another ack is still being made
        answers = (slack.command(f"answer 1 thought {n}", user=u) for n, u in enumerate(people))
        assert set(await asyncio.gather(*answers)) == {200}
    await slack.settle()
    assert batches == [32]
    round_ = await slack.runtime.store.open_round_in("slack:C1")
    assert len(await slack.runtime.store.responses(round_.id)) == 32


async def test_processing_not_started_by_shutdown_is_left_in_the_inbox(slack):
    """Stopped before the acks paused: the queued work is dropped cleanly (no coroutine
    left never awaited) and the stored answer waits, pending, for the next start."""
    await slack.command("now")
    await slack.settle()
    with slack.adapter.acks.ongoing(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert await slack.command("answer 1 kept for later", user="UBOB") == 200
        await slack.adapter.stop(grace=0.01)
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
    async with slack.runtime.store.session() as s:
        row = (await s.scalars(select(InboxEntry).order_by(InboxEntry.id.desc()))).first()
    assert row.status == "pending"


async def test_drain_waits_for_work_an_ack_queued_in_this_very_turn(slack):
    """The processing of a stored event starts in the loop's turn after its ack (once
    the response is sent): settling right away still waits for it."""
    done: list[str] = []

    async def work() -> None:
        done.append("processed")

    slack.adapter.spawn_after_acks(work(), "command")
    await slack.adapter.drain()
    assert done == ["processed"]


async def test_work_queued_after_a_start_that_was_cancelled_still_runs(slack):
    """A start cancelled before it began (its task never ran a line) leaves nobody in
    charge of the queue: the next ack schedules a new start, and the queue runs."""
    done: list[str] = []

    async def work(name: str) -> None:
        done.append(name)

    slack.adapter.spawn_after_acks(work("first"), "command")
    await asyncio.sleep(0)  # the start is now a task that has not run yet
    slack.adapter._starter.cancel()
    await asyncio.sleep(0)
    slack.adapter.spawn_after_acks(work("second"), "command")
    await slack.adapter.drain()
    assert done == ["first", "second"]


async def test_names_are_learned_one_person_at_a_time_and_never_hold_up_answers(slack):
    """users.info is rate-limited (Tier 4): a burst of new people is a queue of calls,
    one at a time, after their answers' work; a slow users.info delays no confirmation."""
    await slack.command("now")
    await slack.settle()
    gate = slack.fake.hold("users.info")
    confirmed = len(slack.fake.responses)
    asked = len(slack.fake.calls_to("users.info"))  # the admin's, after "now"

    def names_asked() -> list[str]:
        return [c["user"] for c in slack.fake.calls_to("users.info")[asked:]]

    for user in ("UANN", "UBOB", "UCAT"):
        assert await slack.command(f"answer 1 from {user}", user=user) == 200
    await slack.fake.wait_for(lambda: len(slack.fake.responses) == confirmed + 3)
    await slack.fake.wait_for(names_asked)
    for _ in range(50):
        await asyncio.sleep(0)
    assert names_asked() == ["UANN"]  # the others wait their turn
    gate.set()
    await slack.settle()
    assert names_asked() == ["UANN", "UBOB", "UCAT"]
    round_ = await slack.runtime.store.open_round_in("slack:C1")
    names = {r.author_name for r in await slack.runtime.store.responses(round_.id)}
    assert names == {"uann", "ubob", "ucat"}  # learned and corrected in the end


async def test_names_learned_in_a_row_are_corrected_in_one_transaction(slack):
    await slack.command("now")
    await slack.settle()
    gate = slack.fake.hold("users.info")
    for user in ("UANN", "UBOB", "UCAT"):
        slack.fake.names[user] = user[1:].title()  # the profile's name, not the handle
        assert await slack.command(f"answer 1 from {user}", user=user) == 200
    await slack.fake.wait_for(lambda: slack.fake.calls_to("users.info"))
    renames: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("UPDATE RESPONSES"):
            renames.append(statement)

    event.listen(slack.runtime.store.engine.sync_engine, "before_cursor_execute", record)
    gate.set()
    await slack.settle()
    assert len(renames) == 1  # one statement (executemany) for the three, not three
    round_ = await slack.runtime.store.open_round_in("slack:C1")
    names = {r.author_name for r in await slack.runtime.store.responses(round_.id)}
    assert names == {"Ann", "Bob", "Cat"}


async def test_names_that_could_not_be_stored_are_learned_again_at_the_next_answer(
    slack, monkeypatch
):
    await slack.command("now")
    await slack.settle()
    slack.fake.names["UANN"] = "Ann"
    store = slack.runtime.store
    working = store.rename_authors

    async def database_away(names):
        raise OSError("the database went away")

    monkeypatch.setattr(store, "rename_authors", database_away)
    assert await slack.command("answer 1 first thought", user="UANN") == 200
    await slack.settle()
    monkeypatch.setattr(store, "rename_authors", working)
    assert await slack.command("answer 2 second thought", user="UANN") == 200
    await slack.settle()
    asked = [c for c in slack.fake.calls_to("users.info") if c["user"] == "UANN"]
    assert len(asked) == 2  # not kept as if it had been stored
    round_ = await store.open_round_in("slack:C1")
    assert {r.author_name for r in await store.responses(round_.id)} == {"Ann"}


async def test_names_learned_before_a_stop_are_written_at_the_stop(slack):
    """Stopped while names are still being learned: the ones learned so far are written
    (not lost until each person answers again); the one being asked keeps Slack's."""
    await slack.command("now")
    await slack.settle()
    slack.fake.names.update(UANN="Ann", UBOB="Bob")
    gate = slack.fake.hold("users.info", when=lambda params: params.get("user") == "UBOB")
    for user in ("UANN", "UBOB"):
        assert await slack.command(f"answer 1 from {user}", user=user) == 200
    await slack.fake.wait_for(
        lambda: [c["user"] for c in slack.fake.calls_to("users.info")][-2:] == ["UANN", "UBOB"]
    )
    await slack.adapter.stop(grace=0.01)  # Ann's name learned, Bob's call still out
    gate.set()
    round_ = await slack.runtime.store.open_round_in("slack:C1")
    names = {r.author_id: r.author_name for r in await slack.runtime.store.responses(round_.id)}
    assert names == {"slack:UANN": "Ann", "slack:UBOB": "ubob"}


async def test_names_wait_while_acks_are_being_made(slack):
    """users.info costs more than an ack: nobody waits for a name, someone waits for an ack."""
    await slack.command("now")
    await slack.settle()
    asked = len(slack.fake.calls_to("users.info"))

    def names_asked() -> list[str]:
        return [c["user"] for c in slack.fake.calls_to("users.info")[asked:]]

    gate = slack.fake.hold("users.info")
    confirmed = len(slack.fake.responses)
    for user in ("UANN", "UBOB"):
        assert await slack.command(f"answer 1 from {user}", user=user) == 200
    await slack.fake.wait_for(lambda: len(slack.fake.responses) == confirmed + 2)
    await slack.fake.wait_for(names_asked)  # UANN's lookup, held
    with slack.adapter.acks.ongoing():  # then a stream of requests being acknowledged
        gate.set()
        await asyncio.sleep(0.1)
        assert names_asked() == ["UANN"]  # UBOB's waits for the acks
    await slack.settle()
    assert names_asked() == ["UANN", "UBOB"]
