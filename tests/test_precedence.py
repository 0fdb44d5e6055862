"""Precedence: work entered ``after`` waits while ``ongoing`` work runs (acks, then
processing; processing, then learning names), never for longer than its patience, and
only a few pieces of it run at once."""

from __future__ import annotations

import asyncio

from bot.adapters.precedence import Precedence


async def until(condition, turns: int = 1000) -> None:
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


def work_that_notes_its_start(first: Precedence) -> tuple[asyncio.Task, asyncio.Event]:
    started = asyncio.Event()

    async def work() -> None:
        async with first.after():
            started.set()

    return asyncio.create_task(work()), started


async def test_work_waits_while_an_ack_is_made_and_starts_once_it_is_done():
    first = Precedence(quiet=0, patience=60, slots=8)
    with first.ongoing():
        task, started = work_that_notes_its_start(first)
        for _ in range(50):
            await asyncio.sleep(0)
        assert not started.is_set()  # an ack is being made: the work waits
    await asyncio.wait_for(task, 5)
    assert started.is_set()


async def test_without_acks_work_starts_at_once():
    first = Precedence(quiet=60, patience=60, slots=8)
    async with first.after():
        pass  # no ack was ever made: nothing to wait for


async def test_acks_in_a_row_keep_the_work_waiting_until_they_stop():
    first = Precedence(quiet=0.05, patience=60, slots=8)
    with first.ongoing():
        pass
    task, started = work_that_notes_its_start(first)
    for _ in range(5):  # a burst: each ack comes before the quiet spell is over
        await asyncio.sleep(0.02)
        with first.ongoing():
            pass
        assert not started.is_set()
    await asyncio.wait_for(task, 5)


async def test_patience_bounds_the_wait_under_a_stream_of_acks():
    first = Precedence(quiet=0, patience=0.05, slots=8)
    with first.ongoing():  # acks never stop
        await asyncio.wait_for(_work_done(first), 5)


async def _work_done(first: Precedence) -> None:
    async with first.after():
        pass


async def test_only_so_many_pieces_of_work_run_at_once():
    first = Precedence(quiet=0, patience=60, slots=2)
    running, most = 0, 0
    release = asyncio.Event()

    async def work() -> None:
        nonlocal running, most
        async with first.after():
            running += 1
            most = max(most, running)
            await release.wait()
            running -= 1

    tasks = [asyncio.create_task(work()) for _ in range(5)]
    await until(lambda: running == 2)
    for _ in range(20):
        await asyncio.sleep(0)
    assert running == 2
    release.set()
    await asyncio.gather(*tasks)
    assert most == 2
