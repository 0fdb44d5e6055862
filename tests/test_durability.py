"""The durable write path under an injected clock: inbox (stored before the ack, processed
exactly once, leftovers after a crash, poison rows), outbox (digest once, permanent
refusals end the round) and the round lifecycle (never posted → no digest)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from bot.core.dispatch import PostFailed
from bot.core.events import MessagePosted, RoundPost, Summary, ThreadPost
from bot.core.handlers import NO_ROUND
from bot.core.inbox import MAX_ATTEMPTS, NOT_SAVED
from bot.core.outbox import LEASE
from bot.history import format_rows, history
from bot.metrics import REGISTRY
from bot.storage.models import InboxEntry, OutboxEntry
from tests.support import make_chat, write_library
from tests.test_scheduling import BERLIN, FindingPlatform, config, setup, tick_at

FIRE_DAY = (2026, 11, 2, 10)


def answer(chat, text: str, who: str, ref: str) -> MessagePosted:
    return MessagePosted(chat.actor(who), chat.channel, text, ref)


async def test_an_accepted_event_is_processed_once_after_a_crash(config_path, sqlite_url):
    chat = await make_chat(config_path, sqlite_url)
    await chat.say("/discuss now")
    # stored and acknowledged, then the process died before processing it
    ticket = await chat.dispatcher.accept("console:m-1", answer(chat, "kept", "bob", "m-1"))
    assert not ticket.duplicate
    await chat.store.close()
    chat2 = await make_chat(config_path, sqlite_url)  # the restart
    try:
        assert await chat2.dispatcher.inbox.process_due() == 1
        assert await chat2.dispatcher.inbox.process_due() == 0
        assert "kept" in await chat2.say("/discuss results")
        round_ = await chat2.store.open_round_in(chat2.channel)
        assert [r.text for r in await chat2.store.responses(round_.id)] == ["kept"]
        # a redelivery after the restart is recognised by its key and stores nothing
        again = await chat2.dispatcher.accept("console:m-1", answer(chat2, "kept", "bob", "m-1"))
        assert again.duplicate and await chat2.dispatcher.process(again) == []
    finally:
        await chat2.store.close()


async def test_a_failing_row_is_given_up_once_and_does_not_block_the_rows_behind_it(chat, caplog):
    await chat.say("/discuss now")
    now = chat.clock.now()
    await chat.store.inbox_add("console:poison", {"type": "from-a-newer-version"}, now)
    await chat.dispatcher.accept("console:m-2", answer(chat, "behind it", "bob", "m-2"))
    with caplog.at_level(logging.ERROR):
        for _ in range(MAX_ATTEMPTS + 3):
            await chat.dispatcher.inbox.process_due()
            chat.clock.advance(timedelta(days=1))
    async with chat.store.session() as s:
        rows = {r.key: r for r in (await s.scalars(select(InboxEntry))).all()}
    poison = rows["console:poison"]
    assert (poison.status, poison.attempts) == ("failed", MAX_ATTEMPTS)
    assert "from-a-newer-version" in poison.error
    assert rows["console:m-2"].status == "done"
    assert len([r for r in caplog.records if "given up" in r.getMessage()]) == 1


async def test_an_answer_that_could_not_be_stored_is_never_confirmed(chat, monkeypatch):
    await chat.say("/discuss now")

    async def database_down(*_args, **_kwargs):
        raise OperationalError("INSERT INTO inbox", {}, ConnectionRefusedError())

    monkeypatch.setattr(chat.store, "inbox_add_many", database_down)
    assert await chat.say("my answer", who="bob") == NOT_SAVED
    round_ = await chat.store.open_round_in(chat.channel)
    assert await chat.store.responses(round_.id) == []


async def test_a_transient_database_error_while_processing_is_retried(chat, monkeypatch):
    await chat.say("/discuss now")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    chat.dispatcher.inbox._sleep = sleep
    real = chat.store.save_response
    failures = [OperationalError("UPDATE", {}, ConnectionResetError())]

    async def flaky(*args, **kwargs):
        if failures:
            raise failures.pop()
        return await real(*args, **kwargs)

    monkeypatch.setattr(chat.store, "save_response", flaky)
    assert await chat.say("second try", who="bob") == "Saved your answer."
    assert waits  # backed off before retrying
    round_ = await chat.store.open_round_in(chat.channel)
    assert [r.text for r in await chat.store.responses(round_.id)] == ["second try"]


def answers_counted() -> float:
    labels = {"platform": "console", "anonymous": "false"}
    return REGISTRY.get_sample_value("roundtable_answers_stored_total", labels) or 0.0


async def test_a_row_that_raises_in_a_batch_rolls_back_alone(chat, monkeypatch):
    """Rows ready together share one transaction; one that raises is redone in its own
    savepoint and fails alone, the others are stored once and confirmed."""
    await chat.say("/discuss now")
    real = chat.store.save_response
    calls: list[str] = []

    async def boom(row, **kwargs):
        calls.append(row.text)
        if row.text == "boom":
            raise RuntimeError("a bug in one handler")
        return await real(row, **kwargs)

    monkeypatch.setattr(chat.store, "save_response", boom)
    inbox = chat.dispatcher.inbox
    before = answers_counted()
    tickets = [
        await inbox.accept(f"console:b-{who}", answer(chat, text, who, f"b-{who}"))
        for who, text in [("bob", "first"), ("carol", "boom"), ("dave", "third")]
    ]
    replies = await asyncio.gather(*(inbox.process(t) for t in tickets))
    assert [r.text for r in replies[0]] == ["Saved your answer."]
    assert [r.text for r in replies[1]] == ["Sorry, that failed on our side; please try again."]
    assert [r.text for r in replies[2]] == ["Saved your answer."]
    assert calls.count("first") == 2  # the batch ran once together, then redone isolated
    assert answers_counted() - before == 2  # counted once each, when committed
    round_ = await chat.store.open_round_in(chat.channel)
    assert sorted(r.text for r in await chat.store.responses(round_.id)) == ["first", "third"]
    async with chat.store.session() as s:
        rows = {r.key: r for r in (await s.scalars(select(InboxEntry))).all()}
    assert (rows["console:b-carol"].status, rows["console:b-carol"].attempts) == ("pending", 1)
    assert rows["console:b-bob"].status == rows["console:b-dave"].status == "done"


async def test_commands_that_change_nothing_skip_the_inbox_and_the_rest_are_stored(chat):
    """help, preview, sets and typos change no state: answered without a durable write
    (their ack waits for no commit); everything else is stored first."""
    assert "/discuss answer" in await chat.say("/discuss help")
    assert "Prompt sets" in await chat.say("/discuss sets", who="admin")
    assert "Unknown command `anwser`" in await chat.say("/discuss anwser hi")
    async with chat.store.session() as s:
        assert (await s.scalars(select(InboxEntry))).all() == []
    await chat.say("/discuss next")
    async with chat.store.session() as s:
        assert len((await s.scalars(select(InboxEntry))).all()) == 1


class RefusingPlatform(FindingPlatform):
    """Refuses round posts for good, as Slack does with not_in_channel."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    async def post(self, message):
        if isinstance(message, RoundPost):
            self.attempts += 1
            raise PostFailed("Slack says not_in_channel; invite the bot to the channel")
        return await super().post(message)


