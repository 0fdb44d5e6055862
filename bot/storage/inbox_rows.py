"""The inbox table: every incoming event stored before the platform is acknowledged,
then claimed by the transaction that processes it. And the prune of old rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import OperationalError

from bot.storage.models import (
    DONE,
    GAVE_UP,
    PENDING,
    SENT,
    InboxEntry,
    OutboxEntry,
    ProcessedEvent,
)
from bot.storage.sqlite_driver import BUSY_CODES
from bot.storage.transactions import StoreBase, ambient_session

_inbox = InboxEntry.__table__
_CLAIM_MANY = (
    update(_inbox)
    .where(
        _inbox.c.id.in_(bindparam("ids", expanding=True)),
        _inbox.c.status == PENDING,
    )
    .values(status=DONE, processed_at=bindparam("now"), error=None, payload={})
    .returning(_inbox.c.id)
)


class _RawInsert:
    """An ``INSERT … ON CONFLICT DO NOTHING`` compiled by SQLAlchemy once,
    with each column's own conversion (JSON, UTC datetimes), to run on the DBAPI
    connection directly."""

    def __init__(self, table: Any, dialect: Any, columns: Sequence[str]):
        statement = sqlite.insert(table).on_conflict_do_nothing()
        compiled = statement.compile(dialect=dialect, column_keys=list(columns))
        self.sql = str(compiled)
        self.names = list(compiled.positiontup or [])
        self._convert = {
            name: table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self.names
        }

    def params(self, rows: Sequence[Sequence[Any]], own: Sequence[str], shared: dict) -> list:
        """Each row's parameters in the statement's order: ``rows`` hold the values of
        the ``own`` columns, ``shared`` the values every row has (converted once)."""
        template = [self._db(name, shared[name]) if name in shared else None for name in self.names]
        slots = [(self.names.index(name), self._convert[name]) for name in own]
        params = []
        for row in rows:
            values = template.copy()
            for (where, to_db), value in zip(slots, row, strict=True):
                values[where] = value if to_db is None else to_db(value)
            params.append(tuple(values))
        return params

    def _db(self, name: str, value: Any) -> Any:
        to_db = self._convert[name]
        return value if to_db is None else to_db(value)


def _busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in BUSY_CODES


class InboxRows(StoreBase):
    """What arrived, until it is processed (or given up)."""

    _inbox_insert: _RawInsert | None = None  # compiled once (see _inbox_add_sqlite)

    async def inbox_add(self, key: str, payload: dict, now: datetime) -> int | None:
        """Store an incoming event durably; None if its key is known (a redelivery)."""
        async with self.session() as s:
            return (
                await s.execute(
                    self._insert(InboxEntry)
                    .values(
                        key=key,
                        payload=payload,
                        status=PENDING,
                        attempts=0,
                        not_before=now,
                        created_at=now,
                    )
                    .on_conflict_do_nothing()
                    .returning(InboxEntry.id)
                )
            ).scalar()

    async def inbox_add_many(
        self, items: Sequence[tuple[str, dict]], now: datetime
    ) -> dict[str, int]:
        """Store several incoming events in one transaction whose commit does not wait
        for the disk (``_unflushed``): {key: id} for those that were new; known keys
        (redeliveries) are left out. A person waits for this one (the ack)."""
        shared = {"status": PENDING, "attempts": 0, "not_before": now, "created_at": now}
        if self.dialect == "sqlite" and ambient_session() is None:
            return await self._inbox_add_sqlite(items, shared)
        rows = [{"key": key, "payload": payload, **shared} for key, payload in items]
        insert_rows = self._insert(_inbox).on_conflict_do_nothing()
        insert_rows = insert_rows.returning(_inbox.c.id, _inbox.c.key)
        async with self._unflushed() as connection:
            result = await connection.execute(insert_rows, rows)
            return {key: entry_id for entry_id, key in result.all()}

    async def _inbox_add_sqlite(
        self, items: Sequence[tuple[str, dict]], shared: dict[str, Any]
    ) -> dict[str, int]:
        """``inbox_add_many`` on SQLite: the statement SQLAlchemy compiled once, run
        straight on the set-aside connection (``InlineConnection.insert_now``). Through
        the ORM's execution path it cost ten times the INSERT itself, all of it inside
        the ack."""
        if self._inbox_insert is None:
            columns = ("key", "payload", "status", "attempts", "not_before", "created_at")
            self._inbox_insert = _RawInsert(_inbox, self.engine.dialect, columns)
        insert = self._inbox_insert
        params = insert.params(items, ("key", "payload"), shared)
        async with self._turn(urgent=True):
            connection = await self._unflushed_connection()
            try:
                ids = await self._unflushed_driver.insert_now(insert.sql, params)
            except sqlite3.Error as exc:
                if not _busy(exc):  # start again on a new connection next time
                    self._unflushed_sqlite = None
                    await connection.invalidate()
                    await connection.close()
                raise OperationalError(insert.sql, None, exc) from exc
        return {key: i for (key, _), i in zip(items, ids, strict=True) if i is not None}

    async def inbox_claim(self, entry_id: int, now: datetime) -> bool:
        """Mark a pending row done in the current transaction, first thing: it commits
        (or rolls back) together with the handler's writes. False: done elsewhere."""
        async with self.session() as s:
            result = await s.execute(
                update(InboxEntry)
                .where(InboxEntry.id == entry_id, InboxEntry.status == PENDING)
                .values(status=DONE, processed_at=now, error=None, payload={})
            )
            return result.rowcount == 1

    async def inbox_claim_many(self, entry_ids: Sequence[int], now: datetime) -> set[int]:
        """``inbox_claim`` for several rows in one statement: the ids that were pending."""
        async with self.session() as s:
            result = await s.execute(_CLAIM_MANY, {"ids": sorted(set(entry_ids)), "now": now})
            return set(result.scalars().all())

    async def inbox_attempt_failed(
        self, entry_id: int, error: str, now: datetime, retry_at: datetime | None
    ) -> None:
        """Count a failed attempt; with no ``retry_at`` the row is given up (failed)."""
        async with self.session() as s:
            values: dict[str, Any] = {
                "attempts": InboxEntry.attempts + 1,
                "error": error[:300],
                "not_before": retry_at,
            }
            if retry_at is None:
                values.update(status=GAVE_UP, processed_at=now, payload={})
            await s.execute(
                update(InboxEntry)
                .where(InboxEntry.id == entry_id, InboxEntry.status == PENDING)
                .values(**values)
            )

    async def inbox_due(self, now: datetime, limit: int = 500) -> list[InboxEntry]:
        return await self._all(
            select(InboxEntry)
            .where(
                InboxEntry.status == PENDING,
                (InboxEntry.not_before.is_(None)) | (InboxEntry.not_before <= now),
            )
            .order_by(InboxEntry.id)
            .limit(limit)
        )

    async def inbox_get(self, entry_id: int) -> InboxEntry | None:
        async with self.session() as s:
            return await s.get(InboxEntry, entry_id, populate_existing=True)

    async def prune(self, before: datetime) -> int:
        """Drop processed inbox rows, delivered or abandoned outbox rows and dedup marks
        older than ``before``: they only guard against redeliveries inside that window."""
        async with self.session() as s:
            n = 0
            for stmt in (
                delete(InboxEntry).where(
                    InboxEntry.status.in_((DONE, GAVE_UP)), InboxEntry.created_at < before
                ),
                delete(OutboxEntry).where(
                    OutboxEntry.status.in_((SENT, GAVE_UP)), OutboxEntry.created_at < before
                ),
                delete(ProcessedEvent).where(ProcessedEvent.seen_at < before),
            ):
                n += (await s.execute(stmt)).rowcount or 0
            return n
