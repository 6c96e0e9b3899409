"""Self-test runs: requested, claimed, finished or abandoned."""

from __future__ import annotations

import time
from typing import Any

from textback.core import events
from textback.core.selftest import Report
from textback.store.connection import Connection
from textback.store.states import SELFTEST


class SelftestRows(Connection):
    """Self-test runs: requested, claimed, finished or abandoned."""

    async def request_selftest(self, trigger: str) -> int:
        """A run for the daemon to pick up; `textback selftest` then waits for its result."""
        async with self._transaction():
            return await self._insert("INSERT INTO selftests (trigger, requested_at) VALUES (?,?)",
                                      (trigger, time.time()))

    async def claim_selftest(self) -> int | None:
        """The oldest requested run, now running; None when none waits."""
        async with self._transaction():
            taken = await self._claim("selftests", SELFTEST, then=" ORDER BY requested_at LIMIT 1",
                                      sets=", started_at = ?", set_args=(time.time(),))
            return taken[0] if taken else None

    async def finish_selftest(self, run_id: int, started_at: float, finished_at: float,
                              passed: bool, steps_json: str) -> None:
        """The run's result, and its selftest.finished event, in one commit."""
        async with self._transaction() as db:
            cursor = await db.execute(
                f"UPDATE selftests SET state = '{SELFTEST.target('finish')}', started_at = ?,"
                " finished_at = ?, passed = ?,"
                " steps = ? WHERE id = ? RETURNING id, trigger, started_at, finished_at, steps",
                (started_at, finished_at, int(passed), steps_json, run_id))
            for row in await cursor.fetchall():
                await self._emit_selftest_finished(row)

    async def selftest_run(self, run_id: int) -> dict[str, Any] | None:
        row = await self._one("SELECT * FROM selftests WHERE id = ?", (run_id,))
        return dict(row) if row else None

    async def last_selftest(self) -> dict[str, Any] | None:
        """The latest finished self-test (started, finished, passed, steps as JSON), or None."""
        row = await self._one("SELECT * FROM selftests WHERE state = 'done'"
                              " ORDER BY finished_at DESC, id DESC LIMIT 1")
        return dict(row) if row else None

    async def abandon_selftests(self, why_json: str, mine_too: bool = False) -> list[int]:
        """Runs a gone daemon left `running` (a stop, a crash) end as failed: none is left
        hanging. Another live daemon's run is its own to finish (`mine_too`: see
        `recover_interrupted`)."""
        async with self._transaction() as db:
            cursor = await db.execute(
                f"UPDATE selftests SET state = '{SELFTEST.target('abandon')}', passed = 0,"
                f" finished_at = ?, steps = ? WHERE {SELFTEST.guard('abandon')}"
                f" AND {self._orphaned(mine_too)} RETURNING id, trigger, started_at, finished_at, steps",
                (time.time(), why_json))
            rows = await cursor.fetchall()
            for row in rows:
                await self._emit_selftest_finished(row)
            return [row["id"] for row in rows]

    async def _emit_selftest_finished(self, row) -> None:
        report = Report.from_row(dict(row))
        await self._emit(events.selftest_finished(run_id=row["id"], trigger=row["trigger"],
                                                  report=report, at=report.finished_at))
