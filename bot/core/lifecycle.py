"""The round lifecycle: every state a round can be in, and every way it moves.

::

    claimed ──(post delivered)──▶ posted ──(close: digest row in the same transaction)──▶ closed
       │  (/discuss now opens as "posting"; same transitions)
       ├──(platform refuses for good: not_in_channel, 403/404)──▶ failed  (reason kept)
       ├──(not delivered within the schedule's catch-up window)──▶ missed (reason kept)
       └──(the next round opens, or /discuss close, before it was posted)──▶ missed

    skipped / missed occurrences are recorded directly (holiday, pause, downtime).

A round that was never posted never gets a digest: only ``posted → closed`` writes one.
Posting itself is an outbox row (``bot.core.outbox``) written in the transaction that
claimed the round, so a crash between claim and post leaves a debt the sweep pays.
"""

from __future__ import annotations

import logging
from datetime import datetime

from bot.storage.models import (
    CLAIMED,
    CLOSED,
    FAILED,
    MISSED,
    OPEN_STATUSES,
    POSTED,
    POSTING,
    SKIPPED,
    Round,
)
from bot.storage.store import Store

log = logging.getLogger(__name__)

WAITING_TO_POST = (CLAIMED, POSTING)
FINAL = (CLOSED, MISSED, SKIPPED, FAILED)
TRANSITIONS: dict[str, frozenset[str]] = {
    CLAIMED: frozenset({POSTING, POSTED, FAILED, MISSED}),
    POSTING: frozenset({POSTED, FAILED, MISSED}),
    POSTED: frozenset({CLOSED}),
    CLOSED: frozenset(),
    MISSED: frozenset(),
    SKIPPED: frozenset(),
    FAILED: frozenset(),
}

__all__ = [
    "CLAIMED",
    "CLOSED",
    "FAILED",
    "FINAL",
    "MISSED",
    "OPEN_STATUSES",
    "POSTED",
    "POSTING",
    "SKIPPED",
    "TRANSITIONS",
    "WAITING_TO_POST",
    "Lifecycle",
]


class Lifecycle:
    """The transitions that follow from delivering (or failing to deliver) a post."""

    def __init__(self, store: Store):
        self.store = store

    async def posted(
        self, round_id: int, message_ref: str | None, thread_ref: str | None, now: datetime
    ) -> None:
        """claimed/posting → posted, recording where the post landed."""
        await self.store.mark_posted(round_id, message_ref, thread_ref, now)

    async def posted_many(self, posted: dict, now: datetime) -> None:
        """``posted`` for many rounds at once ({round id: Posted})."""
        await self.store.mark_posted_many(
            {rid: (p.message_ref, p.thread_ref) for rid, p in posted.items()}, now
        )

    async def refused(self, round_: Round, reason: str, now: datetime) -> bool:
        """The platform refused for good: → failed, with the reason (never retried)."""
        if await self.store.fail_round(round_.id, FAILED, reason, now):
            log.error(
                "round %s in %s failed: %s. Nothing more is posted there for this round; "
                "/discuss answer there says no round is open.",
                round_.id,
                round_.channel,
                reason,
            )
            return True
        return False

    async def overdue(self, round_: Round, reason: str, now: datetime) -> bool:
        """Not posted within its window: → missed, with the reason."""
        if await self.store.fail_round(round_.id, MISSED, reason, now):
            log.error("round %s in %s was %s", round_.id, round_.channel, reason)
            return True
        return False

    async def close(self, round_id: int, now: datetime, *, why: str) -> Round | None:
        """posted → closed (returned: write its digest in this transaction); a round
        still waiting to post ends missed with ``why`` and gets no digest."""
        return await self.store.close_round(round_id, now, unposted_reason=why)
