"""One AMI listener per PBX across a fleet of daemons on one PostgreSQL.

The daemon that holds the PBX's advisory lease (`AdvisoryLease`, a session-level advisory lock
on a connection of its own) listens to its AMI; the others stand by and try again every
`retry_seconds`. The holder checks its lease every `check_seconds` with a query that must
answer within `check_timeout`; when it does not (the database is gone, the session was
terminated, the network is cut), the holder stops listening before anything else, so that it
never acts on calls the next holder also sees, and only then drops the lease and stands by.

A new holder logs in to AMI as at any start, and the login recovers from the CDR the calls
that ended since the moment the last holder saved (`progress`): the gap is covered.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Protocol

log = logging.getLogger("textback")

RETRY_SECONDS = 1.0  # a standby tries the lease this often
CHECK_SECONDS = 1.0  # the holder checks its lease this often
CHECK_TIMEOUT = 0.8  # and gives up on it when the check takes longer than this


class Lease(Protocol):
    held: bool

    async def take(self) -> bool: ...
    async def alive(self, timeout: float) -> bool: ...
    async def drop(self) -> None: ...


class AmiLease:
    """Runs `listen` while the lease is held and `stop_listening` the moment it is not."""

    def __init__(self, lease: Lease, name: str, listen: Callable[[], Awaitable[None]],
                 stop_listening: Callable[[], Awaitable[None]],
                 retry_seconds: float = RETRY_SECONDS, check_seconds: float = CHECK_SECONDS,
                 check_timeout: float = CHECK_TIMEOUT):
        self._lease = lease
        self.name = name  # the PBX, for the log: its AMI address
        self._listen, self._stop_listening = listen, stop_listening
        self._retry, self._check, self._check_timeout = retry_seconds, check_seconds, check_timeout
        self.holding = False  # listening to this PBX's AMI now
        self.standing_by = False  # the database answers and another daemon holds the PBX
        self._unreachable_said = False

    async def run(self) -> None:
        try:
            while True:
                if await self._try_take():
                    self.standing_by = False
                    log.info("holding the AMI lease of %s: listening to it", self.name)
                    self.holding = True
                    await self._listen()
                    await self._hold()
                await asyncio.sleep(self._retry)
        finally:
            if self.holding:
                await self._release()

    async def _try_take(self) -> bool:
        try:
            taken = await self._lease.take()
        except ConnectionError as exc:
            self.standing_by = False
            if not self._unreachable_said:
                log.error("cannot reach the database for the AMI lease of %s (%s); not listening "
                          "to it until the database answers", self.name, exc)
                self._unreachable_said = True
            return False
        if self._unreachable_said:
            log.info("the database answers again: trying the AMI lease of %s", self.name)
            self._unreachable_said = False
        if not taken and not self.standing_by:
            log.info("another daemon holds the AMI lease of %s: standing by", self.name)
        self.standing_by = not taken
        return taken

    async def _hold(self) -> None:
        """Check the lease until it fails, then stop listening at once and drop it."""
        while True:
            await asyncio.sleep(self._check)
            if not await self._lease.alive(self._check_timeout):
                break
        await self._release()
        log.error("lost the AMI lease of %s (no answer from the database within %.1f s): "
                  "stopped listening to it; another daemon takes it over", self.name,
                  self._check_timeout)

    async def _release(self) -> None:
        """Stop listening first, then end the lease's session."""
        self.holding = False
        try:
            await self._stop_listening()
        finally:
            await self._lease.drop()