async def test_a_refused_round_fails_with_its_reason_and_is_never_retried(tmp_path, sqlite_url):
    from datetime import datetime

    fire = datetime(*FIRE_DAY, tzinfo=BERLIN)
    chat, scheduler = await setup(tmp_path, sqlite_url, config(), fire)
    platform = RefusingPlatform()
    chat.dispatcher.register(platform)
    try:
        (round_id,) = (await scheduler.tick()).opened
        for later in (timedelta(minutes=5), timedelta(hours=1), timedelta(hours=7)):
            await tick_at(chat, scheduler, fire + later)
        assert platform.attempts == 1
        row = await chat.store.get_round(round_id)
        assert row.status == "failed" and "not_in_channel" in row.status_reason
        assert await chat.say("/discuss answer 1 hello", who="bob") == NO_ROUND
        assert "could not be posted: Slack says not_in_channel" in await chat.say("/discuss next")
        text = format_rows(await history(chat.store), BERLIN)
        assert "failed (Slack says not_in_channel" in text and "still open" not in text
        assert platform.summaries() == []  # a round nobody saw gets no digest
    finally:
        await chat.store.close()


async def test_a_round_never_posted_ends_missed_without_a_digest(tmp_path, sqlite_url):
    from datetime import datetime

    fire = datetime(*FIRE_DAY, tzinfo=BERLIN)
    chat, scheduler = await setup(tmp_path, sqlite_url, config(), fire)
    chat.platform.fail_channels = {"console:general"}  # down for a week (transient)
    try:
        (first,) = (await scheduler.tick()).opened
        chat.platform.fail_channels = set()
        (second,) = (await tick_at(chat, scheduler, fire + timedelta(days=7))).opened
        row = await chat.store.get_round(first)
        assert row.status == "missed" and row.status_reason.startswith("missed: ")
        assert [p.round_id for p in chat.platform.rounds()] == [second]
        assert chat.platform.summaries() == []
        text = format_rows(await history(chat.store), BERLIN)
        assert "alpha  “Alpha article”  missed (missed: " in text.splitlines()[0]
    finally:
        await chat.store.close()


async def test_a_digest_that_failed_to_post_is_delivered_once_later(tmp_path, sqlite_url):
    from datetime import datetime

    fire = datetime(*FIRE_DAY, tzinfo=BERLIN)
    chat, scheduler = await setup(tmp_path, sqlite_url, config(extra="close_after: 1d"), fire)
    try:
        (round_id,) = (await scheduler.tick()).opened
        await chat.say("an answer", who="bob")
        chat.platform.fail_channels = {"console:general"}
        assert (await tick_at(chat, scheduler, fire + timedelta(days=1))).closed == [round_id]
        assert chat.platform.summaries() == []  # the platform was down
        chat.platform.fail_channels = set()
        for minutes in (1, 5, 60, 600):
            await tick_at(chat, scheduler, fire + timedelta(days=1, minutes=minutes))
        [digest] = chat.platform.summaries()
        assert isinstance(digest, Summary) and digest.final and digest.respondents == 1
        assert digest.resume  # a re-send: the platform skips the chunks that landed
        async with chat.store.session() as s:
            statuses = (await s.scalars(select(OutboxEntry.status))).all()
        assert set(statuses) == {"sent"}
    finally:
        await chat.store.close()


