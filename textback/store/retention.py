"""Retention: months summed up into scorecards, then deleted in short batches."""

from __future__ import annotations

import json
from typing import Any

from textback.store.connection import Connection
from textback.store.values import _PRUNABLE_MESSAGE
from textback.store.web import NEXT_VERSION, STOP_WAITING


class RetentionRows(Connection):
    """Retention: months summed up into scorecards, then deleted in short batches."""

    #
    # Calls, messages and alerts older than retention.months go (textback/pruning.py); each
    # month's scorecard is kept first. Conversations, outcomes and opt-outs stay.

    async def oldest_activity(self) -> float | None:
        """When the oldest call or message that is still kept happened."""
        row = await self._one("SELECT MIN(at) AS at FROM (SELECT MIN(started_at) AS at FROM calls"
                              " UNION ALL SELECT MIN(created_at) FROM messages) AS oldest")
        return row["at"]

    async def monthly_scorecard(self, month: str) -> list[dict[str, Any]] | None:
        """The scorecard kept for a pruned month (YYYY-MM), or None when none was kept."""
        rows = await self._all("SELECT card FROM monthly_scorecards WHERE month = ?"
                               " ORDER BY business_number", (month,))
        return [json.loads(row["card"]) for row in rows] if rows else None

    async def keep_monthly_scorecard(self, month: str, cards: list[dict[str, Any]]) -> None:
        """Keep a month's scorecard; one kept earlier stays (its month may be partly pruned)."""
        async with self._transaction() as db:
            await db.executemany(
                "INSERT INTO monthly_scorecards (month, business_number, card)"
                " VALUES (?,?,?) ON CONFLICT DO NOTHING", [(month, card["business_number"], json.dumps(card))
                                    for card in cards])

    async def prunable(self, cutoff: float, expired_before: float = 0.0) -> dict[str, int]:
        """How many calls, messages, alerts and media items (and their bytes) `prune_batch` would
        delete before `cutoff`, and how many reply tokens expired before `expired_before`."""
        calls = await self._one("SELECT COUNT(*) AS n FROM calls WHERE started_at < ?", (cutoff,))
        messages = await self._one(
            f"SELECT COUNT(*) AS n, SUM((SELECT COUNT(*) FROM alerts a WHERE a.message_id = m.id))"
            f" AS alerts FROM messages m WHERE {_PRUNABLE_MESSAGE}", (cutoff,))
        quotes = await self._one("SELECT COUNT(*) AS n FROM reply_tokens"
                                 " WHERE quoted <> '[]' AND created_at < ?", (cutoff,))
        media = await self._one(
            f"SELECT COUNT(*) AS n, COALESCE(SUM(d.size), 0) AS bytes FROM media d"
            f" JOIN messages m ON m.id = d.message_id WHERE {_PRUNABLE_MESSAGE}", (cutoff,))
        expired = await self._one("SELECT COUNT(*) AS n FROM reply_tokens WHERE expires_at < ?",
                                  (expired_before,))
        return {"calls": calls["n"], "messages": messages["n"], "alerts": messages["alerts"] or 0,
                "media": media["n"], "media_bytes": media["bytes"], "quotes": quotes["n"],
                "reply_tokens": expired["n"]}

    async def prune_batch(self, cutoff: float, limit: int,
                          expired_before: float = 0.0) -> dict[str, int]:
        """Delete up to `limit` calls and `limit` messages (with their alerts, outbox rows,
        escalations and media rows) from before `cutoff`, forget what up to `limit` reply
        tokens' alerts quoted, and delete up to `limit` reply tokens that expired before
        `expired_before` (an expired one takes no reply: it is refused as an unknown one is),
        in one short transaction (a conversation whose waiting text goes waits no more); the
        media files their rows named are removed afterwards
        (pruning.remove_unreferenced_files). A text or an email still being sent is never
        pruned."""
        async with self._transaction() as db:
            ids = [row["id"] for row in await self._all(
                f"SELECT id FROM messages m WHERE {_PRUNABLE_MESSAGE} ORDER BY created_at LIMIT ?"
                f"{self._skip_locked('m')}",
                (cutoff, limit))]
            marks = ",".join("?" * len(ids))
            alerts = media = media_bytes = 0
            if ids:
                alerts = (await db.execute(f"DELETE FROM alerts WHERE message_id IN ({marks})",
                                           ids)).rowcount
                row = await self._one(f"SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes"
                                      f" FROM media WHERE message_id IN ({marks})", tuple(ids))
                media, media_bytes = row["n"], row["bytes"]
                await db.execute(f"DELETE FROM media WHERE message_id IN ({marks})", ids)
                # A conversation whose latest homeowner text goes waits no more for its answer.
                await db.execute(
                    f"UPDATE conversations SET last_reply_id = NULL, {STOP_WAITING},"
                    f" version = {NEXT_VERSION} WHERE id IN (SELECT conversation_id FROM messages"
                    f" WHERE id IN ({marks})) AND last_reply_id IN ({marks})", ids + ids)
                for table in ("outbox", "escalations", "owner_alert_texts", "owner_answers"):
                    await db.execute(f"DELETE FROM {table} WHERE message_id IN ({marks})", ids)
                # A message's row in the search index has its id (the conversation's own is -id).
                await db.execute(f"DELETE FROM conversation_search WHERE rowid IN ({marks})", ids)
                await db.execute(f"DELETE FROM messages WHERE id IN ({marks})", ids)
            calls = (await db.execute(
                "DELETE FROM calls WHERE id IN (SELECT id FROM calls WHERE started_at < ?"
                f" ORDER BY started_at LIMIT ?{self._skip_locked('calls')})",
                (cutoff, limit))).rowcount
            quotes = (await db.execute(
                "UPDATE reply_tokens SET quoted = '[]' WHERE token IN (SELECT token FROM"
                " reply_tokens WHERE quoted <> '[]' AND created_at < ? LIMIT ?"
                f"{self._skip_locked('reply_tokens')})",
                (cutoff, limit))).rowcount
            expired = (await db.execute(
                "DELETE FROM reply_tokens WHERE token IN (SELECT token FROM reply_tokens"
                f" WHERE expires_at < ? LIMIT ?{self._skip_locked('reply_tokens')})",
                (expired_before, limit))).rowcount
        return {"calls": calls, "messages": len(ids), "alerts": alerts, "media": media,
                "media_bytes": media_bytes, "quotes": quotes, "reply_tokens": expired}
