"""Precedence: work that can wait yields to work that cannot.

A platform gives the bot about 3 seconds to acknowledge a request (Slack's slash
commands and events, Discord's interactions); processing the stored event afterwards
has no such deadline, and learning a display name has none at all. In one event loop
they share one core, and a processing transaction holds both the loop (its statements
run inline) and SQLite's one writer, which the next ack needs for its inbox row. So
when many people answer at once, every ack would wait behind the processing of the
answers before it.

One ``Precedence`` orders two kinds of work: while work marked ``ongoing`` runs (the
acks), work entered with ``after`` (processing) waits until none has run for ``quiet``
seconds, never longer than ``patience`` (a steady stream delays it, it cannot starve
it), and at most ``slots`` pieces of it run at once, so an ack that arrives meanwhile
waits for a batch of that size, not for all that waited.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class Precedence:
    def __init__(self, *, quiet: float, patience: float, slots: int):
        self.quiet = quiet
        self.patience = patience
        self._ongoing = 0
        self._last_end = float("-inf")  # loop time the last ongoing work ended
        self._idle = asyncio.Event()
        self._idle.set()
        self._timer: asyncio.TimerHandle | None = None
        self._slots = asyncio.Semaphore(slots)

    def ongoing(self) -> Precedence:
        """Around work that goes first (an ack: from the request read to the response).
        The object itself is the context manager: it is entered inside every ack."""
        return self

    def __enter__(self) -> None:
        self._ongoing += 1
        self._idle.clear()

    def __exit__(self, *_: object) -> None:
        self._ongoing -= 1
        loop = asyncio.get_running_loop()
        self._last_end = loop.time()
        if self._timer is None:  # one timer per quiet spell, not one per piece
            self._timer = loop.call_at(self._last_end + self.quiet, self._check)

    def _check(self) -> None:
        self._timer = None
        if self._ongoing:
            return  # the work in progress re-arms it when done
        loop = asyncio.get_running_loop()
        quiet_at = self._last_end + self.quiet
        if loop.time() >= quiet_at:
            self._idle.set()
        else:
            self._timer = loop.call_at(quiet_at, self._check)

    @contextlib.asynccontextmanager
    async def after(self) -> AsyncIterator[None]:
        """Around work that waits for the ``ongoing`` work."""
        async with self._slots:
            await self.settled()
            yield

    async def settled(self) -> None:
        """Return once no ``ongoing`` work has run for ``quiet`` seconds (or after
        ``patience``). Takes no slot: for deciding when to start work, not for doing it."""
        if not self._idle.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.patience):  # a timer, not a task
                    await self._idle.wait()
