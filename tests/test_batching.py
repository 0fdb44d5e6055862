"""The database work is batched: one occurrence across its channels is one transaction,
a sweep with nothing due writes nothing, and answers arriving together share their
inbox and processing transactions (SQL statements are recorded)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta

from sqlalchemy import event, select

from bot.config import Secrets
from bot.core.batching import Batcher
from bot.core.events import CommandInvoked, MessagePosted
from bot.core.ports import Ports
from bot.storage.models import InboxEntry
from tests.support import make_chat
from tests.test_scheduling import BERLIN, config, setup, tick_at

CHANNELS = "[console:a, console:b, console:c, console:d, console:e]"


class Statements:
    """Every SQL statement the store's engine runs, split into transactions."""

    def __init__(self, engine) -> None:
        self.transactions: list[list[str]] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._record)

    def _record(self, _conn, _cursor, statement, *_args) -> None:
        if statement.startswith("BEGIN"):
            self.transactions.append([])
        elif self.transactions:
            self.transactions[-1].append(statement)

    def writes(self) -> list[str]:
        verbs = ("INSERT", "UPDATE", "DELETE")
        return [s for t in self.transactions for s in t if s.lstrip().upper().startswith(verbs)]


async def test_one_occurrence_in_five_channels_is_claimed_in_one_transaction(
    tmp_path, sqlite_url, caplog
):
    fire = datetime(2026, 11, 2, 10, tzinfo=BERLIN)
    chat, scheduler = await setup(tmp_path, sqlite_url, config(channels=CHANNELS), fire)
    try:
        await scheduler.tick(fire - timedelta(hours=1))  # first start: nothing due yet
        recorder = Statements(chat.store.engine)
        with caplog.at_level(logging.WARNING, logger="bot.core.rounds"):
            report = await tick_at(chat, scheduler, fire)
        # the five channels run low together: one line says so, not five
        [low] = [r.getMessage() for r in caplog.records if "unused prompt" in r.getMessage()]
        assert low.startswith("5 channels (console:a, …) have 2 unused prompts left")
        assert len(report.opened) == 5
        claims = [
            t for t in recorder.transactions if any(s.startswith("INSERT INTO rounds") for s in t)
        ]
        assert len(claims) == 1
        # a few statements for all five channels, not a few per channel
        assert sum(s.startswith("INSERT INTO rounds") for s in claims[0]) == 1
        assert sum(s.startswith("INSERT INTO outbox") for s in claims[0]) == 1
        assert len(claims[0]) < 15
        assert len(await chat.store.rounds()) == 5
    finally:
        await chat.store.close()


async def test_a_sweep_with_nothing_due_writes_nothing(tmp_path, sqlite_url):
    fire = datetime(2026, 11, 2, 10, tzinfo=BERLIN)
    chat, scheduler = await setup(tmp_path, sqlite_url, config(channels=CHANNELS), fire)
    try:
        assert len((await scheduler.tick()).opened) == 5
        recorder = Statements(chat.store.engine)
        for minutes in (1, 2, 3):
            await tick_at(chat, scheduler, fire + timedelta(minutes=minutes))
        assert recorder.writes() == []
        assert recorder.transactions  # it did look
    finally:
        await chat.store.close()


async def test_answers_arriving_together_are_stored_at_once_and_processed_in_one_transaction(
    config_path, sqlite_url
):
    """20 answers accepted at once: each is stored before its ack returns (on SQLite a
    commit of its own that waits for no disk and no SQLAlchemy), then they are processed
    together in one transaction with a single claim UPDATE and no savepoints."""
    chat = await make_chat(config_path, sqlite_url)
    try:
        await chat.say("/discuss now")
        inbox = chat.dispatcher.inbox
        events = [
            MessagePosted(chat.actor(f"p{i}"), chat.channel, f"answer {i}", f"m-{i}")
            for i in range(20)
        ]
        recorded = Statements(chat.store.engine)
        tickets = await asyncio.gather(
            *(inbox.accept(f"console:m-{i}", e) for i, e in enumerate(events))
        )
        assert recorded.transactions == []  # straight on the set-aside connection
        async with chat.store.session() as s:
            stored = (
                await s.scalars(select(InboxEntry).where(InboxEntry.key.like("console:m-%")))
            ).all()
        assert sorted(r.id for r in stored) == sorted(t.entry_id for t in tickets)
        assert {r.status for r in stored} == {"pending"}
        replies = await asyncio.gather(*(inbox.process(t) for t in tickets))
        assert all(r[0].text == "Saved your answer." for r in replies)
        [batch] = [t for t in recorded.transactions if any("UPDATE inbox" in s for s in t)]
        assert sum("UPDATE inbox" in s for s in batch) == 1
        assert not any(s.startswith("SAVEPOINT") for s in batch)
        # the channel's open round is looked up once for the batch, not once per answer
        assert sum("FROM rounds" in s for s in batch) == 1
        round_ = await chat.store.open_round_in(chat.channel)
        assert len(await chat.store.responses(round_.id)) == 20
        async with chat.store.session() as s:  # processed: the payload is not kept
            rows = (await s.scalars(select(InboxEntry))).all()
        assert {(r.status, json.dumps(r.payload)) for r in rows} == {("done", "{}")}
    finally:
        await chat.store.close()


