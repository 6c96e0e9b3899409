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
import logging
from typing import Any

from textback.core import consent
from textback.core.alerts import one_line
from textback.core.events import Event
from textback.store.states import Machine

log = logging.getLogger("textback")

class StoreRefused(RuntimeError):
    """The store cannot be used as it is, and opening it again will not change that: a person
    must act first, as the message says. `textback run` exits with the status systemd does not
    restart (textback/unit.py)."""


class StoreTooNew(StoreRefused):
    """The store's schema is newer than this textback knows: a downgrade, refused."""


class UpgradeRefused(StoreRefused):
    """A migration met rows it cannot bring to the new schema (a constraint it adds that they
    break): it was rolled back whole, the store is as it was."""


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


def upgrade_refused(where: str, version: int, number: int, problem: str) -> UpgradeRefused:
    """The error for migration `number` refused by a row that breaks a constraint it adds
    (`problem`: the database's words: the table, the constraint and the row's key, whose
    values may have come from a caller, so kept to one escaped line)."""
    return UpgradeRefused(
        f"{where}: the upgrade to schema {number} stopped at a row it cannot keep "
        f"({one_line(problem, 300)}). Nothing was changed: the store stays at schema {version}, "
        f"and the textback that wrote it runs on it as before. Correct or delete that row, then "
        f"start this textback again (docs/fleet.md, \"A reference names the company too\").")


class Connection:
    """The aggregates' base: events and consent facts join the transaction under way."""

    # SQLite's CROSS JOIN keeps the tables in the order written (the planner starts from the
    # first, not from a range of all messages); PostgreSQL's planner needs no such hint.
    _JOIN_IN_ORDER = "CROSS JOIN"

    def __init__(self) -> None:
        self.events_added = asyncio.Event()  # set when a commit carried webhook events
        self._emitted = False
        # The daemon this store claims rows for (a row of `daemons`, see claimers.py); None for
        # a command that claims nothing of its own (its claims, if any, count as a gone one's).
        self._claimer: int | None = None

    async def _emit(self, event: Event) -> None:
        """Add a webhook event to the transaction under way: it commits, or not, with the change."""
        await self._event_id_taken()
        await self._db.execute(
            "INSERT INTO events (event_id, type, order_key, body, created_at) VALUES (?,?,?,?,?)",
            (event.id, event.type, event.order_key, event.body, event.at))
        self._emitted = True

    async def _ledger(self, fact: consent.Fact) -> None:
        """Append a consent fact to the transaction under way: it commits, or not, with the change."""
        await self._db.execute(
            f"INSERT INTO consent_ledger ({', '.join(consent.COLUMNS)}) VALUES (?,?,?,?,?,?,?,?)",
            fact.row())

    async def _event_id_taken(self) -> None:
        """Before an event's INSERT takes its id: nothing on SQLite, whose writers commit one
        after the other, so its ids commit in order (see `settled_event_id`)."""

    async def settled_event_id(self) -> int:
        """An event id no event can be committed at or below any more: the cursors that read
        events in id order (webhook and CRM fan-out, Web Push) never go past it, so they never
        step over an event that commits later with a smaller id. On SQLite it is the largest
        id: one writer at a time, so an id is committed before the next one is taken."""
        return (await self._one("SELECT MAX(id) AS id FROM events"))["id"] or 0

    def _live_claimers(self, mine_too: bool = False) -> str:
        """SQL for the ids of the claimers still alive (less this store's own with `mine_too`).
        SQLite has one daemon (the run lock): this store's own, if it registered one (0, no
        claimer's id, stands for none)."""
        return f"SELECT {0 if mine_too or self._claimer is None else int(self._claimer)}"

    def _orphaned(self, mine_too: bool = False) -> str:
        """The condition on a row in flight that its claimer is gone (or unknown, -1: a row
        claimed before claimers were recorded, or by a command), so recovery may take it;
        `mine_too` takes this store's own rows as well (work it stopped: a worker starting
        again, or the outbox when the AMI lease went)."""
        return f"COALESCE(claimed_by, -1) NOT IN ({self._live_claimers(mine_too)})"

    def _skip_locked(self, table: str) -> str:
        """What a claim's SELECT ends with so that rows another daemon's claim holds are
        skipped, not waited for: nothing on SQLite, where one daemon writes at a time."""
        return ""

    async def _claim(self, table: str, machine: Machine, which: str = "", args: tuple = (), *,
                     then: str = "", sets: str = "", set_args: tuple = ()) -> list[int]:
        """Claim, in the transaction under way, the rows of `table` that `which` picks (with
        its `args`; `then`, an ORDER BY and LIMIT, picks among them): each moves from
        `machine`'s claim source to its claim target, recording this store's daemon as its
        claimer (`claimed_by`: recovery takes it only once that daemon is gone), with `sets`
        (`, col = ...`, taking `set_args`) written beside. Returns the ids this call took: a row another worker, or
        another daemon, took first is not among them.

        The rows are picked once, locked on PostgreSQL, skipping those another daemon's claim
        holds (`_skip_locked`), and the UPDATE checks the state again, so a row is taken by
        one claim only, and a claim takes no more than `then` allows, on either backend."""
        guard = machine.guard("claim")
        where = f"{which} AND {guard}" if which else guard
        # Picked once, in a materialised CTE: a subquery under IN may be run again for each row
        # the UPDATE looks at (PostgreSQL's plan under row-level security does), and with
        # SKIP LOCKED and a LIMIT each run would pick another row, claiming several.
        cursor = await self._db.execute(
            f"WITH picked AS MATERIALIZED (SELECT id FROM {table} WHERE {where}{then}"
            f"{self._skip_locked(table)}) UPDATE {table} SET state = '{machine.target('claim')}',"
            f" claimed_by = ?{sets} WHERE id IN (SELECT id FROM picked) AND {guard} RETURNING id",
            (*args, self._claimer, *set_args))
        return [row[0] for row in await cursor.fetchall()]

    async def _transition(self, table: str, machine: Machine, event: str, row_id: int,
                          state: str | None = None, sets: str = "", args: tuple = (),
                          level: int = logging.WARNING) -> bool:
        """Move one row of `table`, in the transaction under way, by `machine`'s `event` (to
        `state` when the event has several), writing `sets` (`, col = ?`, taking `args`)
        beside: one UPDATE whose WHERE holds the event's source states, so a row another path
        has moved on (a send marked `unknown` as its lease went) is never moved back. False
        when refused, which is logged with the row, the state it is in and the states the
        event takes: a refusal is a race another path won, never an error to raise, and never
        silent. `level`: INFO for an event whose losing race is ordinary (an expiry another
        daemon of a fleet, or a claim, got to first); a claim's own end refused is a WARNING."""
        target = machine.target(event, state)
        cursor = await self._db.execute(
            f"UPDATE {table} SET state = '{target}'{sets} WHERE id = ? AND {machine.guard(event)}"
            " RETURNING id", (*args, row_id))
        if await cursor.fetchone() is not None:
            return True
        row = await self._one(f"SELECT state FROM {table} WHERE id = ?", (row_id,))
        log.log(level, "%s row %d: %s to %s refused: it is %s, not %s", table, row_id, event,
                target, row["state"] if row else "gone",
                " or ".join(machine.transitions[event].sources))
        return False

    async def _in_turn(self, key: str) -> None:
        """In the transaction under way, wait for any other transaction that took `key` to end
        first: for a check and a write that must not interleave (a notice queued unless one
        already was). Nothing on SQLite, whose write transactions already run one at a time."""

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