async def test_two_instances_share_undelivered_posts_and_deliver_each_once(tmp_path, database_url):
    """Rows whose sender died are taken over by the sweep of whichever instance comes
    first (FOR UPDATE SKIP LOCKED on PostgreSQL): each is delivered exactly once."""
    config_path = write_library(tmp_path)
    first = await make_chat(config_path, database_url)
    second = await make_chat(config_path, database_url)
    try:
        await first.say("/discuss now")
        round_ = await first.store.open_round_in(first.channel)
        notices = [
            ThreadPost(round_.id, first.channel, None, "notice", f"notice {n}") for n in range(40)
        ]
        async with first.store.transaction():  # written, then the writer died
            await first.dispatcher.outbox.write(notices)
        for chat in (first, second):
            chat.clock.advance(LEASE * 2)
        await asyncio.gather(
            first.dispatcher.outbox.deliver_due(), second.dispatcher.outbox.deliver_due()
        )
        texts = [p.text for c in (first, second) for p in c.platform.thread_posts()]
        assert sorted(texts) == sorted(f"notice {n}" for n in range(40))
    finally:
        await first.store.close()
        await second.store.close()


async def test_a_round_replaced_while_its_post_was_in_flight_is_closed_with_a_digest(chat):
    await chat.say("/discuss now")  # round 1, posted
    platform = chat.platform
    landed = asyncio.Event()
    release = asyncio.Event()
    post = platform.post

    async def slow_post(message):
        if isinstance(message, RoundPost) and message.round_id == 2:
            landed.set()
            await release.wait()  # the platform has it; the answer is on its way back
        return await post(message)

    platform.post = slow_post
    opening = asyncio.create_task(chat.say("/discuss now"))  # round 2
    await landed.wait()
    await chat.say("/discuss now")  # round 3 replaces round 2 meanwhile (recorded missed)
    assert (await chat.store.get_round(2)).status == "missed"
    release.set()
    await opening
    row = await chat.store.get_round(2)
    assert (row.status, row.status_reason) == ("closed", None)  # it was seen after all
    digests = [s.round_id for s in platform.summaries()]
    assert sorted(digests) == [1, 2]


async def test_processed_rows_are_pruned_after_the_window_and_pending_ones_kept(
    tmp_path, sqlite_url
):
    from datetime import datetime

    fire = datetime(*FIRE_DAY, tzinfo=BERLIN)
    chat, scheduler = await setup(tmp_path, sqlite_url, config(), fire)
    try:
        await scheduler.tick()  # a round and its post (outbox row, sent)
        await chat.say("an answer", who="bob")  # an inbox row, done
        await chat.dispatcher.accept("console:later", answer(chat, "pending", "bob", "m-9"))
        chat.dispatcher.inbox.process_due = _nothing  # type: ignore[method-assign]
        await tick_at(chat, scheduler, fire + timedelta(days=8))
        async with chat.store.session() as s:
            inbox = (await s.scalars(select(InboxEntry.key))).all()
            outbox = (await s.scalars(select(OutboxEntry.status))).all()
        assert inbox == ["console:later"]  # the pending row stays until it is processed
        assert "sent" not in outbox
    finally:
        await chat.store.close()


async def _nothing(*_args, **_kwargs) -> int:
    return 0


async def test_what_a_rolled_back_step_asked_to_do_after_commit_is_forgotten(chat):
    """``on_commit`` actions run once the transaction commits; a savepoint that rolls
    back takes its own with it, and a transaction that fails runs none."""
    done: list[str] = []
    async with chat.store.transaction():
        chat.store.on_commit(lambda: done.append("kept"))
        with contextlib.suppress(RuntimeError):
            async with chat.store.savepoint():
                chat.store.on_commit(lambda: done.append("rolled back"))
                raise RuntimeError("this step fails")
        assert done == []  # nothing before the commit
    assert done == ["kept"]
    with contextlib.suppress(RuntimeError):
        async with chat.store.transaction():
            chat.store.on_commit(lambda: done.append("never committed"))
            raise RuntimeError("the whole transaction fails")
    chat.store.on_commit(lambda: done.append("outside a transaction: at once"))
    assert done == ["kept", "outside a transaction: at once"]


async def test_a_failing_action_after_a_commit_does_not_undo_or_fail_the_write(chat, caplog):
    def broken() -> None:
        raise RuntimeError("a counter that broke")

    with caplog.at_level(logging.ERROR, logger="bot.storage.transactions"):
        async with chat.store.transaction():
            await chat.store.set_value("after-commit", "written", chat.clock.now())
            chat.store.on_commit(broken)
    assert await chat.store.get_value("after-commit") == "written"
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("an action after a commit failed")
