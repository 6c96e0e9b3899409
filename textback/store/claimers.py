"""The daemons that claim rows, so that recovery takes only what a gone daemon left in flight.

Every claim (a text, an owner's email, a webhook or CRM delivery, a self-test run, a media
fetch, a Web Push message) records its daemon in the row's `claimed_by`: the id of a row of
`daemons`, one per start of `textback run`. Recovery (`recover_interrupted` and its
siblings) takes a row in flight only when its claimer is gone:

- On PostgreSQL, a fleet: a claimer is alive while its session-level advisory lock
  (`CLAIMER_LOCK_CLASS`, its id) is held, on a connection of its own. PostgreSQL frees it
  however the daemon ends (killed, its host gone, its session cut), so a daemon starting, or a
  survivor's periodic sweep, takes the dead daemon's rows and never a live one's. A daemon
  that loses its lock (its database link cut) registers again under a new id.
- On SQLite, one daemon at a time (the run lock): every claimer but the running one is gone,
  which is what a start always recovered.
"""

from __future__ import annotations

import time

from textback.store.connection import Connection


class ClaimerRows(Connection):
    """This store's claimer: registered once a daemon runs, recorded by its claims."""

    async def register_claimer(self, host: str, pid: int) -> int:
        """Register the daemon that claims through this store (its host and process, for the
        admin): its claims from now on carry the id returned, and on PostgreSQL its advisory
        lock says it is alive. Called again after the lock was lost, it takes a new id."""
        async with self._transaction():
            claimer = await self._insert(
                "INSERT INTO daemons (host, pid, started_at) VALUES (?,?,?)",
                (host, pid, time.time()))
        await self._hold_presence(claimer)
        self._claimer = claimer
        return claimer

    async def _hold_presence(self, claimer: int) -> None:
        """Show `claimer` alive to the other daemons: nothing on SQLite (one daemon)."""

    async def claimer_present(self) -> bool:
        """Whether this store's claimer still shows alive (on SQLite, always)."""
        return True
