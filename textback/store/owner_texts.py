"""An owner's own mobile: alert texts to it, its answers, and which conversation each names.

Each owner's texts with textback on one business number are one conversation
marked `owner_line`: the outbox sends them like any text (claims, retries,
deadlines, the suppression list, quiet-hours holds), yet it is never listed in
the inbox, escalated, digested or counted on the scorecard. Each alert text
keeps the homeowner's conversation it showed (`owner_alert_texts`), so an
answer goes to the last one alerted, or to the one its code names.
"""

from __future__ import annotations

import time
from typing import Any

from textback.core.relay import OWNER_ALERT, OWNER_ANSWER, OWNER_NOTICE
from textback.store.connection import Connection
from textback.store.values import _canonical, _segments


class OwnerTextRows(Connection):
    """An owner's own mobile: alert texts to it, its answers, and which conversation each names."""

    async def _owner_line(self, owner_id: str, mobile: str, business_number: str,
                          now: float) -> int:
        """Inside a write transaction: the conversation of `owner_id`'s mobile on this number.

        A conversation the number already had (the owner called or texted before the mobile was
        configured) becomes the owner's line: from now on it is no lead.
        """
        row = await self._one("SELECT id, owner_line FROM conversations WHERE caller = ?"
                              " AND business_number = ?", (_canonical(mobile), business_number))
        if row is not None:
            if not row["owner_line"]:
                await self._db.execute("UPDATE conversations SET owner_line = 1, owner_id = ?"
                                       " WHERE id = ?", (owner_id, row["id"]))
            return row["id"]
        return await self._insert(
            "INSERT INTO conversations (caller, business_number, owner_id, created_at, updated_at,"
            " owner_line) VALUES (?,?,?,?,?,1)", (mobile, business_number, owner_id, now, now))

    async def queue_owner_alert(self, owner_id: str, mobile: str, sender: str,
                                conversation_id: int, body: str) -> int:
        """Queue the text that alerts an owner's mobile to a reply in `conversation_id`, due now,
        from the business number `sender`; returns its outbox id. The alert is then the owner's
        last one: an answer without a code goes to that conversation."""
        now = time.time()
        async with self._transaction() as db:
            line = await self._owner_line(owner_id, mobile, sender, now)
            message_id, outbox_id = await self._queue(line, sender, mobile, body, now, now,
                                                      kind=OWNER_ALERT, channel="owner_alert")
            await db.execute("INSERT INTO owner_alert_texts (message_id, owner_id, conversation_id,"
                             " created_at) VALUES (?,?,?,?)",
                             (message_id, owner_id, conversation_id, now))
            return outbox_id

    async def queue_owner_notice(self, owner_id: str, mobile: str, sender: str, body: str,
                                 kind: str = OWNER_NOTICE, template: str = "") -> int:
        """Queue a short text to an owner's mobile (why an answer did not go, the help reply,
        alerts off or on), due now; `template` names which, for `owner_help_since`."""
        now = time.time()
        async with self._transaction():
            line = await self._owner_line(owner_id, mobile, sender, now)
            _, outbox_id = await self._queue(line, sender, mobile, body, now, now, kind=kind,
                                             template=template, channel="owner_alert")
            return outbox_id

    async def record_owner_text(self, owner_id: str, mobile: str, business_number: str,
                                body: str, gateway: str, gateway_id: str | None) -> int | None:
        """Commit a text from an owner's mobile on their line before it is acted on; its id, or
        None when the gateway delivered this one (same gateway id) before."""
        now = time.time()
        async with self._transaction():
            if gateway_id and await self._one(
                    "SELECT 1 FROM messages WHERE gateway = ? AND gateway_id = ?"
                    " AND direction = 'in'", (gateway, gateway_id)):
                return None
            line = await self._owner_line(owner_id, mobile, business_number, now)
            return await self._insert(
                "INSERT INTO messages (conversation_id, direction, kind, body, segments, status,"
                " gateway, gateway_id, created_at) VALUES (?, 'in', ?, ?, ?, 'received',"
                " ?, ?, ?)", (line, OWNER_ANSWER, body, _segments(body), gateway, gateway_id, now))

    async def alerted_conversation(self, owner_id: str, code: int | None) -> dict[str, Any] | None:
        """The homeowner's conversation an owner's answer goes to: the one its code names (if
        it was alerted to this owner, or is theirs), else the last one alerted to them."""
        columns = "c.id, c.caller, c.business_number, c.owner_id"
        if code is None:
            row = await self._one(
                f"SELECT {columns} FROM owner_alert_texts a JOIN conversations c"
                " ON c.id = a.conversation_id WHERE a.owner_id = ?"
                " ORDER BY a.created_at DESC, a.message_id DESC LIMIT 1", (owner_id,))
        else:
            row = await self._one(
                f"SELECT {columns} FROM conversations c WHERE c.id = ? AND c.selftest = 0"
                " AND c.owner_line = 0 AND (c.owner_id = ? OR EXISTS (SELECT 1 FROM"
                " owner_alert_texts a WHERE a.conversation_id = c.id AND a.owner_id = ?))",
                (code, owner_id, owner_id))
        return dict(row) if row else None

    async def note_owner_answer(self, outbox_id: int, owner_id: str) -> None:
        """The text of `outbox_id` is an answer `owner_id` sent from their mobile."""
        async with self._transaction() as db:
            await db.execute("INSERT INTO owner_answers (message_id, owner_id)"
                             " SELECT message_id, ? FROM outbox WHERE id = ?", (owner_id, outbox_id))

    async def owner_answer_by(self, message_id: int) -> str | None:
        """The owner whose mobile sent this answer, or None for one written another way."""
        row = await self._one("SELECT owner_id FROM owner_answers WHERE message_id = ?",
                              (message_id,))
        return row["owner_id"] if row else None

    async def owner_notice_since(self, mobile: str, template: str, since: float) -> bool:
        """Whether a notice of `template` went to (or waits for) this owner's mobile since `since`."""
        return await self._one(
            f"SELECT 1 FROM conversations c {self._JOIN_IN_ORDER} messages m"
            " ON m.conversation_id = c.id"
            " WHERE c.caller = ? AND c.owner_line = 1 AND m.created_at >= ? AND m.kind = ?"
            " AND m.template = ? LIMIT 1", (mobile, since, OWNER_NOTICE, template)) is not None
