"""Reads for the CLI, the inbox, the reports and the health check."""

from __future__ import annotations

import time
from typing import Any

from textback.core.relay import OWNER_MOBILE
from textback.core.scorecard import build as build_scorecard
from textback.store.connection import Connection
from textback.store.values import CLI_INBOX_COLUMNS


class ReadingRows(Connection):
    """Reads for the CLI, the inbox, the reports and the health check."""

    async def conversation(self, conversation_id: int) -> dict[str, Any] | None:
        row = await self._one("SELECT * FROM conversations WHERE id = ?", (conversation_id,))
        return dict(row) if row else None

    async def conversation_history(self, conversation_id: int) -> dict[str, list[dict[str, Any]]]:
        calls = await self._all(
            "SELECT * FROM calls WHERE conversation_id = ? ORDER BY started_at", (conversation_id,))
        messages = await self._all(
            "SELECT * FROM messages WHERE conversation_id = ? ORDER BY created_at, id",
            (conversation_id,))
        return {"calls": [dict(r) for r in calls], "messages": [dict(r) for r in messages]}

    async def inbox(self, limit: int = 50, project: str = "", area: str = ""
                    ) -> list[dict[str, Any]]:
        """Open conversations: unanswered replies first (oldest waiting first), then the newest.

        The web inbox's query (`inbox_page`, view "open", with its `project` and `area`
        filters), with the columns `textback inbox` shows.
        """
        rows = await self.inbox_page("open", now=time.time(), limit=limit, project=project,
                                     area=area)
        return [{key: row[key] for key in CLI_INBOX_COLUMNS} | {"unanswered": bool(row["unanswered"])}
                for row in rows]

    async def conversation_for(self, caller: str, business_number: str | None = None
                               ) -> dict[str, Any] | None:
        """A caller's most recently active conversation (on one business number, if given)."""
        if business_number:
            row = await self._one("SELECT * FROM conversations WHERE caller = ? AND"
                                  " business_number = ?", (caller, business_number))
        else:
            row = await self._one("SELECT * FROM conversations WHERE caller = ?"
                                  " ORDER BY updated_at DESC LIMIT 1", (caller,))
        return dict(row) if row else None

    async def timeline(self, caller: str) -> list[dict[str, Any]]:
        """Everything that happened with one caller, oldest first: calls, texts, alerts, intake
        facts (status: extracted, suggested or person; detail: the field; body: its label;
        extra: who set it); a homeowner's text lists its media (type, size, state)."""
        rows = await self._all(
            "SELECT 'call' AS kind, started_at AS at, business_number, outcome AS status,"
            "  reason AS detail, '' AS body, caller_name AS extra, '' AS gateway,"
            "  NULL AS message_id FROM calls WHERE caller = ?"
            " UNION ALL"
            " SELECT CASE m.direction WHEN 'in' THEN 'text_in' ELSE 'text_out' END,"
            "  COALESCE(m.sent_at, m.created_at), c.business_number, m.status, m.error,"
            "  m.body, COALESCE(m.gateway_id, ''), m.gateway, m.id FROM messages m"
            "  JOIN conversations c ON c.id = m.conversation_id WHERE c.caller = ?"
            " UNION ALL"
            " SELECT 'alert', COALESCE(a.sent_at, a.created_at), c.business_number, a.state,"
            "  a.recipient, a.subject, a.owner_id, '', NULL FROM alerts a"
            "  JOIN conversations c ON c.id = a.conversation_id WHERE c.caller = ?"
            " UNION ALL"
            " SELECT 'intake', i.at, (SELECT business_number FROM conversations"
            "  WHERE id = i.conversation_id), i.source, i.field, i.label, i.author, '', NULL"
            "  FROM intake_facts i WHERE i.conversation_id IN"
            "  (SELECT id FROM conversations WHERE caller = ?)"
            " ORDER BY at", (caller, caller, caller, caller))
        timeline = [dict(r) for r in rows]
        media = await self.media_of(r["message_id"] for r in timeline
                                    if r["kind"] in ("text_in", "text_out"))
        for row in timeline:
            message_id = row.pop("message_id")
            if row["kind"] in ("text_in", "text_out"):  # a homeowner's photos, or an owner's
                row["media"] = [{key: item[key] for key in (
                    "id", "declared_type", "content_type", "size", "state", "shown", "note")}
                    for item in media[message_id]]
        return timeline

    async def call_decision(self, linkedid: str) -> str | None:
        """The decision stored with a call (the rules' reason, or why the store withheld its text)."""
        row = await self._one("SELECT decision FROM calls WHERE linkedid = ?", (linkedid,))
        return row["decision"] if row else None

    async def calls(self, since: float, limit: int = 200) -> list[dict[str, Any]]:
        """Calls that started after `since`, newest first, with the fate of their text."""
        rows = await self._all(
            "SELECT c.*, COALESCE(CASE WHEN m.status IN ('undelivered', 'failed') THEN m.status END,"
            " o.state) AS text_state, COALESCE(m.error, '') AS text_error,"
            " COALESCE(m.gateway, '') AS text_gateway FROM calls c"
            " LEFT JOIN outbox o ON o.message_id = c.message_id"
            " LEFT JOIN messages m ON m.id = c.message_id"
            " WHERE c.started_at >= ? ORDER BY c.started_at DESC LIMIT ?",
            (since, limit))
        return [dict(r) for r in rows]

    async def report_rows(self, start: float, end: float) -> dict[str, list[dict[str, Any]]]:
        """The raw rows of a scorecard period, for textback.core.scorecard.build (which says what
        each holds). The funnel follows the conversations with a missed call in the period
        past its end: their replies and outcomes count whenever they came. Self-tests never count."""
        calls = await self._all(
            "SELECT k.business_number, k.outcome, k.reason, k.conversation_id, k.started_at,"
            " t.status AS text_status, COALESCE(t.sent_at, t.created_at) AS text_at,"
            " t.template AS text_template FROM calls k"
            " LEFT JOIN messages t ON t.id = k.message_id AND t.direction = 'out'"
            " AND t.kind = 'auto' WHERE k.started_at >= ? AND k.started_at < ? AND k.selftest = 0"
            f" AND k.decision != '{OWNER_MOBILE}'",
            (start, end))
        messages = await self._all(
            "SELECT m.id, m.conversation_id, c.business_number, m.direction, m.kind, m.status,"
            " m.created_at, m.template, m.segments FROM messages m JOIN conversations c"
            " ON c.id = m.conversation_id WHERE m.created_at >= ? AND m.created_at < ?"
            " AND c.selftest = 0 AND c.owner_line = 0", (start, end))
        missed = ("SELECT conversation_id FROM calls WHERE started_at >= ? AND started_at < ?"
                  " AND outcome = 'missed' AND selftest = 0 AND conversation_id IS NOT NULL")
        outcomes = await self._all(
            "SELECT o.conversation_id, o.stage, o.value, o.at FROM outcomes o"
            f" WHERE o.conversation_id IN ({missed}) AND o.at >= ?", (start, end, start))
        replies = await self._all(
            "SELECT m.conversation_id, m.created_at FROM messages m"
            f" WHERE m.conversation_id IN ({missed}) AND m.direction = 'in' AND m.created_at >= ?",
            (start, end, start))
        opt_outs = await self._all(
            "SELECT c.business_number FROM suppressions s JOIN conversations c"
            " ON c.caller = s.number WHERE s.since >= ? AND s.since < ? AND c.selftest = 0"
            " AND c.owner_line = 0",
            (start, end))
        return {name: [dict(r) for r in rows] for name, rows in (
            ("calls", calls), ("messages", messages), ("outcomes", outcomes),
            ("opt_outs", opt_outs), ("replies", replies))}

    async def scorecard(self, start: float, end: float,
                        month: str | None = None) -> list[dict[str, Any]]:
        """A period's scorecard, one dict per business number: what `textback report`, its CSV,
        the web page, the API and the monthly email all show. A whole month that retention
        pruned gives the scorecard kept before it went."""
        kept = await self.monthly_scorecard(month) if month else None
        if kept is not None:
            return kept
        return [card.as_dict() for card in build_scorecard(**await self.report_rows(start, end))]

    async def outbox_backlog(self, now: float) -> tuple[int, float | None]:
        """Texts waiting to be sent, and when the oldest of those already due was first due."""
        row = await self._one(
            "SELECT COUNT(*) AS pending, MIN(CASE WHEN due_at <= ? THEN first_due_at END) AS oldest"
            " FROM outbox WHERE state IN ('pending', 'sending')", (now,))
        return row["pending"], row["oldest"]

    async def ping(self) -> None:
        """A read that proves the database answers."""
        await self._one("SELECT 1")
