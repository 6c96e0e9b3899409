"""Progress marks (the last AMI event, the AMI state) and incidents."""

from __future__ import annotations

from typing import Any

from textback.store.connection import Connection


class ProgressRows(Connection):
    """Progress marks (the last AMI event, the AMI state) and incidents."""

    async def progress(self, name: str) -> float | None:
        row = await self._one("SELECT value FROM progress WHERE name = ?", (name,))
        return row["value"] if row else None

    async def note_progress(self, name: str, value: float) -> None:
        """Keep one named moment, e.g. when the last AMI event arrived."""
        async with self._transaction() as db:
            await db.execute("INSERT INTO progress (name, value) VALUES (?, ?)"
                             f" ON CONFLICT ({self._company_key('name')}) DO UPDATE SET value = excluded.value",
                             (name, value))

    async def open_incident(self, kind: str, summary: str, at: float, pbx: str = "") -> int | None:
        """Record that an incident of `kind` began (about `pbx`, or '' for none in particular);
        None when one of that kind about that PBX is already open."""
        async with self._transaction():
            return await self._insert(
                "INSERT INTO incidents (kind, summary, opened_at, pbx) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING", (kind, summary, at, pbx))

    async def close_incident(self, incident_id: int, at: float) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute("UPDATE incidents SET closed_at = ? WHERE id = ?"
                                      " AND closed_at IS NULL", (at, incident_id))
            return cursor.rowcount == 1

    async def open_incidents(self) -> list[dict[str, Any]]:
        rows = await self._all("SELECT * FROM incidents WHERE closed_at IS NULL ORDER BY opened_at")
        return [dict(r) for r in rows]

    async def closed_incidents(self, limit: int = 10) -> list[dict[str, Any]]:
        """The incidents that recovered, the latest recovery first."""
        rows = await self._all("SELECT * FROM incidents WHERE closed_at IS NOT NULL"
                               " ORDER BY closed_at DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]
