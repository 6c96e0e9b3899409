"""Commits in the order their work began, while the work before them overlaps.

A finished call is read (its caller's facts), judged, then committed. On PostgreSQL the reads
of calls that end close together run at once on the pool's connections and finish in any
order; if each call then committed as soon as its read came back, two calls ending a few
milliseconds apart could be recorded the other way round (seen at twice the throughput
ceiling: `bench/throughput.py`, "in order"). Each call takes a `Turn` when it begins, in the
order the tracker finished them, reads at once, and waits for the call before it to commit
before committing itself: the reads overlap, the commits keep the calls' order.

A turn always ends (the caller ends it in a `finally`), committed or not, so one failed or
cancelled call never holds the calls after it; nor does it free them before the calls before
it have ended.
"""

from __future__ import annotations

import asyncio


class Turn:
    """One step's place in the order: `wait` until the step before it has ended, then `end`."""

    def __init__(self, before: asyncio.Future | None, mine: asyncio.Future):
        self._before = before
        self._mine = mine

    async def wait(self) -> None:
        """Return once every step taken before this one has ended."""
        if self._before is not None:
            await asyncio.shield(self._before)  # a cancelled waiter leaves the one before alone

    def end(self) -> None:
        """This step is over, committed or not: the next may go on once the steps before this
        one have ended too (a step that failed or was cancelled early frees no one early)."""
        if self._before is None or self._before.done():
            self._release()
        else:
            self._before.add_done_callback(lambda _: self._release())

    def _release(self) -> None:
        if not self._mine.done():
            self._mine.set_result(None)


class InOrder:
    """Hands out turns in the order they are taken (see the module's docstring)."""

    def __init__(self) -> None:
        self._last: asyncio.Future | None = None

    def take(self) -> Turn:
        """The next turn; take it before the step's first await, so the order is the callers'."""
        mine = asyncio.get_running_loop().create_future()
        turn, self._last = Turn(self._last, mine), mine
        return turn
