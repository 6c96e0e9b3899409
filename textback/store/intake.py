"""Intake facts of a conversation: each extraction and each correction, with the text that
caused it; the merged facts (a person's value wins) kept on the conversation for the inbox.

`intake_facts` is append-only in use: a correction is a new row, so the thread can show what
was read from which text and who changed it. The conversation's `intake_project`,
`intake_area` and `intake_labels` are the merge of its rows, rewritten in the transaction of
each new row, so the inbox filters and labels without reading the history.
"""

from __future__ import annotations

import time
from typing import Any

from textback.core.intake import Fact, Intake, PROJECT, SERVICE_AREA, merge
from textback.core.scorecard import by_intake
from textback.store.connection import Connection
from textback.store.web import NEXT_VERSION


class IntakeRows(Connection):
    """Intake extractions and corrections, and the merged facts on the conversation."""

    async def _record_extraction(self, conversation_id: int, message_id: int | None,
                                 intake: Intake, cause: str, now: float,
                                 author: str = "textback") -> None:
        """Inside a write transaction: one row per extracted fact, then the merge."""
        for fact in intake:
            await self._insert_fact(conversation_id, message_id, fact, author, cause, now)
        if intake:
            await self._remerge(conversation_id)

    async def _insert_fact(self, conversation_id: int, message_id: int | None, fact: Fact,
                           author: str, cause: str, now: float) -> None:
        await self._db.execute(
            "INSERT INTO intake_facts (conversation_id, message_id, field, value, label,"
            " evidence, why, source, author, cause, at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (conversation_id, message_id, fact.name, fact.value, fact.label, fact.evidence,
             fact.why, fact.source, author, cause, now))

    async def _remerge(self, conversation_id: int) -> Intake:
        merged = merge(await self._facts(conversation_id))
        project, area = merged.get(PROJECT), merged.get(SERVICE_AREA)
        await self._db.execute(
            "UPDATE conversations SET intake_project = ?, intake_area = ?, intake_labels = ?,"
            f" version = {NEXT_VERSION} WHERE id = ?",
            (project.value if project else None, area.value if area else None,
             merged.labels(), conversation_id))
        return merged

    async def _facts(self, conversation_id: int) -> list[Fact]:
        rows = await self._all("SELECT field, value, label, evidence, why, source FROM intake_facts"
                               " WHERE conversation_id = ? ORDER BY id", (conversation_id,))
        return [Fact(r["field"], r["value"], r["label"], r["evidence"], r["why"], r["source"])
                for r in rows]

    async def correct_intake(self, conversation_id: int, facts: list[Fact], author: str,
                             cause: str) -> Intake:
        """Commit a person's value (`fact.source` is `person`) with the words that set it (the
        email's command line, the form's value, the API body); returns the merged facts."""
        if not facts or any(fact.source != "person" for fact in facts):
            raise ValueError("a correction is a person's value")
        async with self._transaction():
            row = await self._one("SELECT 1 FROM conversations WHERE id = ?", (conversation_id,))
            if row is None:
                raise KeyError(conversation_id)
            now = time.time()
            for fact in facts:
                await self._insert_fact(conversation_id, None, fact, author, cause, now)
            return await self._remerge(conversation_id)

    async def suggest_intake(self, conversation_id: int, message_id: int, facts: list[Fact],
                             author: str, cause: str) -> Intake:
        """Commit an optional extractor's values (`suggested`) for one text: shown until a
        person confirms them, and never over a fact the rules read or a person set."""
        if not facts or any(fact.source != "suggested" for fact in facts):
            raise ValueError("a suggestion is an extractor's value")
        async with self._transaction():
            now = time.time()
            for fact in facts:
                await self._insert_fact(conversation_id, message_id, fact, author, cause, now)
            return await self._remerge(conversation_id)

    async def intake(self, conversation_id: int) -> Intake:
        """The conversation's facts: a person's value over an extracted one, else the newest."""
        return merge(await self._facts(conversation_id))

    async def scorecard_by_intake(self, start: float, end: float) -> dict[str, list[dict[str, Any]]]:
        """The period's funnel by project type and by service area (scorecard.by_intake)."""
        rows = await self.report_rows(start, end)
        ids = sorted({r["conversation_id"] for r in rows["calls"]} - {None})
        intake: dict[int, tuple[str | None, str | None]] = {}
        for chunk in range(0, len(ids), 500):
            part = ids[chunk:chunk + 500]
            found = await self._all(
                "SELECT id, intake_project, intake_area FROM conversations WHERE id IN"
                f" ({','.join('?' * len(part))})", tuple(part))
            intake |= {r["id"]: (r["intake_project"], r["intake_area"]) for r in found}
        return by_intake(rows, intake)

    async def intake_history(self, conversation_id: int) -> list[dict[str, Any]]:
        """Every extraction and correction, oldest first, with what caused it."""
        rows = await self._all(
            "SELECT id, message_id, field, value, label, evidence, why, source, author, cause, at"
            " FROM intake_facts WHERE conversation_id = ? ORDER BY id", (conversation_id,))
        return [dict(r) for r in rows]
