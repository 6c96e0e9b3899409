"""Inbound texts and their owner alerts, one commit."""

from __future__ import annotations

import time
from typing import Callable, Sequence

from textback.core import consent
from textback.core import events
from textback.core.intake import Intake, merge
from textback.core.inbound import KeywordAnswer
from textback.core.media import kind_of, Shown, summary
from textback.store.connection import Connection
from textback.store.media import NewMedia
from textback.store.states import MAIL
from textback.store.values import _canonical, _segments, InboundRecord, REPEAT_WITHOUT_ID_SECONDS


class InboundRows(Connection):
    """Inbound texts and their owner alerts, one commit."""

    async def record_inbound(self, caller: str, business_number: str, body: str,
                             gateway: str, gateway_id: str | None,
                             owner_for_new: str, owner_reason: str = "fixed owner",
                             display_name: str = "", keyword: str = "",
                             media: Sequence[NewMedia] = (),
                             media_link: Callable[[int, float], str | None] | None = None,
                             intake: Intake | None = None,
                             answer: KeywordAnswer | None = None) -> InboundRecord:
        """Commit a homeowner's text and the owner alert it needs, in one transaction.

        A message whose gateway id was already stored (a provider retrying a
        webhook, a carrier re-sending a SIP MESSAGE) is recognised and not
        stored or alerted twice. Without a gateway id, a text is the same
        message again when the caller's latest text on this number through
        this gateway also had none, has the same words, and came at most
        REPEAT_WITHOUT_ID_SECONDS ago (STOP, START, STOP is three texts). The display
        name the sender's address carried becomes the contact name if the
        conversation has none yet. The text's media rows are inserted in the same
        transaction (a photo-only text has an empty body and its media); `media_link` makes
        the signed link its reply.received event gives for each. A `keyword` the text carries
        (STOP, START, HELP, STOP as free text) goes into the consent ledger with it, and its
        `answer` (an opt-out or opt-in and its confirmation, or the help text) is applied in
        the same transaction; the record holds the answer's outbox id, None when the list
        already was as the keyword asks. An opt-out from a number the list already has is kept
        (the thread, the consent ledger) and ends its conversations' waiting as any opt-out
        does, but is nobody's news: it makes nothing wait, no alert row, no `reply.received`
        event (nor the push that follows one), and the record says so (`repeated_optout`). The
        `intake` facts read from the text are committed with it (IntakeRows), and the event
        carries the conversation's merged facts.
        """
        _canonical(caller)
        now = time.time()
        async with self._transaction() as db:
            if gateway_id:
                row = await self._one(
                    "SELECT m.id, m.conversation_id, a.id AS alert_id FROM messages m"
                    " LEFT JOIN alerts a ON a.message_id = m.id"
                    " WHERE m.gateway = ? AND m.gateway_id = ? AND m.direction = 'in'",
                    (gateway, gateway_id))
            else:
                row = await self._one(
                    "SELECT m.id, m.conversation_id, a.id AS alert_id, m.body, m.gateway_id,"
                    " m.created_at FROM messages m JOIN conversations c ON c.id = m.conversation_id"
                    " LEFT JOIN alerts a ON a.message_id = m.id"
                    " WHERE c.caller = ? AND c.business_number = ? AND m.direction = 'in'"
                    " AND m.gateway = ? ORDER BY m.created_at DESC, m.id DESC LIMIT 1",
                    (caller, business_number, gateway))
                if row and (row["gateway_id"] is not None or row["body"] != body
                            or row["created_at"] < now - REPEAT_WITHOUT_ID_SECONDS):
                    row = None
            if row:
                return InboundRecord(row["conversation_id"], row["id"], row["alert_id"], True)
            repeated_optout = (answer is not None and answer.opt == "out"
                               and await self._one("SELECT 1 FROM suppressions WHERE number = ?",
                                                   (caller,)) is not None)
            conversation_id = await self._conversation(caller, business_number, owner_for_new, now,
                                                       owner_reason)
            if display_name:
                cursor = await db.execute("UPDATE conversations SET contact_name = ?"
                                          " WHERE id = ? AND contact_name = ''",
                                          (display_name, conversation_id))
                if cursor.rowcount:
                    await self._index_contact(conversation_id)
            message_id = await self._insert(
                "INSERT INTO messages (conversation_id, direction, body, segments, status, gateway,"
                " gateway_id, created_at) VALUES (?, 'in', ?, ?, 'received', ?, ?, ?)",
                (conversation_id, body, _segments(body), gateway, gateway_id, now))
            await self._insert_media(db, message_id, media, now)
            if keyword:
                await self._ledger(consent.Fact(consent.KEYWORD, caller, now, business_number,
                                                "sms", keyword, body, {"message_id": message_id,
                                                                       "gateway": gateway}))
            listed = summary(body, [Shown(None if item.sha256 and not item.shown
                                          else kind_of(item.declared_type)) for item in media])
            await self._summarise_message(conversation_id, message_id, "in", "", listed, now,
                                          waits=not repeated_optout)
            if intake:
                await self._record_extraction(conversation_id, message_id, intake, body, now)
            if repeated_optout:
                answered = await self._answer_keyword(conversation_id, business_number, caller,
                                                      answer, now)
                return InboundRecord(conversation_id, message_id, None, False, answered,
                                     repeated_optout=True)
            owner = await self._one("SELECT owner_id FROM conversations WHERE id = ?",
                                    (conversation_id,))
            alert_id = await self._insert(
                "INSERT INTO alerts (conversation_id, message_id, owner_id, created_at)"
                " VALUES (?,?,?,?)", (conversation_id, message_id, owner["owner_id"], now))
            contact = await self._one("SELECT contact_name FROM conversations WHERE id = ?",
                                      (conversation_id,))
            listed_media = [
                {"id": row["id"], "content_type": row["declared_type"],
                 "size": row["declared_size"],
                 "url": media_link(row["id"], now) if media_link else None}
                for row in await self._all("SELECT id, declared_type, declared_size FROM media"
                                           " WHERE message_id = ? ORDER BY position", (message_id,))]
            merged = merge(await self._facts(conversation_id))
            await self._emit(events.reply_received(
                message_id=message_id, conversation_id=conversation_id, caller=caller,
                business_number=business_number, body=body, contact_name=contact["contact_name"],
                owner_id=owner["owner_id"], at=now, media=listed_media,
                intake=merged.as_dict()))
            answered = None
            if answer is not None:
                answered = await self._answer_keyword(conversation_id, business_number, caller,
                                                      answer, now)
            return InboundRecord(conversation_id, message_id, alert_id, False, answered)

    async def record_unroutable(self, sender_raw: str, recipient: str, body: str,
                                gateway: str, gateway_id: str | None) -> bool:
        """Keep a text that cannot be threaded; True if it is the first from that sender.

        Its sender holds no phone number, or it was sent to a number that is not
        the business's. It is never threaded, answered or suppressed: there is no
        number to do it to. A provider's retry (same gateway id) is stored once.
        """
        async with self._transaction() as db:
            seen = await self._one("SELECT 1 FROM unroutable_texts WHERE sender_raw = ? LIMIT 1",
                                   (sender_raw,))
            await db.execute(
                "INSERT INTO unroutable_texts (sender_raw, recipient, body, gateway,"
                " gateway_id, received_at) VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (sender_raw, recipient, body, gateway, gateway_id, time.time()))
            return seen is None

    async def mark_alert(self, alert_id: int, state: str, recipient: str = "",
                         subject: str = "", error: str = "") -> None:
        """End a claimed alert: `sent` (to whom, with what subject), `failed` for good, or
        `skipped` (its owner chose no alert emails; `error` says so)."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE alerts SET state = ?, recipient = ?, subject = ?, last_error = ?,"
                f" sent_at = CASE WHEN ? = 'sent' THEN ? END WHERE id = ? AND {MAIL.guard('end')}",
                (MAIL.target("end", state), recipient, subject, error, state, time.time(), alert_id))
