"""Emails to people (owner alerts and notices), each a row claimed before it is mailed."""

from __future__ import annotations

import time
from typing import Any

from textback.store.connection import Connection
from textback.store.states import MAIL
from textback.store.values import _mail_table, MAIL_TABLES, Notice


class MailRows(Connection):
    """Emails to people (owner alerts and notices), each a row claimed before it is mailed."""

    #
    #   pending --claim--> sending --> sent | failed
    #      ^                  |
    #      +---- retry_at ----+          (sending, its daemon gone --> pending: mailed again)
    #
    # A row left in `sending` by a crash is mailed again rather than marked unknown as a
    # text would be: a second copy of an email to the business's own people costs a glance,
    # a missing one can cost the lead, and a relay that never answered 250 has not taken it.

    async def queue_notice(self, name: str, address: str, subject: str, body: str,
                           unless_since: float | None = None) -> int | None:
        """Commit a notice to mail; the caller then tries it (claim_mail) or the worker does.

        With `unless_since`, nothing is queued (None) if the same address already had a notice
        with the same subject queued since then: checked and inserted in one transaction, so
        it holds across workers and restarts.
        """
        async with self._transaction():
            if unless_since is not None:
                # One check at a time: two daemons' checks would both pass at once.
                await self._in_turn(f"notice:{address}:{subject}")
                if await self._one(
                        "SELECT 1 FROM notices WHERE address = ? AND subject = ?"
                        " AND created_at >= ?", (address, subject, unless_since)):
                    return None
            return await self._insert_notice(Notice(name, address, subject, body))

    async def _insert_notice(self, notice: Notice) -> int:
        return await self._insert(
            "INSERT INTO notices (name, address, subject, body, created_at) VALUES (?,?,?,?,?)",
            (notice.name, notice.address, notice.subject, notice.body, time.time()))

    async def due_mail(self, table: str, now: float, limit: int = 20) -> list[int]:
        """Ids of the rows of `table` waiting to be mailed whose retry time has come."""
        rows = await self._all(f"SELECT id FROM {_mail_table(table)} WHERE state = 'pending'"
                               " AND retry_at <= ? ORDER BY id LIMIT ?", (now, limit))
        return [row["id"] for row in rows]

    async def next_mail_retry(self, table: str) -> float | None:
        row = await self._one(f"SELECT MIN(retry_at) AS at FROM {_mail_table(table)}"
                              " WHERE state = 'pending'")
        return row["at"] if row else None

    async def claim_mail(self, table: str, row_id: int, now: float) -> dict[str, Any] | None:
        """pending -> sending, counting the attempt; the row, or None if another worker has it
        (or it is not due). Only the claimant mails it, so no email goes out twice."""
        table = _mail_table(table)
        async with self._transaction():
            if not await self._claim(table, MAIL, "id = ? AND retry_at <= ?", (row_id, now),
                                     sets=", attempts = attempts + 1"):
                return None
            return dict(await self._one(f"SELECT * FROM {table} WHERE id = ?", (row_id,)))

    async def retry_mail(self, table: str, row_id: int, retry_at: float, error: str) -> None:
        """A claimed row that could not be mailed: pending again from `retry_at`."""
        async with self._transaction() as db:
            await db.execute(
                f"UPDATE {_mail_table(table)} SET state = '{MAIL.target('retry')}', retry_at = ?,"
                f" last_error = ? WHERE id = ? AND {MAIL.guard('retry')}", (retry_at, error, row_id))

    async def mark_notice(self, notice_id: int, state: str, error: str = "") -> None:
        """End a claimed notice: `sent`, or `failed` for good."""
        async with self._transaction() as db:
            await db.execute(
                "UPDATE notices SET state = ?, last_error = ?,"
                f" sent_at = CASE WHEN ? = 'sent' THEN ? END WHERE id = ? AND {MAIL.guard('end')}",
                (MAIL.target("end", state), error, state, time.time(), notice_id))

    async def recover_interrupted_mail(self, mine_too: bool = False) -> dict[str, list[int]]:
        """Rows a gone daemon left in `sending`, per table: pending again, to be mailed again.
        Another live daemon's are its own to end (`mine_too`: see `recover_interrupted`)."""
        recovered = {}
        async with self._transaction() as db:
            for table in MAIL_TABLES:
                # The rows in flight by their state's index first, then those of gone claimers
                # among them by id: SQLite's planner would scan the table for the one UPDATE.
                sending = [row["id"] for row in await self._all(
                    f"SELECT id FROM {table} WHERE {MAIL.guard('interrupted')}")]
                recovered[table] = []
                if not sending:
                    continue
                cursor = await db.execute(
                    f"UPDATE {table} SET state = '{MAIL.target('interrupted')}', retry_at = 0,"
                    " last_error = 'interrupted while mailing; mailed again'"
                    f" WHERE id IN ({','.join('?' * len(sending))})"
                    f" AND {MAIL.guard('interrupted')} AND {self._orphaned(mine_too)} RETURNING id",
                    tuple(sending))
                recovered[table] = sorted(row[0] for row in await cursor.fetchall())
        return recovered

    async def notices(self) -> list[dict[str, Any]]:
        return [dict(r) for r in await self._all("SELECT * FROM notices ORDER BY id")]
