"""The outbox table: what the bot owes a channel, written with the change that causes
it and leased to a sender until delivered, retried or given up.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.models import GAVE_UP, PENDING, SENDING, SENT, OutboxEntry
from bot.storage.transactions import StoreBase


async def cancel_posts(s: AsyncSession, round_ids: list[int], reason: str) -> None:
    """Pending posts of rounds that ended unposted are never delivered."""
    await s.execute(
        update(OutboxEntry)
        .where(
            OutboxEntry.round_id.in_(round_ids),
            OutboxEntry.status.in_((PENDING, SENDING)),
        )
        .values(status=GAVE_UP, error=reason[:300], lease_until=None)
    )


class OutboxRows(StoreBase):
    """Messages owed, and their delivery."""

    async def outbox_add(self, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
        """Insert outbox rows (in the caller's transaction) in one statement; a known key
        inserts nothing. Returns {key: id} of the rows inserted."""
        if not rows:
            return {}
        outbox = OutboxEntry.__table__
        async with self.session() as s:  # Core: the ORM's unit of work costs more than the rest
            result = await (await s.connection()).execute(
                self._insert(outbox).on_conflict_do_nothing().returning(outbox.c.id, outbox.c.key),
                list(rows),
            )
            return {key: row_id for row_id, key in result.all()}

    async def outbox_lease_due(
        self, now: datetime, lease_until: datetime, limit: int = 200
    ) -> list[OutboxEntry]:
        """Take the rows that are due (pending, or sending with an expired lease: their
        sender died) for delivery by this process. On PostgreSQL several instances share
        the work: rows another instance has locked are skipped, not waited for."""
        async with self.session() as s:
            due = (
                (OutboxEntry.status == PENDING)
                & ((OutboxEntry.not_before.is_(None)) | (OutboxEntry.not_before <= now))
            ) | ((OutboxEntry.status == SENDING) & (OutboxEntry.lease_until < now))
            query = select(OutboxEntry).where(due).order_by(OutboxEntry.id).limit(limit)
            if self.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = list((await s.scalars(query.execution_options(populate_existing=True))).all())
            if rows:
                await s.execute(
                    update(OutboxEntry)
                    .where(OutboxEntry.id.in_([r.id for r in rows]))
                    .values(status=SENDING, lease_until=lease_until)
                )
            return rows

    async def outbox_sent_many(self, ids: list[int], now: datetime) -> None:
        async with self.session() as s:
            await s.execute(
                update(OutboxEntry)
                .where(OutboxEntry.id.in_(ids))
                .values(status=SENT, sent_at=now, lease_until=None, error=None)
            )

    async def outbox_retry(self, entry_id: int, error: str, retry_at: datetime) -> None:
        async with self.session() as s:
            await s.execute(
                update(OutboxEntry)
                .where(OutboxEntry.id == entry_id)
                .values(
                    status=PENDING,
                    attempts=OutboxEntry.attempts + 1,
                    error=error[:300],
                    not_before=retry_at,
                    lease_until=None,
                )
            )

    async def outbox_give_up(self, entry_id: int, reason: str) -> None:
        async with self.session() as s:
            await s.execute(
                update(OutboxEntry)
                .where(OutboxEntry.id == entry_id)
                .values(status=GAVE_UP, error=reason[:300], lease_until=None)
            )
