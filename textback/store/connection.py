"""What every aggregate works on, whatever the backend: a transaction, reads, and the events
and consent facts every write may append.

`Connection` is the aggregates' base; a backend (`textback/store/sqlite.py`,
`textback/store/postgres/`) supplies `_transaction`, `_one`, `_all` and `_db`, the connection
of the transaction under way, whose `execute(sql, args)` takes `?` (or `:name`) placeholders
and returns a cursor with `rowcount`, `fetchone()` and `fetchall()`.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from typing import Any

from textback.core import consent
from textback.core.events import Event
from textback.store.states import Machine


class StoreTooNew(RuntimeError):
    """The store's schema is newer than this textback knows: a downgrade, refused."""


def textback_version() -> str:
    try:
        return importlib.metadata.version("textback")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def downgrade_refused(where: str, version: int, writer_version: str | None,
                      known: int) -> StoreTooNew:
    """The error for a store whose schema `version` is newer than the `known` one."""
    writer = f"textback {writer_version}" if writer_version else "a newer textback"
    return StoreTooNew(
        f"{where} has schema {version}, written by {writer}; this is textback "
        f"{textback_version()}, which knows schema {known} at most. Nothing "
        f"was written. Install {writer.removeprefix('a ').replace('newer', 'the newer')} again: "
        f"a downgrade is not supported.")


class Connection:
    """The aggregates' base: events and consent facts join the transaction under way."""

    # SQLite's CROSS JOIN keeps the tables in the order written (the planner starts from the
    # first, not from a range of all messages); PostgreSQL's planner needs no such hint.
    _JOIN_IN_ORDER = "CROSS JOIN"

    def __init__(self) -> None:
        self.events_added = asyncio.Event()  # set when a commit carried webhook events
        self._emitted = False

    async def _emit(self, event: Event) -> None:
        """Add a webhook event to the transaction under way: it commits, or not, with the change."""
        await self._db.execute(
            "INSERT INTO events (event_id, type, order_key, body, created_at) VALUES (?,?,?,?,?)",
            (event.id, event.type, event.order_key, event.body, event.at))
        self._emitted = True

    async def _ledger(self, fact: consent.Fact) -> None:
        """Append a consent fact to the transaction under way: it commits, or not, with the change."""
        await self._db.execute(
            f"INSERT INTO consent_ledger ({', '.join(consent.COLUMNS)}) VALUES (?,?,?,?,?,?,?,?)",
            fact.row())

    def _skip_locked(self, table: str) -> str:
        """What a claim's SELECT ends with so that rows another daemon's claim holds are
        skipped, not waited for: nothing on SQLite, where one daemon writes at a time."""
        return ""

    async def _claim(self, table: str, machine: Machine, which: str = "", args: tuple = (), *,
                     then: str = "", sets: str = "", set_args: tuple = ()) -> list[int]:
        """Claim, in the transaction under way, the rows of `table` that `which` picks (with
        its `args`; `then`, an ORDER BY and LIMIT, picks among them): each moves from
        `machine`'s claim source to its claim target, with `sets` (`, col = ...`, taking
        `set_args`) written beside. Returns the ids this call took: a row another worker, or
        another daemon, took first is not among them.

        The rows are read in a subquery that locks them on PostgreSQL and skips those another
        daemon's claim holds (`_skip_locked`), and the UPDATE checks the state again, so a
        row is taken by one claim only, on either backend."""
        guard = machine.guard("claim")
        where = f"{which} AND {guard}" if which else guard
        cursor = await self._db.execute(
            f"UPDATE {table} SET state = '{machine.target('claim')}'{sets} WHERE id IN"
            f" (SELECT id FROM {table} WHERE {where}{then}{self._skip_locked(table)})"
            f" AND {guard} RETURNING id", (*set_args, *args))
        return [row[0] for row in await cursor.fetchall()]
    def _company_key(self, columns: str) -> str:
        """The columns of a unique key that is one company's (an ON CONFLICT's target):
        on SQLite as they are, a file being one company's store."""
        return columns

    async def _insert(self, sql: str, args: tuple = ()) -> int | None:
        """Run an INSERT in the transaction under way; the new row's id (None: nothing was
        inserted, e.g. ON CONFLICT DO NOTHING). RETURNING works alike on both backends."""
        row = await (await self._db.execute(f"{sql} RETURNING id", args)).fetchone()
        return row[0] if row else None

    def _committed(self) -> None:
        """After a commit: wake the event deliveries if it carried events."""
        if self._emitted:
            self.events_added.set()

    async def consent_record(self, number: str) -> list[dict[str, Any]]:
        """One number's consent ledger, in time order."""
        return [dict(r) for r in await self._all(
            "SELECT * FROM consent_ledger WHERE number = ? ORDER BY at, id", (number,))]
