"""Small state beside the rounds: a channel's pause and pending skips, the app's
key-value settings, and the dedup marks of platform events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from bot.storage.models import AppState, ChannelState, ProcessedEvent
from bot.storage.transactions import StoreBase


class StateRows(StoreBase):
    """Channel state and app values."""

    async def channel_state(self, channel: str) -> ChannelState | None:
        async with self.session() as s:
            return await s.get(ChannelState, channel)

    async def channel_states(self, channels: list[str]) -> dict[str, ChannelState]:
        async with self.session() as s:
            rows = await s.scalars(select(ChannelState).where(ChannelState.channel.in_(channels)))
            return {row.channel: row for row in rows.all()}

    async def set_channel_state(self, channel: str, now: datetime, **values: Any) -> None:
        async with self.session() as s:
            state = await s.get(ChannelState, channel)
            if state is None:
                state = ChannelState(channel=channel, paused=False, skips_pending=0, updated_at=now)
                s.add(state)
            for key, value in values.items():
                setattr(state, key, value)
            state.updated_at = now

    async def first_time(self, key: str, now: datetime) -> bool:
        """Record a platform event id; False if it was already recorded (a redelivery).
        Not on the write path any more (the inbox's key dedups); kept for the rows of
        ``processed_events`` that forget-me and its tests deal with."""
        async with self.session() as s:
            result = await s.execute(
                self._insert(ProcessedEvent).values(key=key, seen_at=now).on_conflict_do_nothing()
            )
            return result.rowcount == 1

    async def get_value(self, key: str) -> str | None:
        async with self.session() as s:
            row = await s.get(AppState, key)
            return row.value if row else None

    async def set_value(self, key: str, value: str, now: datetime) -> None:
        async with self.session() as s:
            await s.execute(
                self._insert(AppState)
                .values(key=key, value=value, updated_at=now)
                .on_conflict_do_update(
                    index_elements=[AppState.key], set_={"value": value, "updated_at": now}
                )
            )

    async def setdefault_value(self, key: str, value: str, now: datetime) -> str:
        """Store ``value`` under ``key`` unless one is there; return the stored value."""
        async with self.session() as s:
            await s.execute(
                self._insert(AppState)
                .values(key=key, value=value, updated_at=now)
                .on_conflict_do_nothing()
            )
            row = await s.get(AppState, key)
            return row.value if row else value

    async def values_with_prefix(self, prefix: str) -> dict[str, str]:
        async with self.session() as s:
            rows = await s.scalars(select(AppState).where(AppState.key.startswith(prefix)))
            return {row.key: row.value for row in rows.all()}