async def test_an_eager_batcher_writes_a_lone_call_at_once_and_batches_what_arrives_meanwhile():
    """The ack's group commit: the first call is written in its own task, without waiting
    for a writer task; the calls that arrive while that write waits form one batch."""
    written: list[list[int]] = []
    writers: list[asyncio.Task | None] = []
    release = asyncio.Event()

    async def write(items: list[int]) -> list[int]:
        written.append(items)
        writers.append(asyncio.current_task())
        if len(written) == 1:
            await release.wait()  # the first write takes a while (a commit)
        return [item * 10 for item in items]

    batcher = Batcher(write, eager=True)
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.sleep(0)
    assert written == [[1]]
    assert writers == [first]  # written by the caller's own task, not a writer task
    rest = asyncio.gather(*(batcher.submit(n) for n in (2, 3, 4)))
    await asyncio.sleep(0)
    assert written == [[1]]  # they wait for the first write
    release.set()
    assert await first == 10
    assert await rest == [20, 30, 40]
    assert written == [[1], [2, 3, 4]]
    assert writers[1] is not first  # the batch: by the writer task


async def test_names_learned_together_are_written_in_one_transaction(config_path, sqlite_url):
    chat = await make_chat(config_path, sqlite_url)
    ports = Ports(chat.dispatcher, chat.clock, chat.library, Secrets())
    try:
        await chat.say("/discuss now")
        for i in range(5):
            await chat.say(f"answer from p{i}", who=f"p{i}")
        recorded = Statements(chat.store.engine)
        await ports.rename({f"console:p{i}": f"Person {i}" for i in range(5)})
        [renames] = recorded.transactions  # one transaction, one UPDATE for all five
        assert [s.split()[0] for s in renames] == ["UPDATE"]
        round_ = await chat.store.open_round_in(chat.channel)
        names = sorted(r.author_name for r in await chat.store.responses(round_.id))
        assert names == [f"Person {i}" for i in range(5)]
    finally:
        await chat.store.close()


async def test_the_open_round_is_looked_up_again_once_a_round_was_written(config_path, sqlite_url):
    chat = await make_chat(config_path, sqlite_url)
    try:
        await chat.say("/discuss now")
        async with chat.store.transaction():
            first = await chat.store.open_round_in(chat.channel)
            assert await chat.store.open_round_in(chat.channel) is first  # no second query
            replies = await chat.dispatcher.handlers.handle(
                CommandInvoked(chat.actor("admin"), chat.channel, "/discuss now")
            )
            second = await chat.store.open_round_in(chat.channel)
            assert second is not None and second.id != first.id, replies
            first.status = "closed"  # a change waiting to be flushed: asked again
            assert (await chat.store.open_round_in(chat.channel)).id == second.id
    finally:
        await chat.store.close()


async def test_in_a_burst_an_eager_batcher_batches_again():
    """Right after a write (within ``burst_gap``), calls are batched as without eager:
    one write for several is then what keeps every caller's wait short."""
    written: list[list[int]] = []

    async def write(items: list[int]) -> list[int]:
        written.append(items)
        return items

    batcher = Batcher(write, eager=True, burst_gap=60)
    assert await batcher.submit(1) == 1  # nothing written before: at once
    assert await asyncio.gather(*(batcher.submit(n) for n in (2, 3, 4))) == [2, 3, 4]
    assert written == [[1], [2, 3, 4]]  # a burst: the three share one write
