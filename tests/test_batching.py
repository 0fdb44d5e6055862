"""The scheduler's database work is batched: one occurrence across its channels is one
transaction, and a sweep with nothing due writes nothing (SQL statements are recorded)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import event

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


async def test_one_occurrence_in_five_channels_is_claimed_in_one_transaction(tmp_path, sqlite_url):
    fire = datetime(2026, 11, 2, 10, tzinfo=BERLIN)
    chat, scheduler = await setup(tmp_path, sqlite_url, config(channels=CHANNELS), fire)
    try:
        await scheduler.tick(fire - timedelta(hours=1))  # first start: nothing due yet
        recorder = Statements(chat.store.engine)
        report = await tick_at(chat, scheduler, fire)
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
