"""Owners' side of a conversation: reply tokens, assignment, outcomes, escalations, contacts."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

from textback.core import events
from textback.core.media import summary
from textback.store.connection import Connection
from textback.core.media import shown_items
from textback.store.values import Notice
from textback.core.waiting import reported_since
from textback.store.web import NEXT_VERSION, STOP_WAITING


class OwnerRows(Connection):
    """Owners' side of a conversation: reply tokens, assignment, outcomes, escalations, contacts."""

    async def reply_token(self, conversation_id: int, owner_id: str, ttl: float,
                          quoted: tuple[str, ...] = ()) -> str:
        """A new unguessable token for reply+TOKEN@domain, bound to one conversation and owner,
        and to what the email carrying it showed (`quoted`, stripped from a reply to it)."""
        token = base64.b32encode(secrets.token_bytes(15)).decode("ascii").lower()
        now = time.time()
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO reply_tokens (token, conversation_id, owner_id, created_at, expires_at,"
                " quoted) VALUES (?,?,?,?,?,?)",
                (token, conversation_id, owner_id, now, now + ttl, json.dumps(list(quoted))))
        return token

    async def token(self, token: str, now: float) -> dict[str, Any] | None:
        """The live binding of a token, or None when unknown or expired; `quoted` is a tuple."""
        row = await self._one(
            "SELECT t.conversation_id, t.owner_id, c.caller, c.business_number, t.quoted"
            " FROM reply_tokens t JOIN conversations c ON c.id = t.conversation_id"
            " WHERE t.token = ? AND t.expires_at > ?", (token, now))
        return {**dict(row), "quoted": tuple(json.loads(row["quoted"]))} if row else None

    async def assign(self, conversation_id: int, owner_id: str, reason: str,
                     expected_state: int | None = None) -> None:
        """A person gives the conversation to an owner (the inbox's Unassigned no longer lists it).

        With `expected_state`, raises StaleState (nothing changed) unless the conversation's
        state_version is still that one."""
        now = time.time()
        async with self._transaction() as db:
            await self._expect_state(conversation_id, expected_state)
            before = await self._one("SELECT * FROM conversations WHERE id = ?", (conversation_id,))
            await db.execute("UPDATE conversations SET owner_id = ?, claimed = 1,"
                             f" version = {NEXT_VERSION} WHERE id = ?", (owner_id, conversation_id))
            await db.execute(
                "INSERT INTO assignments (conversation_id, owner_id, at, reason) VALUES (?,?,?,?)",
                (conversation_id, owner_id, now, reason))
            await self._emit(events.conversation_assigned(
                conversation_id=conversation_id, caller=before["caller"],
                business_number=before["business_number"], owner_id=owner_id,
                previous_owner_id=before["owner_id"], reason=reason, at=now))

    async def record_outcome(self, conversation_id: int, stage: str, value: float | None,
                             source: str, external_ref: str | None = None,
                             expected_state: int | None = None) -> None:
        """Add an outcome; `external_ref` (the CRM's deal id, say) is kept on the conversation.
        `expected_state`: as for assign."""
        now = time.time()
        async with self._transaction() as db:
            await self._expect_state(conversation_id, expected_state)
            await db.execute(
                "INSERT INTO outcomes (conversation_id, stage, value, at, source) VALUES (?,?,?,?,?)",
                (conversation_id, stage, value, now, source))
            if external_ref is not None:
                await db.execute("UPDATE conversations SET external_ref = ? WHERE id = ?",
                                 (external_ref, conversation_id))
            if stage in ("won", "lost", "spam"):
                await db.execute("UPDATE conversations SET status = 'closed', unread = 0,"
                                 f" {STOP_WAITING}, version = {NEXT_VERSION} WHERE id = ?",
                                 (conversation_id,))
            else:
                await self._changed(conversation_id)
            conversation = await self._one("SELECT * FROM conversations WHERE id = ?",
                                           (conversation_id,))
            await self._emit(events.outcome_changed(
                conversation_id=conversation_id, caller=conversation["caller"],
                business_number=conversation["business_number"], stage=stage, value=value,
                source=source, external_ref=conversation["external_ref"], at=now))

    async def waiting_replies(self, now: float, older_than: float | None = None,
                              escalated_fewer_than: int | None = None) -> list[dict[str, Any]]:
        """The texts the digest and escalation report (textback/core/waiting.py): each waiting
        conversation's latest homeowner text, sent since `reported_since(now)` and before
        `older_than` (default `now`), its conversation not snoozed at `now`; with how many
        times that text was escalated (only those escalated fewer than
        `escalated_fewer_than` times, when given) and when last.

        One range of `conversations_waiting` (open, unanswered, by the latest text's time),
        as long as the reported window whatever the history (CROSS JOIN: the planner must
        start there, not with a range of all messages), then each row's text by its id.
        """
        escalated = "(SELECT COUNT(*) FROM escalations e WHERE e.message_id = m.id)"
        below = ("" if escalated_fewer_than is None else
                 f" AND {escalated} < {int(escalated_fewer_than)}")
        rows = await self._all(
            "SELECT c.id AS conversation_id, c.caller, c.business_number, c.owner_id,"
            f" m.id AS message_id, m.created_at, m.body, {escalated} AS escalated,"
            " (SELECT MAX(e.at) FROM escalations e WHERE e.message_id = m.id) AS escalated_at"
            f" FROM conversations c {self._JOIN_IN_ORDER} messages m ON m.id = c.last_reply_id"
            " WHERE c.status = 'open' AND c.unanswered = 1 AND c.last_reply_at >= ?"
            " AND c.last_reply_at < ? AND c.selftest = 0 AND c.owner_line = 0"
            f" AND (c.snoozed_until IS NULL OR c.snoozed_until <= ?){below}",
            (reported_since(now), now if older_than is None else older_than, now))
        media = await self.media_of(r["message_id"] for r in rows)
        # `listed`: the text as a list shows it, "2 photos" or "(empty text)" when it has no words
        return [dict(r) | {"listed": summary(r["body"], shown_items(media[r["message_id"]]))}
                for r in rows]

    async def record_escalation(self, message_id: int, level: int, owner_id: str,
                                notice: Notice) -> int | None:
        """Note that a text was escalated and queue its notice, in one transaction.

        Returns the notice id, or None (nothing queued) if this level was already done: the
        escalation's row is its claim, so no two workers escalate one text twice.
        """
        async with self._transaction() as db:
            cursor = await db.execute(
                "INSERT INTO escalations (message_id, level, owner_id, at) VALUES (?,?,?,?)"
                " ON CONFLICT DO NOTHING",
                (message_id, level, owner_id, time.time()))
            if cursor.rowcount != 1:
                return None
            return await self._insert_notice(notice)

    async def set_contact(self, conversation_id: int, name: str | None, kind: str | None,
                          source: str, expected_state: int | None = None) -> None:
        """Name or class the caller of a conversation (a CRM knows them better than caller ID).

        The class goes where the inbox's contact panel keeps it, so the rules apply it from
        the caller's next call whoever set it; the name goes on each of the caller's
        conversations and into their search rows.
        """
        async with self._transaction() as db:
            await self._expect_state(conversation_id, expected_state)
            caller = (await self._one("SELECT caller FROM conversations WHERE id = ?",
                                      (conversation_id,)))["caller"]
            if kind is not None:
                await self._keep_contact_class(caller, kind, source)
            if name is not None:
                ids = [row["id"] for row in await self._all(
                    "SELECT id FROM conversations WHERE caller = ?", (caller,))]
                await db.execute(f"UPDATE conversations SET contact_name = ?, version = {NEXT_VERSION}"
                                 " WHERE caller = ?", (name, caller))
                for each in ids:
                    await self._index_contact(each)
