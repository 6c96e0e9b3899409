"""The outbox: due texts claimed, sent, retried, held, expired.

The outbox is a state machine in the database, its transitions one table
(textback/store/states.py, `OUTBOX`) that the SQL here takes its states from:

    pending --claim--> sending --> sent | failed | unknown | blocked
     |  ^                 |
     |  +-- retry, hold --+          (sending, its daemon gone --> unknown)
     +--past its deadline--> expired   (unknown, its send ended late --> sent | failed)

Each transition of one row is one UPDATE guarded by its source states
(`Connection._transition`); a refused one is logged and leaves the row as it is.

A row is claimed with a conditional UPDATE before the gateway is called, so
two workers, or a worker after a restart, can never send it twice. A row
left in `sending` by a crash may or may not have reached the gateway; it
becomes `unknown` and is reported, never re-sent blindly. The claim records
its daemon (`claimed_by`): only a gone daemon's rows are taken so, never those
another live daemon of a fleet is sending. A row still
pending at its deadline (`first_due_at` plus text.max_age_minutes; five
minutes for an opt-out confirmation) becomes `expired`, with the same kind of
conditional UPDATE, and its owner is emailed instead.

The reads and the claim of due texts take the `Senders` a daemon may send from (every number,
unless the asterisk gateway sends through PBXs a fleet's daemons hold apart): a daemon claims
only texts it can send, and the others' wait for the daemon that can.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from textback.core import consent
from textback.core import events
from textback.core.fleet import EVERY_SENDER, Senders
from textback.core.relay import OWNER_KINDS
from textback.store.connection import Connection
from textback.store.states import OUTBOX
from textback.store.values import _text_event, OutboxItem
from textback.store.web import NEXT_VERSION


class OutboxRows(Connection):
    """The outbox: due texts claimed, sent, retried, held, expired."""

    async def _emit_text(self, kind: str, item: OutboxItem, status: str, error: str,
                         at: float | None = None) -> None:
        """A text's event, unless the text went to an owner's own mobile: those are textback
        talking to the business, not to a lead, and no webhook or CRM hears of them."""
        if item.kind not in OWNER_KINDS:
            await self._emit(_text_event(kind, item, status, error, at))

    async def recover_interrupted(self, mine_too: bool = False,
                                  senders: Senders = EVERY_SENDER) -> list[int]:
        """Rows a gone daemon left in `sending` (a crash, a kill, a host lost): mark them
        `unknown` rather than risk a second text. A live daemon's are its own to end, so a
        daemon starting beside it never takes a text it is sending; `mine_too` takes this
        daemon's own as well (sends it stopped: it lost the AMI lease the gateway sends by),
        of the texts from `senders` (those of the PBX whose lease went). Returns the ids this
        call marked: one guarded UPDATE, so with several daemons sweeping at once each row is
        marked, and its owner told (`OutboxWorker.report_interrupted`), by one of them only.

        Each row marked owes its owner a notice (`notice_owed`, cleared by `notice_given` once
        the notice is queued), taken by this daemon (`claimed_by`). The ids returned also hold
        the rows still owed whose daemon died before it told their owners (never this live
        daemon's own: it is telling them): a crash between the mark and the notice delays the
        notice, and may repeat it, but never loses it."""
        if senders.none:
            return []
        sent_from, sent_from_args = self._sent_from(senders)
        async with self._transaction() as db:
            cursor = await db.execute(
                f"UPDATE outbox SET state = '{OUTBOX.target('interrupted')}', updated_at = ?,"
                " last_error = 'interrupted while sending; not re-sent', notice_owed = 1,"
                f" claimed_by = ? WHERE {OUTBOX.guard('interrupted')}"
                f" AND {self._orphaned(mine_too)}{sent_from} RETURNING id, message_id",
                (time.time(), self._claimer, *sent_from_args))
            rows = sorted((row[0], row[1]) for row in await cursor.fetchall())
            await db.executemany("UPDATE messages SET status = 'unknown' WHERE id = ?",
                                 [(row[1],) for row in rows])
            owed = await db.execute(
                f"UPDATE outbox SET claimed_by = ? WHERE notice_owed = 1"
                f" AND state = '{OUTBOX.target('interrupted')}' AND {self._orphaned()}{sent_from}"
                " RETURNING id", (self._claimer, *sent_from_args))
            still_owed = [row[0] for row in await owed.fetchall()]
        return sorted({row[0] for row in rows} | set(still_owed))

    async def notice_given(self, outbox_id: int) -> None:
        """The owner of a text recovery marked `unknown` has been told (its notice queued)."""
        async with self._transaction() as db:
            await db.execute("UPDATE outbox SET notice_owed = 0 WHERE id = ? AND notice_owed = 1",
                             (outbox_id,))

    @staticmethod
    def _sent_from(senders: Senders, column: str = "sender") -> tuple[str, tuple[str, ...]]:
        """` AND <column> IN (...)` (or NOT IN) for the texts from `senders`, and its args;
        nothing for every sender. Not for `senders.none`, which reads no row at all."""
        if senders.only is not None:
            return f" AND {column} IN ({','.join('?' * len(senders.only))})", senders.only
        if senders.never:
            return f" AND {column} NOT IN ({','.join('?' * len(senders.never))})", senders.never
        return "", ()

    async def next_due(self, senders: Senders = EVERY_SENDER) -> float | None:
        """When the next pending text from `senders` is due."""
        if senders.none:
            return None
        sent_from, args = self._sent_from(senders)
        row = await self._one("SELECT MIN(due_at) AS due FROM outbox WHERE state = 'pending'"
                              f"{sent_from}", args)
        return row["due"] if row else None

    async def due(self, now: float, limit: int = 20,
                  senders: Senders = EVERY_SENDER) -> list[OutboxItem]:
        """Pending texts from `senders` due by `now`, oldest first (by when they were first due)."""
        if senders.none:
            return []
        sent_from, args = self._sent_from(senders, "o.sender")
        return await self._pending(f"o.due_at <= ?{sent_from} ORDER BY o.first_due_at, o.id"
                                   " LIMIT ?", (now, *args, limit))

    async def first_due_before(self, cutoff: float) -> list[OutboxItem]:
        """Pending texts first due before `cutoff`: the ones that may be past their deadline."""
        return await self._pending("o.first_due_at < ? ORDER BY o.first_due_at, o.id", (cutoff,))

    async def _pending(self, where: str, args: tuple) -> list[OutboxItem]:
        return await self._items(f"o.state = 'pending' AND {where}", args)

    async def outbox_items(self, ids: list[int]) -> list[OutboxItem]:
        """The texts of outbox rows `ids`, whatever their state, by id: those recovery just
        marked `unknown`, for the notice to their owners."""
        if not ids:
            return []
        return await self._items(f"o.id IN ({','.join('?' * len(ids))}) ORDER BY o.id", tuple(ids))

    async def _items(self, where: str, args: tuple) -> list[OutboxItem]:
        rows = await self._all(
            "SELECT o.id, o.message_id, m.conversation_id, o.sender, o.recipient, m.body,"
            " o.due_at, o.attempts, m.kind, o.idempotency_key, o.first_due_at, o.last_error"
            " FROM outbox o JOIN messages m ON m.id = o.message_id"
            f" WHERE {where}", args)
        return [OutboxItem(**dict(row)) for row in rows]

    async def bring_forward(self, now: float) -> int:
        """Make every text waiting out a retry delay due now (the link is back); returns how many."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE outbox SET due_at = ?, updated_at = ?"
                " WHERE state = 'pending' AND attempts > 0 AND due_at > ?", (now, time.time(), now))
            return cursor.rowcount

    async def expire(self, item: OutboxItem, gateway: str) -> bool:
        """pending -> expired; False if the row was claimed (or ended) meanwhile."""
        async with self._transaction() as db:
            if not await self._transition("outbox", OUTBOX, "expire", item.id,
                                          sets=", updated_at = ?", args=(time.time(),),
                                          level=logging.INFO):
                return False
            await db.execute("UPDATE messages SET status = 'expired', gateway = ?, error = ?"
                             " WHERE id = ?", (gateway, item.last_error, item.message_id))
            await self._release_held(item.conversation_id)
            await self._emit_text(events.TEXT_FAILED, item, "expired", item.last_error)
            return True

    async def text_facts(self, message_id: int) -> dict[str, Any]:
        """Who a queued text was for, whose conversation it is, and the missed call it answered."""
        row = await self._one(
            "SELECT c.caller, c.business_number, c.owner_id, m.gateway, k.started_at AS call_at,"
            " k.ended_at AS call_ended_at,"
            " COALESCE(k.reason, '') AS call_reason, COALESCE(("
            "   SELECT caller_name FROM calls WHERE conversation_id = c.id AND caller_name != ''"
            "   ORDER BY started_at DESC LIMIT 1), '') AS caller_name"
            " FROM messages m JOIN conversations c ON c.id = m.conversation_id"
            " LEFT JOIN calls k ON k.message_id = m.id WHERE m.id = ?", (message_id,))
        return dict(row)

    async def claim_all(self, items: list[OutboxItem],
                        senders: Senders = EVERY_SENDER) -> list[OutboxItem]:
        """pending -> sending for `items` that go from `senders` (those this daemon can send
        now: read again at the claim, since a lease may have gone since the texts were read),
        in one transaction; returns the ones this call took (not those another worker, or an
        earlier run, already took)."""
        taken = (await self._claim_ids([item.id for item in items], senders)
                 if items and not senders.none else set())
        return [item for item in items if item.id in taken]

    async def _claim_ids(self, ids: list[int], senders: Senders) -> set[int]:
        marks = ",".join("?" * len(ids))
        sent_from, sent_from_args = self._sent_from(senders)
        async with self._transaction():
            return set(await self._claim("outbox", OUTBOX, f"id IN ({marks}){sent_from}",
                                         (*ids, *sent_from_args),
                                         sets=", attempts = attempts + 1, updated_at = ?",
                                         set_args=(time.time(),)))

    async def mark_all_sent(self, sent: list[tuple[OutboxItem, str | None]], gateway: str) -> None:
        """Texts the gateway accepted, with its id for each, in one transaction; each row
        moves by `accepted` (from `sending`, or `unknown` for a send that outlived its claim:
        it went), and only the rows it moved are recorded sent."""
        now = time.time()
        async with self._transaction() as db:
            # A row recovery marked `unknown` that went after all owes its owner nothing.
            sent = [(item, gateway_id) for item, gateway_id in sent
                    if await self._transition("outbox", OUTBOX, "accepted", item.id,
                                              sets=", updated_at = ?, notice_owed = 0",
                                              args=(now,))]
            await db.executemany(
                "UPDATE messages SET status = 'sent', gateway = ?, gateway_id = ?, sent_at = ?,"
                " error = '' WHERE id = ?", [(gateway, gateway_id, now, item.message_id)
                                  for item, gateway_id in sent])
            for conversation_id in sorted({item.conversation_id for item, _ in sent}):
                await self._release_held(conversation_id)
            for item, gateway_id in sent:
                await self._emit_text(events.TEXT_SENT, item, "sent", "", now)
                await self._ledger(consent.Fact(
                    consent.TEXT_SENT, item.recipient, now, item.sender, gateway, item.kind,
                    item.body, {"message_id": item.message_id, "gateway_id": gateway_id}))

    async def hold(self, item: OutboxItem, until: float, why: str) -> bool:
        """A claimed text the homeowner's quiet hours hold: pending again, due (and first due,
        so its deadline counts from then) at `until`; the message shows `held` and why. False if
        the row is no longer `sending` (marked `unknown` meanwhile: never pending again)."""
        now = time.time()
        async with self._transaction() as db:
            if not await self._transition(
                    "outbox", OUTBOX, "hold", item.id,
                    sets=", due_at = ?, first_due_at = ?, held_until = ?,"
                         " attempts = attempts - 1, updated_at = ?",
                    args=(until, until, until, now)):
                return False
            await db.execute("UPDATE messages SET status = 'held', error = ? WHERE id = ?",
                             (why, item.message_id))
            await db.execute(f"UPDATE conversations SET held_until = ?, version = {NEXT_VERSION}"
                             " WHERE id = ?", (until, item.conversation_id))
            await self._ledger(consent.Fact(
                consent.TEXT_HELD, item.recipient, now, item.sender, "", item.kind, item.body,
                {"message_id": item.message_id, "until": until, "why": why}))
            return True

    async def _release_held(self, conversation_id: int) -> None:
        """Inside a write transaction, after a text of the conversation left `held` (sent,
        failed, blocked, expired): the inbox row stops saying a text is held once none is."""
        await self._db.execute(
            f"UPDATE conversations SET held_until = NULL, version = {NEXT_VERSION}"
            " WHERE id = ? AND held_until IS NOT NULL AND NOT EXISTS (SELECT 1 FROM messages"
            "   WHERE conversation_id = ? AND status = 'held')", (conversation_id, conversation_id))

    async def mark_retry(self, item: OutboxItem, due_at: float, error: str) -> bool:
        """A claimed text the gateway did not take, pending again, due at `due_at`. False if the
        row is no longer `sending` (marked `unknown` meanwhile: never pending again)."""
        async with self._transaction():
            return await self._transition("outbox", OUTBOX, "retry", item.id,
                                          sets=", due_at = ?, last_error = ?, updated_at = ?",
                                          args=(due_at, error, time.time()))

    async def mark_final(self, item: OutboxItem, state: str, gateway: str, error: str) -> bool:
        """End a row that must not be retried: `failed`, `blocked` (opted out), or `unknown` (may
        have been sent); from `sending`, or `unknown` (a send that outlived its claim). False,
        with nothing recorded, if the row had already ended otherwise."""
        now = time.time()
        async with self._transaction() as db:
            # A row recovery marked `unknown`: the send that ends it tells the owner itself.
            if not await self._transition("outbox", OUTBOX, "end", item.id, state,
                                          sets=", last_error = ?, updated_at = ?, notice_owed = 0",
                                          args=(error, now)):
                return False
            await db.execute(
                "UPDATE messages SET status = ?, gateway = ?, error = ? WHERE id = ?",
                (state, gateway, error, item.message_id))
            await self._release_held(item.conversation_id)
            await self._emit_text(events.TEXT_FAILED, item, state, error, now)
            if state == "blocked":  # refused at the moment of sending: the number opted out
                await self._ledger(consent.Fact(
                    consent.TEXT_REFUSED, item.recipient, now, item.sender, gateway, item.kind,
                    item.body, {"message_id": item.message_id, "why": error}))
            return True

    async def update_delivery(self, gateway: str, gateway_id: str, status: str,
                              error_code: str | None) -> int | None:
        """Apply a delivery report; only ever moves forward (queued < sent < final).

        Returns the message's id, or None for an unknown message or a report older than
        what is stored.
        """
        rank = {"queued": 1, "sent": 2, "delivered": 3, "undelivered": 3, "failed": 3}
        async with self._transaction() as db:
            row = await self._one(
                "SELECT m.id, m.status, m.conversation_id, m.body, m.kind, o.sender, o.recipient"
                " FROM messages m JOIN outbox o ON o.message_id = m.id"
                " WHERE m.gateway = ? AND m.gateway_id = ? AND m.direction = 'out'",
                (gateway, gateway_id))
            if row is None or rank.get(status, 0) <= rank.get(row["status"], 0):
                return None
            error = f"provider error {error_code}" if error_code else None
            await db.execute(
                "UPDATE messages SET status = ?, error = COALESCE(?, error) WHERE id = ?",
                (status, error, row["id"]))
            kind = {"delivered": events.TEXT_DELIVERED, "undelivered": events.TEXT_FAILED,
                    "failed": events.TEXT_FAILED}.get(status)
            if kind is not None and row["kind"] not in OWNER_KINDS:
                await self._emit(events.text_event(
                    kind, message_id=row["id"], conversation_id=row["conversation_id"],
                    sender=row["sender"], recipient=row["recipient"], body=row["body"],
                    text_kind=row["kind"], status=status, error=error or "", at=time.time()))
            return row["id"]

    async def sent_text(self, message_id: int) -> OutboxItem | None:
        """A text the gateway took, as its outbox row, with the error its delivery report gave."""
        row = await self._one(
            "SELECT o.id, o.message_id, m.conversation_id, o.sender, o.recipient, m.body,"
            " o.due_at, o.attempts, m.kind, o.idempotency_key, o.first_due_at,"
            " m.error AS last_error FROM outbox o JOIN messages m ON m.id = o.message_id"
            " WHERE o.message_id = ?", (message_id,))
        return OutboxItem(**dict(row)) if row else None
