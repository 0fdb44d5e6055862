"""Acks first: work that follows an ack waits while other acks are being made.

A platform gives the bot about 3 seconds to acknowledge a request (Slack's slash
commands and events, Discord's interactions); processing the stored event afterwards
has no such deadline. In one event loop they share one core, and a processing
transaction holds both the loop (its statements run inline) and SQLite's one writer,
which the next ack needs for its inbox row. So when many people answer at once, every
ack would wait behind the processing of the answers before it. Work run through
``work`` waits until no ack has been in progress for ``quiet`` seconds, but never
longer than ``patience`` (a steady stream of requests delays the work, it cannot
starve it), and at most ``slots`` pieces of work run at once, so an ack that arrives
meanwhile waits for a batch of that size, not for all that waited.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

QUIET = 0.002  # seconds without an ack before work resumes (the next request of a burst
# arrives well within this on a live connection)
PATIENCE = 1.0  # the longest work waits for acks
SLOTS = 8


class AckFirst:
    def __init__(self, *, quiet: float = QUIET, patience: float = PATIENCE, slots: int = SLOTS):
        self.quiet = quiet
        self.patience = patience
        self._in_flight = 0
        self._last_ack = float("-inf")  # loop time the last ack was made
        self._idle = asyncio.Event()
        self._idle.set()
        self._timer: asyncio.TimerHandle | None = None
        self._slots = asyncio.Semaphore(slots)

    @contextlib.contextmanager
    def acking(self) -> Iterator[None]:
        """Around the making of one ack (from the request read to the response)."""
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            loop = asyncio.get_running_loop()
            self._last_ack = loop.time()
            if self._timer is None:  # one timer per quiet spell, not one per ack
                self._timer = loop.call_at(self._last_ack + self.quiet, self._check)

    def _check(self) -> None:
        self._timer = None
        if self._in_flight:
            return  # the ack in progress re-arms it when done
        loop = asyncio.get_running_loop()
        quiet_at = self._last_ack + self.quiet
        if loop.time() >= quiet_at:
            self._idle.set()
        else:
            self._timer = loop.call_at(quiet_at, self._check)

    @property
    def idle(self) -> bool:
        return self._idle.is_set()

    @contextlib.asynccontextmanager
    async def work(self) -> AsyncIterator[None]:
        """Around one piece of work that follows an ack."""
        async with self._slots:
            await self._turn()
            yield

    async def _turn(self) -> None:
        """Return once no ack is being made (after ``quiet``), or after ``patience``."""
        if self._idle.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.patience)
