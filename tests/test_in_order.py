"""Finished calls commit in the order they finished, though their reads overlap
(textback/workers/in_order.py, used by Daemon.finish_call)."""

from __future__ import annotations

import asyncio

import pytest

from textback.workers.in_order import InOrder


async def step(order: InOrder, name: str, read_seconds: float, committed: list[str],
               fail: bool = False) -> None:
    turn = order.take()
    try:
        await asyncio.sleep(read_seconds)  # the read: overlaps the others'
        if fail:
            raise RuntimeError(f"{name}'s read failed")
        await turn.wait()
        committed.append(name)
    finally:
        turn.end()


async def test_reads_that_come_back_in_any_order_commit_in_the_order_taken():
    order, committed = InOrder(), []
    started = asyncio.get_running_loop().time()
    await asyncio.gather(*(step(order, name, seconds, committed)
                           for name, seconds in (("a", 0.6), ("b", 0.4), ("c", 0.2), ("d", 0.0))))
    assert committed == ["a", "b", "c", "d"]
    # The reads overlapped: the whole took about the longest read (0.6 s), not their sum (1.2 s).
    assert asyncio.get_running_loop().time() - started < 1.1


async def test_a_failed_step_does_not_hold_the_steps_after_it():
    order, committed = InOrder(), []
    results = await asyncio.gather(step(order, "a", 0.05, committed, fail=True),
                                   step(order, "b", 0.0, committed),
                                   return_exceptions=True)
    assert isinstance(results[0], RuntimeError) and results[1] is None
    assert committed == ["b"]


async def test_a_cancelled_step_does_not_hold_the_steps_after_it_nor_free_them_early():
    order, committed = InOrder(), []
    first = asyncio.create_task(step(order, "a", 0.2, committed))
    second = asyncio.create_task(step(order, "b", 0.3, committed))
    third = asyncio.create_task(step(order, "c", 0.0, committed))
    await asyncio.sleep(0.05)
    second.cancel()  # waiting for its read; "c" must still wait for "a"
    await asyncio.sleep(0.05)
    assert committed == []
    await asyncio.gather(first, third)
    with pytest.raises(asyncio.CancelledError):
        await second
    assert committed == ["a", "c"]


async def test_a_step_ended_early_lets_the_next_commit_before_its_own_end():
    order, committed = InOrder(), []
    released = asyncio.Event()

    async def commits_then_lingers() -> None:
        turn = order.take()
        try:
            await turn.wait()
            committed.append("a")
            turn.end()  # committed; its mail and logs go on
            await released.wait()
        finally:
            turn.end()

    lingering = asyncio.create_task(commits_then_lingers())
    await asyncio.sleep(0)  # it takes its turn first
    await step(order, "b", 0.0, committed)
    assert committed == ["a", "b"]
    released.set()
    await lingering
