"""Group commit: calls that arrive while a batch is being written join the next one.

One transaction (and one flush to disk) then serves every call in the batch, however
many arrive at once, and a call that arrives alone is written at once: no timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """``submit`` an item, get its result once the batch holding it is written.

    ``write`` gets the items in arrival order and returns one result per item; if it
    raises, every call of that batch raises the same exception. Calls made in the same
    turn of the event loop form one batch. ``eager``: a call that finds nothing being
    written is written at once, in its own task (no hand-off to the writer task, one
    turn of the loop sooner); the calls that arrive while it is written form the next
    batch. For a caller someone waits on (an ack), when a write alone is cheap. But in a
    burst (a write ended less than ``burst_gap`` seconds ago) calls are batched again:
    then one write for several is what keeps everyone's wait short.
    """

    def __init__(
        self,
        write: Callable[[list[Item]], Awaitable[Sequence[Result]]],
        *,
        limit: int = 200,
        eager: bool = False,
        burst_gap: float = 0.001,
    ):
        self._write = write
        self._limit = limit
        self._eager = eager
        self._burst_gap = burst_gap
        self._last_write = float("-inf")  # loop time the last write ended
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task | None = None
        self._writing = False

    @property
    def _busy(self) -> bool:
        return self._writing or (self._writer is not None and not self._writer.done())

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        if self._eager and not self._busy and loop.time() - self._last_write > self._burst_gap:
            self._writing = True  # nothing being written, no burst: write this one now
            try:
                return (await self._write([item]))[0]
            finally:
                self._writing = False
                self._last_write = loop.time()
                self._start_writer()  # for those that arrived meanwhile
        future: asyncio.Future[Result] = loop.create_future()
        self._queue.append((item, future))
        self._start_writer()
        return await future

    def _start_writer(self) -> None:
        if self._queue and not self._busy:
            self._writer = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._limit], self._queue[self._limit :]
            try:
                results = await self._write([item for item, _ in batch])
            except Exception as exc:  # every caller hears it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            finally:
                self._last_write = asyncio.get_running_loop().time()
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
