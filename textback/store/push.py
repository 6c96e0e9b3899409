"""Web Push: owners' devices (subscriptions), the pushes queued to them and each one's claim,
and each owner's choice of alert channels."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable

from textback.core.events import CONVERSATION_ASSIGNED, REPLY_RECEIVED
from textback.store.connection import Connection
from textback.store.states import PUSH

PUSH_EVENT_CURSOR = "push.cursor.events"  # the last event (id) the push worker has read
PUSH_ESCALATION_CURSOR = "push.cursor.escalations"  # the last escalation (its time) read


@dataclass(frozen=True)
class QueuedPush:
    """One notification for one device: `ref` names what it is about (an event id, a message
    and escalation level), so the same change is never queued twice to a device."""

    subscription_id: int
    kind: str
    ref: str
    payload: str
    happened_at: float
    deadline: float


class PushRows(Connection):
    """Owners' push subscriptions and the pushes to them, each claimed before it is sent."""

    #
    #   pending --claim--> sending --> sent | failed | expired
    #      ^                  |
    #      +---- retry_at ----+      (sending, its daemon gone --> pending: sent again)
    #   a 404/410 from the push service deletes the subscription, and its pushes with it
    #
    # A push left in `sending` by a crash is sent again: a second notification about one
    # reply costs a glance (the tag makes the phone replace the first), a lost one the lead.

    async def save_push_subscription(self, owner_id: str, endpoint: str, p256dh: str, auth: str,
                                     device: str) -> int:
        """Keep a browser's subscription for `owner_id`. The endpoint names one browser profile:
        if another owner had it (someone else signed in there before), it is this owner's now,
        so nobody is pushed the leads of whoever used a phone last."""
        async with self._transaction():
            await self._db.execute(
                "INSERT INTO push_subscriptions (owner_id, endpoint, p256dh, auth, device,"
                f" created_at) VALUES (?,?,?,?,?,?) ON CONFLICT ({self._company_key('endpoint')}) DO UPDATE SET"
                " owner_id = excluded.owner_id, p256dh = excluded.p256dh, auth = excluded.auth,"
                " device = excluded.device", (owner_id, endpoint, p256dh, auth, device, time.time()))
            row = await self._one("SELECT id FROM push_subscriptions WHERE endpoint = ?",
                                  (endpoint,))
        return row["id"]

    async def push_devices(self, owner_id: str) -> list[dict[str, Any]]:
        """An owner's subscribed devices, newest first, for the settings page."""
        rows = await self._all(
            "SELECT id, device, endpoint, created_at, last_sent_at, last_error FROM"
            " push_subscriptions WHERE owner_id = ? ORDER BY created_at DESC, id DESC", (owner_id,))
        return [dict(r) for r in rows]

    async def remove_push_device(self, owner_id: str, *, device_id: int | None = None,
                                 endpoint: str | None = None) -> bool:
        """Forget one of `owner_id`'s devices (by id from the settings page, or by endpoint from
        the browser that unsubscribes); never another owner's. True if one was removed."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "DELETE FROM push_subscriptions WHERE owner_id = ? AND (id = ? OR endpoint = ?)",
                (owner_id, device_id, endpoint))
            return cursor.rowcount > 0

    async def drop_push_subscription(self, subscription_id: int) -> None:
        """The push service said the subscription is gone (404/410): forget it and its pushes."""
        async with self._transaction() as db:
            await db.execute("DELETE FROM push_subscriptions WHERE id = ?", (subscription_id,))

    async def push_subscriptions_of(self, owner_ids: Iterable[str]) -> list[dict[str, Any]]:
        ids = list(owner_ids)
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = await self._all(f"SELECT id, owner_id FROM push_subscriptions WHERE owner_id IN"
                               f" ({marks})", tuple(ids))
        return sorted((dict(r) for r in rows), key=lambda r: r["id"])

    # -- what to push: committed changes read from a cursor ----------------------------------

    async def push_cursors(self) -> tuple[float | None, float | None]:
        """(last event id read, last escalation time read); None before the first start."""
        return await self.progress(PUSH_EVENT_CURSOR), await self.progress(PUSH_ESCALATION_CURSOR)

    async def start_push_cursors(self) -> None:
        """At the first start, begin after what is already there: no push about old news."""
        last_event = await self.settled_event_id()
        async with self._transaction() as db:
            last_escalation = (await self._one("SELECT MAX(at) AS at FROM escalations"))["at"] or 0
            for name, value in ((PUSH_EVENT_CURSOR, last_event),
                                (PUSH_ESCALATION_CURSOR, last_escalation)):
                await db.execute("INSERT INTO progress (name, value) VALUES (?, ?)"
                                 f" ON CONFLICT ({self._company_key('name')}) DO NOTHING", (name, value))

    async def push_events_after(self, event_id: float, limit: int = 200) -> list[dict[str, Any]]:
        """Replies and assignments after `event_id` up to the settled id, oldest first: the
        cursor moved past the last one read never steps over an event that commits later
        with a smaller id (see `settled_event_id`)."""
        settled = await self.settled_event_id()
        rows = await self._all(
            "SELECT e.id, e.event_id, e.type, e.body, e.created_at FROM events e"
            " WHERE e.id > ? AND e.id <= ? AND e.type IN (?, ?) ORDER BY e.id LIMIT ?",
            (event_id, settled, REPLY_RECEIVED, CONVERSATION_ASSIGNED, limit))
        return [dict(r) for r in rows]

    async def push_escalations_after(self, at: float, limit: int = 200) -> list[dict[str, Any]]:
        """Escalations noted after `at` (oldest first) with their text and conversation."""
        # The newest escalations first by their own index (a subquery with a LIMIT is planned
        # on its own), then each one's text and conversation by primary key.
        rows = await self._all(
            "SELECT s.message_id, s.level, s.owner_id, s.at, m.body, m.created_at,"
            " m.conversation_id, c.caller, c.contact_name, c.selftest, c.intake_labels FROM"
            " (SELECT message_id, level, owner_id, at FROM escalations WHERE at > ?"
            "  ORDER BY at LIMIT ?) s"
            " JOIN messages m ON m.id = s.message_id"
            " JOIN conversations c ON c.id = m.conversation_id", (at, limit))
        return sorted((dict(r) for r in rows), key=lambda r: r["at"])

    async def push_conversation(self, conversation_id: int) -> dict[str, Any] | None:
        """What a push about a conversation needs of it: caller, name, owner, whether a person
        has claimed it, whether it is a self-test's, its homeowner's last words and its intake
        labels."""
        row = await self._one(
            "SELECT id, caller, contact_name, owner_id, claimed, selftest, last_reply, intake_labels"
            " FROM conversations WHERE id = ?", (conversation_id,))
        return dict(row) if row else None

    async def queue_pushes(self, pushes: list[QueuedPush], event_cursor: float,
                           escalation_cursor: float) -> int:
        """Commit the pushes and the cursors past what they came from, in one transaction:
        a change is queued once, and a crash before the commit reads it again."""
        async with self._transaction() as db:
            created = 0
            for push in pushes:
                cursor = await db.execute(
                    "INSERT INTO push_messages (subscription_id, kind, ref, payload, happened_at,"
                    " deadline, created_at) VALUES (?,?,?,?,?,?,?)"
                    " ON CONFLICT (subscription_id, kind, ref) DO NOTHING",
                    (push.subscription_id, push.kind, push.ref, push.payload, push.happened_at,
                     push.deadline, time.time()))
                created += cursor.rowcount
            for name, value in ((PUSH_EVENT_CURSOR, event_cursor),
                                (PUSH_ESCALATION_CURSOR, escalation_cursor)):
                await db.execute("INSERT INTO progress (name, value) VALUES (?, ?) ON CONFLICT"
                                 f" ({self._company_key('name')}) DO UPDATE SET value = excluded.value",
                                 (name, value))
        return created

    # -- sending: claims, retries, the end of each push ---------------------------------------

    async def due_pushes(self, now: float, limit: int = 50) -> list[int]:
        rows = await self._all("SELECT id FROM push_messages WHERE state = 'pending'"
                               " AND retry_at <= ? ORDER BY id LIMIT ?", (now, limit))
        return [row["id"] for row in rows]

    async def next_push_retry(self) -> float | None:
        row = await self._one("SELECT MIN(retry_at) AS at FROM push_messages WHERE state = 'pending'")
        return row["at"] if row else None

    async def claim_push(self, push_id: int, now: float) -> dict[str, Any] | None:
        """pending -> sending, counting the attempt: the push and its subscription's keys, or
        None if another worker has it or it is not due."""
        async with self._transaction():
            if not await self._claim("push_messages", PUSH, "id = ? AND retry_at <= ?",
                                     (push_id, now), sets=", attempts = attempts + 1"):
                return None
            row = await self._one(
                "SELECT p.*, s.owner_id, s.endpoint, s.p256dh, s.auth FROM push_messages p"
                " JOIN push_subscriptions s ON s.id = p.subscription_id WHERE p.id = ?", (push_id,))
            return dict(row)

    async def retry_push(self, push_id: int, retry_at: float, error: str) -> None:
        async with self._transaction() as db:
            await db.execute(f"UPDATE push_messages SET state = '{PUSH.target('retry')}',"
                             f" retry_at = ?, last_error = ? WHERE id = ? AND {PUSH.guard('retry')}",
                             (retry_at, error, push_id))

    async def end_push(self, push_id: int, state: str, error: str = "") -> None:
        """End a claimed push: `sent`, or `failed` / `expired` for good (noted on its device)."""
        now = time.time()
        async with self._transaction() as db:
            await db.execute(
                "UPDATE push_messages SET state = ?, last_error = ?,"
                f" sent_at = CASE WHEN ? = 'sent' THEN ? END WHERE id = ? AND {PUSH.guard('end')}",
                (PUSH.target("end", state), error, state, now, push_id))
            await db.execute(
                "UPDATE push_subscriptions SET"
                " last_sent_at = CASE WHEN ? = 'sent' THEN ? ELSE last_sent_at END,"
                " last_error = ? WHERE id = (SELECT subscription_id FROM push_messages WHERE id = ?)",
                (state, now, error, push_id))

    async def recover_interrupted_pushes(self, mine_too: bool = False) -> int:
        """Pushes a gone daemon left in `sending`: pending again, to be sent again. Another
        live daemon's are its own to end (`mine_too`: see `recover_interrupted`)."""
        async with self._transaction() as db:
            cursor = await db.execute(
                f"UPDATE push_messages SET state = '{PUSH.target('interrupted')}', retry_at = 0,"
                " last_error = 'interrupted while sending; sent again'"
                f" WHERE {PUSH.guard('interrupted')} AND {self._orphaned(mine_too)}")
            return cursor.rowcount

    async def pushes(self) -> list[dict[str, Any]]:
        """Every push row, oldest first (what was pushed, to inspect and to test)."""
        return [dict(r) for r in await self._all("SELECT * FROM push_messages ORDER BY id")]

    # -- each owner's alert channels ------------------------------------------------------------

    async def alert_channels(self, owner_id: str) -> list[str] | None:
        """The channels the owner chose on the settings page, or None (the config's default)."""
        row = await self._one("SELECT channels FROM owner_alert_channels WHERE owner_id = ?",
                              (owner_id,))
        return None if row is None else [c for c in row["channels"].split(",") if c]

    async def alert_quiet_hours(self, owner_id: str) -> str | None:
        """The quiet hours the owner set on the settings page ('' for none), or None (the
        config's default)."""
        row = await self._one("SELECT quiet_hours FROM owner_alert_channels WHERE owner_id = ?",
                              (owner_id,))
        return None if row is None else row["quiet_hours"]

    async def set_alert_channels(self, owner_id: str, channels: list[str],
                                 quiet_hours: str | None = None) -> None:
        """The owner's choice from the settings page: channels, and quiet hours ('' for none;
        None keeps the config's)."""
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO owner_alert_channels (owner_id, channels, quiet_hours, updated_at)"
                f" VALUES (?,?,?,?) ON CONFLICT ({self._company_key('owner_id')}) DO UPDATE SET"
                " channels = excluded.channels, quiet_hours = excluded.quiet_hours,"
                " updated_at = excluded.updated_at",
                (owner_id, ",".join(channels), quiet_hours, time.time()))
