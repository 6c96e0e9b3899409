"""Calls and conversations: a finished call recorded with its automatic text, one commit."""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

from textback.core import consent
from textback.core import events
from textback.store.connection import Connection
from textback.store.states import OUTBOX
from textback.store.values import (_canonical, _QUEUED_BY, _segments, CallRow, PlannedText,
                                   SELFTEST_KIND)


class CallRows(Connection):
    """Calls and conversations: a finished call recorded with its automatic text, one commit."""

    async def record_call(self, call: CallRow, text: PlannedText | None = None,
                          owner_id: str | None = None,
                          dedupe_since: float | None = None,
                          owner_reason: str = "fixed owner") -> int | None:
        """Store a finished call and, when given, queue its text. Returns the outbox id.

        A call already stored (same linkedid, e.g. replayed after a reconnect)
        is ignored, so a call can never queue two texts. Nothing is queued, and
        the call joins the caller's thread with the reason as its decision,
        when since `dedupe_since` the caller's conversation had an automatic
        text (`deduplicated`), or was open with any text in either direction
        (`open_conversation`: the owner and the homeowner are already talking).
        The checks and the insert share one transaction, so two calls ending
        at once cannot both queue.
        """
        now = time.time()
        async with self._transaction():
            if await self._one("SELECT 1 FROM calls WHERE linkedid = ?", (call.linkedid,)):
                return None
            conversation_id, was_open = None, False
            if call.caller and (text or owner_id):
                was_open = bool(await self._one(
                    "SELECT 1 FROM conversations WHERE caller = ? AND business_number = ?"
                    " AND status = 'open'", (call.caller, call.business_number)))
                conversation_id = await self._conversation(
                    call.caller, call.business_number, text.owner_id if text else owner_id, now,
                    owner_reason)
            if text is not None and dedupe_since is not None:
                withheld = await self._dedupe_reason(conversation_id, was_open, dedupe_since)
                if withheld:
                    text = None
                    call = dataclasses.replace(call, decision=withheld)
            message_id = outbox_id = None
            if text is not None:
                message_id, outbox_id = await self._queue(
                    conversation_id, call.business_number, call.caller, text.body, text.due_at, now,
                    template=text.template)
            await self._insert_call(call, conversation_id, message_id)
            await self._ledger_call(call, now)
            if conversation_id is not None:
                await self._summarise_call(conversation_id, call.outcome, call.caller_name)
            owner = conversation_id and await self._one(
                "SELECT owner_id FROM conversations WHERE id = ?", (conversation_id,))
            await self._emit(events.call_finished(
                linkedid=call.linkedid, conversation_id=conversation_id,
                business_number=call.business_number, caller=call.caller,
                caller_name=call.caller_name, started_at=call.started_at,
                answered_at=call.answered_at, ended_at=call.ended_at, outcome=call.outcome,
                reason=call.reason, decision=call.decision, recovered=call.recovered,
                owner_id=owner["owner_id"] if owner else None,
                text_queued=message_id is not None, at=now))
            return outbox_id

    async def _ledger_call(self, call: CallRow, now: float) -> None:
        """The call in the caller's consent record; a text withheld because they opted out too."""
        if not call.caller:
            return  # no number: nothing was or could be texted
        await self._ledger(consent.Fact(
            consent.CALL, call.caller, call.ended_at, call.business_number,
            "cdr" if call.recovered else "ami", detail={
                "linkedid": call.linkedid, "caller_raw": call.caller_raw,
                "started_at": call.started_at, "outcome": call.outcome, "reason": call.reason,
                "decision": call.decision}))
        if call.decision == "opted_out":
            await self._ledger(consent.Fact(
                consent.TEXT_REFUSED, call.caller, now, call.business_number, "", "auto",
                detail={"linkedid": call.linkedid, "why": "the number opted out"}))

    async def _insert_call(self, call: CallRow, conversation_id: int | None,
                           message_id: int | None) -> None:
        await self._db.execute(
            "INSERT INTO calls (linkedid, business_number, caller_raw, caller, caller_name,"
            " started_at, answered_at, ended_at, outcome, reason, decision, route, recovered,"
            " selftest, conversation_id, message_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (call.linkedid, call.business_number, call.caller_raw, call.caller,
             call.caller_name, call.started_at, call.answered_at, call.ended_at,
             call.outcome, call.reason, call.decision, call.route, int(call.recovered),
             int(call.selftest), conversation_id, message_id))

    async def record_selftest_call(self, call: CallRow, recipient: str | None,
                                   text: PlannedText | None) -> int | None:
        """Store a self-test's call and queue its text to `recipient`, in one transaction.

        Its conversation (with the recipient) is marked as a self-test and has
        no owner: no assignment, no round-robin turn, no scorecard. Returns
        the outbox id, or None when nothing was queued.
        """
        now = time.time()
        call = dataclasses.replace(call, selftest=True)
        async with self._transaction():
            conversation_id = message_id = outbox_id = None
            if text is not None and recipient is not None:
                row = await self._one("SELECT id FROM conversations WHERE caller = ? AND"
                                      " business_number = ?", (recipient, call.business_number))
                if row is None:
                    conversation_id = await self._insert(
                        "INSERT INTO conversations (caller, business_number, owner_id, created_at,"
                        " updated_at, selftest) VALUES (?,?,'',?,?,1)",
                        (_canonical(recipient), call.business_number, now, now))
                else:
                    conversation_id = row["id"]
                message_id, outbox_id = await self._queue(
                    conversation_id, call.business_number, recipient, text.body, text.due_at, now,
                    kind=SELFTEST_KIND, template=text.template)
            await self._insert_call(call, conversation_id, message_id)
            return outbox_id

    async def replies_since(self, conversation_id: int, since: float) -> list[dict[str, Any]]:
        """The texts that came in on a conversation after `since`, with their alert's state."""
        rows = await self._all(
            "SELECT m.id, m.body, m.created_at, a.state AS alert_state, a.recipient AS alerted"
            " FROM messages m LEFT JOIN alerts a ON a.message_id = m.id WHERE m.conversation_id = ?"
            " AND m.direction = 'in' AND m.created_at >= ? ORDER BY m.created_at", (conversation_id, since))
        return [dict(r) for r in rows]

    async def outcomes_of(self, conversation_id: int) -> list[dict[str, Any]]:
        rows = await self._all("SELECT stage, value, at, source FROM outcomes WHERE"
                               " conversation_id = ? ORDER BY at", (conversation_id,))
        return [dict(r) for r in rows]

    async def outbox_row(self, outbox_id: int) -> dict[str, Any]:
        row = await self._one("SELECT * FROM outbox WHERE id = ?", (outbox_id,))
        return dict(row)

    async def cancel_text(self, outbox_id: int, why: str) -> bool:
        """End a text still waiting (pending) as failed, e.g. a self-test's after its run."""
        async with self._transaction() as db:
            cursor = await db.execute(
                f"UPDATE outbox SET state = '{OUTBOX.target('cancel')}', last_error = ?,"
                f" updated_at = ? WHERE id = ? AND {OUTBOX.guard('cancel')} RETURNING message_id",
                (why, time.time(), outbox_id))
            row = await cursor.fetchone()
            if row is not None:
                await db.execute("UPDATE messages SET status = 'failed', error = ? WHERE id = ?",
                                 (why, row[0]))
            return row is not None

    async def _dedupe_reason(self, conversation_id: int, was_open: bool, since: float) -> str | None:
        """Why a new automatic text to this conversation would be one too many, or None."""
        if await self._one("SELECT 1 FROM messages WHERE conversation_id = ? AND direction = 'out'"
                           " AND kind = 'auto' AND created_at >= ?", (conversation_id, since)):
            return "deduplicated"
        if was_open and await self._one("SELECT 1 FROM messages WHERE conversation_id = ?"
                                        " AND created_at >= ?", (conversation_id, since)):
            return "open_conversation"
        return None

    async def _conversation(self, caller: str, business_number: str, owner_id: str,
                            now: float, owner_reason: str) -> int:
        """The caller's conversation on this number; a new one belongs to `owner_id`."""
        row = await self._one(
            "SELECT id FROM conversations WHERE caller = ? AND business_number = ?",
            (caller, business_number))
        if row:
            await self._db.execute(
                "UPDATE conversations SET updated_at = ?, status = 'open', snoozed_until = NULL"
                " WHERE id = ?", (now, row["id"]))
            return row["id"]
        conversation_id = await self._insert(
            "INSERT INTO conversations (caller, business_number, owner_id, created_at, updated_at)"
            " VALUES (?,?,?,?,?)", (caller, business_number, owner_id, now, now))
        await self._db.execute(
            "INSERT INTO conversation_turns (business_number, started) VALUES (?, 1)"
            f" ON CONFLICT ({self._company_key('business_number')}) DO UPDATE SET"
            " started = conversation_turns.started + 1", (business_number,))
        await self._db.execute(
            "INSERT INTO assignments (conversation_id, owner_id, at, reason) VALUES (?,?,?,?)",
            (conversation_id, owner_id, now, owner_reason))
        await self._index_contact(conversation_id)
        return conversation_id

    async def _queue(self, conversation_id: int, sender: str, recipient: str, body: str,
                     due_at: float, now: float, kind: str = "auto",
                     template: str = "", author: str = "", channel: str = "") -> tuple[int, int]:
        """A queued outbound message and its outbox row, and its fact in the consent ledger
        (`channel`: the path that wrote it); returns (message id, outbox id)."""
        _canonical(recipient)
        message_id = await self._insert(
            "INSERT INTO messages (conversation_id, direction, kind, template, body, segments,"
            " status, created_at, author) VALUES (?, 'out', ?, ?, ?, ?, 'queued', ?, ?)",
            (conversation_id, kind, template, body, _segments(body), now, author))
        await self._summarise_message(conversation_id, message_id, "out", kind, body, now)
        outbox_id = await self._insert(
            "INSERT INTO outbox (message_id, sender, recipient, due_at, first_due_at, idempotency_key,"
            " updated_at) VALUES (?,?,?,?,?,?,?)",
            (message_id, sender, recipient, due_at, due_at, uuid.uuid4().hex, now))
        await self._ledger(consent.Fact(
            consent.TEXT_QUEUED, recipient, now, sender, channel or _QUEUED_BY.get(kind, ""), kind,
            body, {"message_id": message_id, "outbox_id": outbox_id, "template": template,
                   "author": author, "due_at": due_at}))
        return message_id, outbox_id
