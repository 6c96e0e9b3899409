"""What a gone daemon of a fleet left in flight, recovered by the daemons that remain.

Every claim records its daemon (textback/store/claimers.py), and recovery takes only rows
whose daemon is gone. A daemon that starts recovers what the gone ones left; in a fleet on
PostgreSQL a daemon may die while the others run on, so each survivor also sweeps every
`every` seconds. The sweep follows each claim's table in textback/store/states.py as a start
does: a text left `sending` becomes `unknown` (never sent again; its owner is told, once, by
the daemon whose sweep marked it, or later by a sweep if that daemon died before it told
them), an email, a webhook or CRM delivery, a media fetch or a push is tried again, a self-test
run ends as failed.

The sweep also keeps this daemon's own claimer alive: when its advisory lock was lost (its
database link cut), the others may already have taken its rows, so it registers again under a
new id and its later claims are its own again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from textback.store.port import StorePort
from textback.workers.selftest import abandoned_steps

log = logging.getLogger("textback")

SWEEP_SECONDS = 10.0  # a gone daemon's rows are taken over at most this long after it is gone
GONE = "by a daemon that is gone"  # how a sweep found the rows it recovers, in the log


class ClaimRecovery:
    """Sweeps the rows gone daemons left in flight, and keeps this daemon's claimer alive."""

    def __init__(self, store: StorePort, host: str, pid: int, *,
                 report_unknown: Callable[[list[int], str], Awaitable[None]],
                 every: float = SWEEP_SECONDS):
        self.store = store
        # Tells the owners of the texts a sweep marked `unknown` (OutboxWorker.report_interrupted).
        self._report_unknown = report_unknown
        self.host, self.pid = host, pid
        self.every = every

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            if not await self.store.claimer_present():
                claimer = await self.store.register_claimer(self.host, self.pid)
                log.error("this daemon's claimer lock was lost (its database session ended); "
                          "claiming as daemon %d from now on: what it had in flight is "
                          "recovered like a gone daemon's", claimer)
            await self.sweep()

    async def sweep(self) -> None:
        """Recover every row a gone daemon left in flight, and say so."""
        await self._report_unknown(await self.store.recover_interrupted(), GONE)
        await mail_again(self.store, GONE)
        for count, what in ((await self.store.recover_interrupted_deliveries(),
                             "webhook deliveries were under way by a daemon that is gone; "
                             "sending them again under the same event ids"),
                            (await self.store.recover_interrupted_media(),
                             "media fetches were under way by a daemon that is gone; fetching "
                             "them again"),
                            (await self.store.recover_interrupted_pushes(),
                             "pushes were being sent by a daemon that is gone; sending them "
                             "again")):
            if count:
                log.warning("%d %s", count, what)
        abandoned = await self.store.abandon_selftests(
            abandoned_steps("the daemon running this self-test is gone"))
        if abandoned:
            log.warning("self-test run(s) %s were running on a daemon that is gone; recorded as "
                        "failed", abandoned)


async def mail_again(store: StorePort, how: str) -> None:
    """Put the emails left `sending` (`how`: "when textback stopped", "by a daemon that is
    gone") back to be mailed, and say which: a duplicate email is cheap, a lost one is not."""
    for table, ids in (await store.recover_interrupted_mail()).items():
        if ids:
            log.warning("%s %s were being mailed %s; mailing them again (one may arrive twice, "
                        "none is lost)", table, ids, how)
