"""Events fanned out to webhook endpoints and CRM adapters, each delivery claimed."""

from __future__ import annotations

import time
from typing import Any

from textback.core.events import Event
from textback.store.connection import Connection
from textback.store.states import DELIVERY


class DeliveryRows(Connection):
    """Events fanned out to webhook endpoints and CRM adapters, each delivery claimed."""

    #
    #   events --fan_out (per endpoint, from its cursor)--> event_deliveries
    #   pending --claim--> sending --> delivered
    #      ^                  |
    #      +---- retry_at ----+          (sending at start-up --> pending: sent again)
    #   pending past max_age --> expired (the admin is emailed)
    #
    # Deliveries are at least once: a row left in `sending` by a crash is sent again under the
    # same event id, which the receiver dedupes on. Of one endpoint's deliveries sharing an
    # order key (a conversation, a number), only the oldest unfinished one is ever due.

    async def fan_out(self, endpoints: dict[str, tuple[str, ...]], since: float) -> int:
        """Create the deliveries of events new to each endpoint (of the types it takes); an
        endpoint seen for the first time gets the events since `since`. Returns how many.

        Each endpoint's cursor is an event id, and it never passes `settled_event_id`: on
        PostgreSQL two transactions may take ids 7 and 8 and commit 8 first, so a cursor moved
        to the largest id seen would step over 7 for good. Up to the settled id every event
        that will ever commit has committed, so what the cursor passes it has read."""
        now, created = time.time(), 0
        if not await self._behind(endpoints):
            return 0  # the common case, read without taking the write lock
        last = await self.settled_event_id()
        async with self._transaction() as db:
            for name, types in endpoints.items():
                cursor_name = f"webhooks.cursor.{name}"
                cursor = await self.progress(cursor_name)
                if cursor is None or cursor < last:
                    marks = ",".join("?" * len(types))
                    inserted = await db.execute(
                        "INSERT INTO event_deliveries (event, endpoint, order_key,"
                        " updated_at) SELECT id, ?, order_key, ? FROM events"
                        f" WHERE id > ? AND id <= ? AND type IN ({marks}) AND created_at >= ?"
                        " ORDER BY id ON CONFLICT DO NOTHING",
                        (name, now, cursor or 0, last, *types, since if cursor is None else 0))
                    created += inserted.rowcount
                    await db.execute(
                        f"INSERT INTO progress (name, value) VALUES (?, ?) ON CONFLICT ({self._company_key('name')})"
                        " DO UPDATE SET value = excluded.value", (cursor_name, last))
        return created

    async def _behind(self, endpoints: dict[str, tuple[str, ...]]) -> bool:
        """Has any endpoint's cursor an event after it (or none yet)?"""
        last = (await self._one("SELECT MAX(id) AS id FROM events"))["id"] or 0
        for name in endpoints:
            cursor = await self.progress(f"webhooks.cursor.{name}")
            if cursor is None or cursor < last:
                return True
        return False

    async def recover_interrupted_deliveries(self, mine_too: bool = False) -> int:
        """Deliveries a gone daemon left in `sending`: pending again, to be sent again (same
        id). Another live daemon's are its own to end (`mine_too`: see `recover_interrupted`)."""
        async with self._transaction() as db:
            cursor = await db.execute(
                f"UPDATE event_deliveries SET state = '{DELIVERY.target('interrupted')}',"
                " retry_at = 0, updated_at = ?, last_error = 'interrupted while sending; sent again'"
                f" WHERE {DELIVERY.guard('interrupted')} AND {self._orphaned(mine_too)}",
                (time.time(),))
            return cursor.rowcount

    async def due_deliveries(self, endpoint: str, now: float, limit: int) -> list[dict[str, Any]]:
        """An endpoint's deliveries due now, oldest event first, each the head of its order key."""
        rows = await self._all(
            "SELECT d.id, d.attempts, e.event_id, e.type, e.body, e.created_at"
            " FROM event_deliveries d JOIN events e ON e.id = d.event"
            " WHERE d.endpoint = ? AND d.state = 'pending' AND d.retry_at <= ?"
            " AND NOT EXISTS (SELECT 1 FROM event_deliveries p WHERE p.endpoint = d.endpoint"
            "   AND p.order_key = d.order_key AND p.state IN ('pending', 'sending')"
            "   AND p.event < d.event)"
            " ORDER BY d.event LIMIT ?", (endpoint, now, limit))
        return [dict(r) for r in rows]

    async def next_delivery_retry(self) -> float | None:
        row = await self._one("SELECT MIN(retry_at) AS at FROM event_deliveries"
                              " WHERE state = 'pending'")
        return row["at"] if row else None

    async def claim_delivery(self, delivery_id: int) -> bool:
        """pending -> sending, counting the try; False if it is not pending any more."""
        async with self._transaction():
            return bool(await self._claim("event_deliveries", DELIVERY, "id = ?", (delivery_id,),
                                          sets=", attempts = attempts + 1, updated_at = ?",
                                          set_args=(time.time(),)))

    async def end_delivery(self, delivery_id: int, status: int | None, error: str,
                           retry_at: float | None) -> None:
        """A claimed delivery's try ended: delivered (`retry_at` None) or pending again."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE event_deliveries SET state = ?, retry_at = COALESCE(?, retry_at),"
                f" last_status = ?, last_error = ?, updated_at = ? WHERE id = ?"
                f" AND {DELIVERY.guard('end')}",
                (DELIVERY.target("end", "delivered" if retry_at is None else "pending"), retry_at,
                 status, error,
                 time.time(), delivery_id))

    async def expire_deliveries(self, created_before: float) -> list[dict[str, Any]]:
        """Pending deliveries of events older than `created_before` become `expired`; those rows."""
        async with self._transaction() as db:
            cursor = await db.execute(
                f"UPDATE event_deliveries SET state = '{DELIVERY.target('expire')}', updated_at = ?"
                f" WHERE {DELIVERY.guard('expire')} AND event IN (SELECT id FROM events WHERE created_at < ?)"
                " RETURNING id", (time.time(), created_before))
            ids = [row[0] for row in await cursor.fetchall()]
        return await self.delivery_log(ids=ids) if ids else []

    async def record_test_delivery(self, event: Event, endpoint: str, status: int | None,
                                   error: str, delivered: bool) -> None:
        """Keep a test event's one try in the delivery log (it is never queued or retried)."""
        async with self._transaction() as db:
            await self._event_id_taken()
            event_row = await self._insert(
                "INSERT INTO events (event_id, type, order_key, body, created_at) VALUES (?,?,?,?,?)",
                (event.id, event.type, event.order_key, event.body, event.at))
            await db.execute(
                "INSERT INTO event_deliveries (event, endpoint, order_key, state, attempts,"
                " last_status, last_error, updated_at) VALUES (?,?,?,?,1,?,?,?)",
                (event_row, endpoint, event.order_key,
                 "delivered" if delivered else "failed", status, error, time.time()))

    async def delivery_log(self, limit: int = 50, endpoint: str | None = None,
                           ids: list[int] | None = None) -> list[dict[str, Any]]:
        """Deliveries, newest event first: endpoint, event, state, tries, last status and error."""
        where, args = ["1 = 1"], []  # a boolean on both backends (PostgreSQL refuses `1`)
        if endpoint is not None:
            where.append("d.endpoint = ?")
            args.append(endpoint)
        if ids is not None:
            where.append(f"d.id IN ({','.join('?' * len(ids))})")
            args += ids
        rows = await self._all(
            "SELECT d.id, d.endpoint, e.event_id, e.type, e.created_at, d.state, d.attempts,"
            " d.last_status, d.last_error, d.updated_at FROM event_deliveries d"
            f" JOIN events e ON e.id = d.event WHERE {' AND '.join(where)}"
            " ORDER BY d.event DESC, d.id DESC LIMIT ?", (*args, limit if ids is None else len(ids)))
        return [dict(r) for r in rows]

    async def prune_events(self, before: float) -> int:
        """Forget events older than `before` whose deliveries have all ended (or that had none)."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "DELETE FROM events WHERE created_at < ? AND NOT EXISTS (SELECT 1 FROM"
                " event_deliveries d WHERE d.event = events.id AND d.state IN ('pending', 'sending'))",
                (before,))
            return cursor.rowcount
