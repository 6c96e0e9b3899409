"""A fleet's claimers and event ids on PostgreSQL (see textback/store/claimers.py):

- a daemon is alive while its session holds the advisory lock (CLAIMER_LOCK_CLASS, its id) on
  a connection of its own (`AdvisoryLease`), and recovery asks `pg_locks` which are held;
- an event's id is taken under a shared advisory lock held to its transaction's end, and
  `settled_event_id` takes the same lock exclusively for one read: at that moment no
  transaction holding an unsettled event id is running, so every id up to the largest one
  committed is settled for good (later ids are larger, the sequence only grows).

Why this design for the event cursors: a cursor that never passes the settled id never skips
an event, and keeps the cursors, the fan-out and its progress rows as they are. The cost is a
shared lock per event insert, and a reader's short wait for the event transactions under way
(each a few milliseconds); the alternatives were a fan-out inside each event's transaction
(which would need every destination's configuration in every writer, the CLI too) or a
transaction-id column read against `pg_snapshot_xmin` (a new column and cursor meaning, and a
fan-out held back by any long transaction anywhere on the server).
"""

from __future__ import annotations

from textback.core.fleet import CLAIMER_LOCK_CLASS, EVENT_IDS_LOCK
from textback.store.postgres.fleet import AdvisoryLease

PRESENCE_CHECK_SECONDS = 0.8  # how long `claimer_present` waits for its session to answer


class PgClaimers:
    """Claimers shown alive by an advisory lock; event ids settled by another (first in
    PostgresStore's bases: these take the place of SQLite's)."""

    _presence: AdvisoryLease | None = None
    _url: str
    _password: str | None

    def _live_claimers(self, mine_too: bool = False) -> str:
        mine = f" AND objid::bigint != {int(self._claimer or 0)}" if mine_too else ""
        return ("SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted"
                f" AND objsubid = 2 AND classid::bigint = {CLAIMER_LOCK_CLASS}{mine}"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")

    async def _hold_presence(self, claimer: int) -> None:
        presence = AdvisoryLease(self._url, self._password, (CLAIMER_LOCK_CLASS, claimer))
        if not await presence.take():  # a fresh id: nobody else can hold it
            raise RuntimeError(f"the advisory lock of daemon {claimer} is already held")
        previous, self._presence = self._presence, presence
        if previous is not None:
            await previous.drop()

    async def claimer_present(self) -> bool:
        return self._presence is not None and await self._presence.alive(PRESENCE_CHECK_SECONDS)

    async def _event_id_taken(self) -> None:
        await self._db.execute("SELECT pg_advisory_xact_lock_shared(?)", (EVENT_IDS_LOCK,))

    async def settled_event_id(self) -> int:
        async with self._transaction() as db:
            await db.execute("SELECT pg_advisory_xact_lock(?)", (EVENT_IDS_LOCK,))
            row = await (await db.execute("SELECT MAX(id) FROM events")).fetchone()
        return row[0] or 0

    async def close(self) -> None:
        presence, self._presence = self._presence, None
        if presence is not None:
            await presence.drop()
        await super().close()
