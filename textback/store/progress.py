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
        """Record that an incident of `kind` began (about `pbx`, or '' for none in particular),
        opened by this store's daemon (its claimer); None when one of that kind about that
        PBX is already open."""
        async with self._transaction():
            return await self._insert(
                "INSERT INTO incidents (kind, summary, opened_at, pbx, opened_by)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (kind, summary, at, pbx, self._claimer))

    async def adopt_incident(self, incident_id: int) -> bool:
        """Take over an open incident whose daemon is gone: it becomes this store's daemon's
        to judge. False when it is closed, or its daemon is alive (another one took it)."""
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE incidents SET opened_by = ? WHERE id = ? AND closed_at IS NULL"
                f" AND COALESCE(opened_by, -1) NOT IN ({self._live_claimers()})",
                (self._claimer, incident_id))
            return cursor.rowcount == 1

    async def close_incident(self, incident_id: int, at: float) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute("UPDATE incidents SET closed_at = ? WHERE id = ?"
                                      " AND closed_at IS NULL", (at, incident_id))
            return cursor.rowcount == 1

    async def open_incidents(self) -> list[dict[str, Any]]:
        """The open incidents, each with `opened_here` (opened by this store's daemon) and
        `opener_gone` (the daemon that opened it is gone, or unknown), and `opened_on`, the
        host of the daemon that opened it ('' when unknown)."""
        mine = -2 if self._claimer is None else int(self._claimer)
        rows = await self._all(
            "SELECT i.*, COALESCE(i.opened_by, -1) = ? AS opened_here,"
            f" COALESCE(i.opened_by, -1) NOT IN ({self._live_claimers()}) AS opener_gone,"
            " COALESCE(d.host, '') AS opened_on"
            " FROM incidents i LEFT JOIN daemons d ON d.id = i.opened_by"
            " WHERE i.closed_at IS NULL ORDER BY i.opened_at", (mine,))
        return [{**dict(r), "opened_here": bool(r["opened_here"]),
                 "opener_gone": bool(r["opener_gone"])} for r in rows]

    async def closed_incidents(self, limit: int = 10) -> list[dict[str, Any]]:
        """The incidents that recovered, the latest recovery first."""
        rows = await self._all("SELECT * FROM incidents WHERE closed_at IS NOT NULL"
                               " ORDER BY closed_at DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]
