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
    raises, every call of that batch raises the same exception.
    """

    def __init__(
        self, write: Callable[[list[Item]], Awaitable[Sequence[Result]]], *, limit: int = 200
    ):
        self._write = write
        self._limit = limit
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task | None = None

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await future

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
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
