"""A history of a million calls in minutes: one stretch written by the store, then repeated.

`lab/history.py` writes every step through the store's own API at the moment it happened,
which is what makes its rows honest, and slow: about 100 calls a second on SQLite and 60 on
PostgreSQL, so 1M calls took hours. Here the first `template_calls` calls (a whole number of
days) are written exactly that way; then every row of that stretch is copied forward in time,
again and again, until the history is `calls` long, each copy with:

* its own ids: each table's ids moved up by the stretch's highest, and every reference
  (conversation_id, message_id, last_reply_id, the search index's keys, the ids inside the
  events' and consent facts' JSON, "gw-<outbox id>", "conversation:<id>") moved with them;
* its own callers: the stretch's callers `caller_number(i)` become `caller_number(i + k·C)`
  (C callers a stretch), wherever they appear (an opt-out event's "number:<caller>" too),
  so a copy's conversations are new conversations;
* its own moment: every time (REAL columns, RFC 3339 strings in JSON) moved by k stretches;
* its own unique values: call ids `history-<seed>-<i>` numbered on, new event ids and outbox
  idempotency keys; the global `conversations.version` counter moved on past the last copy's.

So each copy's rows are, field by field apart from ids, callers and times, the rows the store
wrote for the stretch (`tests/test_long_history.py` checks it, caller by caller, on both
backends). Bulk loading: SQLite's executemany in one transaction a copy, PostgreSQL's COPY
(with `session_replication_role = replica`, so the rows' own values stand: no trigger bumps a
conversation's state_version or wakes a worker for rows that are history, and the identity
sequences are set past the copies at the end). Both are analysed at the end, as a store that
has been running for years has been by `PRAGMA optimize` or autovacuum.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Awaitable, Callable

from lab.history import Shape, build_history, caller_number

# The stretch written through the store's API: 100 days at 100 calls a day.
TEMPLATE_CALLS = 10_000

# The tables the history writes, each copied with its ids (`id`: the table whose offset moves
# its primary key) and references (column → table); parents come before children, except
# conversations, last: on SQLite an outcome's insert trigger bumps its conversation's
# state_version, and the copied conversation already carries the bumped value.
TABLES: dict[str, dict[str, Any]] = {
    "messages": {"id": "messages", "refs": {"conversation_id": "conversations"}},
    "calls": {"id": "calls", "refs": {"conversation_id": "conversations",
                                      "message_id": "messages"}},
    "outbox": {"id": "outbox", "refs": {"message_id": "messages"}},
    "alerts": {"id": "alerts", "refs": {"conversation_id": "conversations",
                                        "message_id": "messages"}},
    "notices": {"id": "notices", "refs": {}},
    "assignments": {"id": "assignments", "refs": {"conversation_id": "conversations"}},
    "outcomes": {"id": "outcomes", "refs": {"conversation_id": "conversations"}},
    "escalations": {"id": None, "refs": {"message_id": "messages"}},
    "suppressions": {"id": None, "refs": {}},
    "intake_facts": {"id": "intake_facts", "refs": {"conversation_id": "conversations",
                                                    "message_id": "messages"}},
    "events": {"id": "events", "refs": {}},
    "consent_ledger": {"id": "consent_ledger", "refs": {}},
    "conversation_search": {"id": None, "refs": {"conversation_id": "conversations"}},
    "conversations": {"id": "conversations", "refs": {"last_reply_id": "messages"}},
}
# Tables that hold rows after the stretch but are not copied: the schema's bookkeeping, and
# the per-number count of conversations started, multiplied instead.
NOT_COPIED = {"written_by", "schema_version", "companies", "conversation_turns", "sqlite_stat1"}
# Ids inside the events' and consent facts' JSON, and the table each names.
JSON_IDS = {"conversation_id": "conversations", "message_id": "messages", "outbox_id": "outbox"}

_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")
_CALL_KEY = re.compile(r"(history|in)-(\d+)-(\d+)")
_GATEWAY_ID = re.compile(r"gw-(\d+)")
_ORDER_KEY = re.compile(r"conversation:(\d+)")


class Copy:
    """How one copy's values differ from the stretch's: k stretches later, k stretches of ids."""

    def __init__(self, k: int, span: int, maxima: dict[str, int], calls: int,
                 callers: dict[str, str], versions: int, since: float) -> None:
        self.shift = k * span
        # A REAL from the stretch's first day on is a moment (a 1M-call history starts in
        # the last century); retry_at's 0 ("at once") and an outcome's value are not.
        self.since = since
        self.offsets = {table: k * highest for table, highest in maxima.items()}
        self.call_offset = k * calls
        self.callers = callers
        self.version_offset = k * versions

    def ref(self, table: str, value: int | None) -> int | None:
        return None if value is None else value + self.offsets[table]

    def value(self, value: Any) -> Any:
        if isinstance(value, float) and value >= self.since:
            return value + self.shift
        if isinstance(value, str):
            return self.text(value)
        return value

    def text(self, text: str) -> str:
        first = text[:1]  # each kind of value that moves has its own first character
        if first == "+":
            return self.callers.get(text, text)
        if first in ("1", "2") and _RFC3339.fullmatch(text):
            moved = datetime.fromisoformat(text) + timedelta(seconds=self.shift)
            return moved.isoformat(timespec="milliseconds")
        if first in ("h", "i") and (match := _CALL_KEY.fullmatch(text)):
            return f"{match[1]}-{match[2]}-{int(match[3]) + self.call_offset}"
        if first == "g" and (match := _GATEWAY_ID.fullmatch(text)):
            return f"gw-{int(match[1]) + self.offsets['outbox']}"
        if first == "c" and (match := _ORDER_KEY.fullmatch(text)):
            return f"conversation:{int(match[1]) + self.offsets['conversations']}"
        if first == "n" and text.startswith("number:"):  # an opt-out event's order key
            return f"number:{self.text(text.removeprefix('number:'))}"
        return text

    def json(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: (self.ref(JSON_IDS[key], item) if key in JSON_IDS and type(item) is int
                          else self.json(item)) for key, item in value.items()}
        if isinstance(value, list):
            return [self.json(item) for item in value]
        return self.value(value)

    def row(self, table: str, row: dict[str, Any], moving: frozenset[str]) -> dict[str, Any]:
        """The copy of `row`; only its `moving` columns can hold a time, caller or key."""
        spec = TABLES[table]
        out = {column: self.value(value) if column in moving else value
               for column, value in row.items() if column != _PARSED}
        if spec["id"]:
            out["id"] = row["id"] + self.offsets[spec["id"]]
        for column, parent in spec["refs"].items():
            out[column] = self.ref(parent, row[column])
        if table == "conversation_search":  # a message's id, or minus its conversation's
            rowid = row["rowid"]
            out["rowid"] = (rowid + self.offsets["messages"] if rowid > 0
                            else rowid - self.offsets["conversations"])
        elif table == "conversations":
            out["version"] = row["version"] + self.version_offset
        elif table == "outbox":
            out["idempotency_key"] = uuid.uuid4().hex
        elif table == "events":
            out["event_id"] = f"evt_{uuid.uuid4().hex}"
            body = self.json(row[_PARSED])
            body["id"] = out["event_id"]
            out["body"] = _ENCODINGS["events"](body)
        elif table == "consent_ledger":
            out["detail"] = _ENCODINGS["consent_ledger"](self.json(row[_PARSED]))
        return out


# The JSON of the events' bodies (textback.core.events.new_event) and of the consent facts'
# details (the ledger's Fact.row), encoded as the store encodes them.
_ENCODINGS: dict[str, Callable[[Any], str]] = {
    "events": lambda value: json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                                       sort_keys=True),
    "consent_ledger": lambda value: json.dumps(value, sort_keys=True),
}
_JSON_COLUMNS = {"events": "body", "consent_ledger": "detail"}
_PARSED = "parsed JSON"  # a stretch row's JSON column, parsed once for every copy


def _moving_columns(table: str, rows: list[dict[str, Any]], probe: Copy) -> frozenset[str]:
    """The columns of `table` some value of which a copy changes (checked on the stretch's
    rows), and a check that its JSON re-encodes byte for byte as the store wrote it."""
    if table in _JSON_COLUMNS:
        column = _JSON_COLUMNS[table]
        for row in rows:
            row[_PARSED] = json.loads(row[column])
            if _ENCODINGS[table](row[_PARSED]) != row[column]:
                raise ValueError(f"{table}.{column} is not encoded as expected: {row[column]}")
    return frozenset(column for column in (rows[0] if rows else ()) if column != _PARSED
                     if any(probe.value(row[column]) != row[column] for row in rows))


async def build_long_history(open_store: Callable[[], Awaitable[Any]], target: Path | str,
                             calls: int, end: float, shape: Shape = Shape(), seed: int = 1,
                             template_calls: int = TEMPLATE_CALLS) -> dict[str, int]:
    """Add `calls` calls ending at `end` to the empty store that `open_store()` opens, whose
    rows `target` reaches directly: the SQLite file's path, or a PostgreSQL URL as a
    superuser. Up to `template_calls`, all through the store (lab.history.build_history);
    beyond, that stretch repeated. Returns what was added, as build_history does."""
    if calls <= template_calls:
        store = await open_store()
        try:
            return await build_history(store, calls, end, shape, seed)
        finally:
            await store.close()
    span = template_calls * 86400 / shape.calls_per_day
    if calls % template_calls or span != int(span) or span % 86400:
        raise ValueError(f"{calls} calls cannot be whole copies of {template_calls} calls "
                         f"of whole days at {shape.calls_per_day} a day")
    copies = calls // template_calls
    store = await open_store()
    try:
        if await store.calls(0):
            raise ValueError("the store already holds calls: a history is built on an empty one")
        counts = await build_history(store, template_calls, end - (copies - 1) * span, shape, seed)
    finally:
        await store.close()
    await asyncio.to_thread(_repeat, target, copies, int(span), template_calls)
    return {name: count * copies for name, count in counts.items()}


def _repeat(target: Path | str, copies: int, span: int, calls: int) -> None:
    backend = _Postgres(str(target)) if isinstance(target, str) else _Sqlite(Path(target))
    try:
        tables = backend.tables_with_rows()
        unknown = tables - set(TABLES) - NOT_COPIED
        if unknown:  # rows this code cannot copy would make the copies lie: never silently
            raise ValueError(f"the history wrote rows to tables not copied: {sorted(unknown)}")
        stretch = {table: backend.rows(table) for table in TABLES if table in tables}
        maxima = {spec["id"]: max((row["id"] for row in stretch.get(table, ())), default=0)
                  for table, spec in TABLES.items() if spec["id"]}
        if backend.min_call_id() != 1 or maxima["calls"] != calls:
            raise ValueError("the stretch is not the store's only calls")
        first_callers = backend.callers()
        count = len(first_callers)
        if set(first_callers) != {caller_number(i) for i in range(count)}:
            raise ValueError("the stretch's callers are not caller_number(0..n-1)")
        versions = max(row["version"] for row in stretch["conversations"])
        since = min(row["started_at"] for row in stretch["calls"]) - 86400
        callers = [caller_number(i) for i in range(count * copies)]
        probe = Copy(1, span, maxima, calls, dict(zip(callers, callers[count:])), versions,
                     since)
        moving = {table: _moving_columns(table, rows, probe) for table, rows in stretch.items()}
        for k in range(1, copies):
            moved = dict(zip(callers[:count], callers[k * count:]))
            copy = Copy(k, span, maxima, calls, moved, versions, since)
            backend.insert({table: [copy.row(table, row, moving[table]) for row in rows]
                            for table, rows in stretch.items()})
        backend.finish(copies, [table for table, spec in TABLES.items() if spec["id"] == table])
    finally:
        backend.close()


class _Sqlite:
    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA synchronous=OFF")  # as build_history builds: the rows are the same

    def tables_with_rows(self) -> set[str]:
        names = [row[0] for row in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND name NOT LIKE 'conversation_search_%'")]
        return {name for name in names
                if self.db.execute(f'SELECT 1 FROM "{name}" LIMIT 1').fetchone()}

    def rows(self, table: str) -> list[dict[str, Any]]:
        columns = "rowid, conversation_id, text" if table == "conversation_search" else "*"
        return [dict(row) for row in self.db.execute(f"SELECT {columns} FROM {table} ORDER BY rowid")]

    def min_call_id(self) -> int:
        return self.db.execute("SELECT MIN(id) FROM calls").fetchone()[0]

    def callers(self) -> list[str]:
        return [row[0] for row in self.db.execute(
            "SELECT DISTINCT caller FROM calls WHERE caller IS NOT NULL")]

    def insert(self, tables: dict[str, list[dict[str, Any]]]) -> None:
        self.db.execute("BEGIN")
        for table, rows in tables.items():
            if rows:
                columns = list(rows[0])
                self.db.executemany(
                    f"INSERT INTO {table} ({', '.join(columns)})"
                    f" VALUES ({', '.join('?' * len(columns))})",
                    [tuple(row[c] for c in columns) for row in rows])
        self.db.execute("COMMIT")

    def finish(self, copies: int, _identities: list[str]) -> None:
        self.db.execute("UPDATE conversation_turns SET started = started * ?", (copies,))
        self.db.execute("ANALYZE")

    def close(self) -> None:
        self.db.close()


class _Postgres:
    def __init__(self, url: str) -> None:
        import psycopg
        from psycopg.rows import dict_row
        self.db = psycopg.connect(url, autocommit=True, row_factory=dict_row)
        # The copied rows' values stand as the store wrote them: no trigger (a state_version
        # bump, a worker's wake-up), no foreign-key check per row (the copy's keys are the
        # stretch's, moved together). Needs a superuser, as the bench and tests connect.
        self.db.execute("SET session_replication_role = replica")

    def tables_with_rows(self) -> set[str]:
        names = [row["tablename"] for row in self.db.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return {name for name in names
                if self.db.execute(f'SELECT 1 FROM "{name}" LIMIT 1').fetchone()}

    def rows(self, table: str) -> list[dict[str, Any]]:
        key = "rowid" if table == "conversation_search" else ("id" if TABLES[table]["id"]
                                                               else "ctid")
        return list(self.db.execute(f"SELECT * FROM {table} ORDER BY {key}"))

    def min_call_id(self) -> int:
        return self.db.execute("SELECT MIN(id) AS n FROM calls").fetchone()["n"]

    def callers(self) -> list[str]:
        return [row["caller"] for row in self.db.execute(
            "SELECT DISTINCT caller FROM calls WHERE caller IS NOT NULL")]

    def insert(self, tables: dict[str, list[dict[str, Any]]]) -> None:
        with self.db.transaction():
            cursor = self.db.cursor()
            for table, rows in tables.items():
                if rows:
                    columns = list(rows[0])
                    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(tuple(row[c] for c in columns))

    def finish(self, copies: int, identities: list[str]) -> None:
        self.db.execute("UPDATE conversation_turns SET started = started * %s", (copies,))
        for table in identities:  # the next row the store writes takes the next id
            self.db.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                            f" (SELECT MAX(id) FROM {table}))")
        self.db.execute("ANALYZE")

    def close(self) -> None:
        self.db.close()
