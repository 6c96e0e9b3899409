"""Calls open too long: the ones the tracker let go with no Hangup seen, until the CDR decides them.

A call whose Hangup fell into a gap (AMI dropped mid-call, and the channel
listing after the login failed: no `reporting` right, or a timeout) would
stay open in the tracker forever, and CDR recovery skips the calls the
tracker holds. After `inbound.max_call_hours` the tracker lets it go
(tracker.CallOverdue); this worker then reads Asterisk's CDR for it, again
every few minutes while the CDR has no row for it (the call may really be
that long), and records the tracker's own view of it, without a text, when
the CDR still has nothing after a day. Without a CDR configured the daemon
records that view at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from textback.core.tracker import CallFinished, CallOverdue
from textback.workers.common import SystemClock

log = logging.getLogger("textback")

RECHECK_SECONDS = 300.0  # a call that is really this long gets its CDR row when it ends
GIVE_UP_SECONDS = 24 * 3600.0  # then the tracker's view is recorded: the call is not lost
OVERLAP_SECONDS = 15.0  # the CDR's whole seconds, as for the recovery after a login


class OverdueCalls:
    """`recover(since)` runs the CDR's calls that ended after `since` and nobody recorded
    through the rules (False when the CDR could not be read); `decided(call_id)` says whether
    the store has the call; `record_as_seen(call)` records the tracker's view without a text."""

    def __init__(self, recover: Callable[[float], Awaitable[bool]],
                 decided: Callable[[str], Awaitable[bool]],
                 record_as_seen: Callable[[CallFinished], Awaitable[Any]], clock: SystemClock,
                 recheck_seconds: float = RECHECK_SECONDS, give_up_seconds: float = GIVE_UP_SECONDS):
        self._recover = recover
        self._decided = decided
        self._record_as_seen = record_as_seen
        self._clock = clock
        self._recheck_seconds = recheck_seconds
        self._give_up_seconds = give_up_seconds
        self._pending: dict[str, CallOverdue] = {}
        self._wake = asyncio.Event()

    @property
    def pending(self) -> list[str]:
        """The call ids waiting for the CDR."""
        return sorted(self._pending)

    def add(self, overdue: CallOverdue) -> None:
        self._pending[overdue.call_id] = overdue
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            if self._pending:
                await self.check()
            try:
                await asyncio.wait_for(self._wake.wait(), self._recheck_seconds)
            except asyncio.TimeoutError:
                pass

    async def check(self) -> None:
        """Read the CDR from the earliest waiting call's start; forget what it decided, and
        record as seen what waited longer than `give_up_seconds`."""
        since = min(o.started_at for o in self._pending.values()) - OVERLAP_SECONDS
        await self._recover(since)
        now = self._clock.now()
        for call_id, overdue in list(self._pending.items()):
            if await self._decided(call_id):
                del self._pending[call_id]
                log.info("call %s, open with no hangup seen, was decided from the CDR", call_id)
            elif now - overdue.as_seen.ended_at >= self._give_up_seconds:
                del self._pending[call_id]
                log.error("call %s: no hangup seen and no CDR row for it %g h after it was let go; "
                          "recorded as the AMI events showed it, without a text",
                          call_id, self._give_up_seconds / 3600)
                await self._record_as_seen(overdue.as_seen)
