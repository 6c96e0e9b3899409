"""One SQLite store moved into a PostgreSQL database as one company (`textback migrate-store`).

A single remodeler's install keeps everything in one SQLite file; a fleet keeps every company
in one PostgreSQL database, each row carrying its company (docs/fleet.md, "Companies"). The
move copies every table of the file, in one transaction on the target, as a new company:

- **Ids are remapped.** PostgreSQL's ids are identities unique across the database, so the
  file's ids (1, 2, 3...) would collide with other companies'. Each table's new ids are taken
  from its own identity sequence (`nextval`), so the sequences stay ahead of every id and
  another daemon inserting meanwhile never collides; they are handed out in the order of the
  file's ids, so the order of ids (and of creation) within the company stays the same.
- **Every reference follows**: the declared foreign keys, and the columns and texts that hold
  ids without one (`TABLES`: `calls.message_id`, each claim's `claimed_by`, the search
  index's `rowid`, the delivery and push cursors in `progress`, an event's order key and body,
  a push's `ref` and payload, the consent ledger's `detail`, a kept API answer). A reference
  to a row that no longer exists (retention pruned it) becomes NULL, never another row's id.
- **The consent ledger** is append-only (its triggers refuse UPDATE and DELETE): its rows are
  inserted once, in their order, their `detail` naming the new ids and keeping the file's
  (`source_ids`), and nothing else of them changes.
- **Link keys are made anew.** `web_keys` signs sign-in and media links over ids; links signed
  before the move name the old ids, so the keys are not copied: an old link is refused
  (expired) rather than opening another row that now has its id.
- **All or nothing.** The company is enrolled and every row written in one transaction; any
  failure rolls it back (a sequence's values taken meanwhile are not given back, which
  changes no row). A target already holding the company is refused before anything is written.

Pure data work on two connections (sqlite3 and psycopg, both synchronous: a one-off batch
run by a person at a terminal); the CLI (`textback/cli.py`) wires it and verifies the result.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psycopg

from textback import runlock
from textback.store import migrations as sqlite_migrations
from textback.store.connection import downgrade_refused, textback_version
from textback.store.postgres import migrations as pg_migrations
from textback.store.postgres.connection import redacted
from textback.store.push import PUSH_EVENT_CURSOR

# The progress marks whose value is an event id (a cursor), not a time.
DELIVERY_CURSOR_PREFIX = "webhooks.cursor."


class MigrationRefused(RuntimeError):
    """The move was refused, or failed and was rolled back: nothing was written to the
    database (the message says why and what to do)."""


@dataclass(frozen=True)
class Table:
    """How one table is copied: whether it has an id of its own to remap (`identity`), the
    columns that hold other tables' ids (`refs`: column -> that table; `declared`: those
    with a FOREIGN KEY, the rest hold ids without one), and a `rewrite` of a row's other
    values that name ids (JSON, keys) or None."""

    name: str
    identity: bool = False
    refs: dict[str, str] = field(default_factory=dict)
    declared: tuple[str, ...] = ()
    rewrite: Callable[["Remap", dict[str, Any]], dict[str, Any] | None] | None = None
    why: str = ""  # what the move does beyond a copy, printed beside its count


class Remap:
    """Old id -> new id, per table, as the copy hands them out."""

    def __init__(self) -> None:
        self.ids: dict[str, dict[int, int]] = {}

    def new(self, table: str, old: Any) -> int | None:
        """The new id of `table`'s row `old`; None for no reference, or one to a row the file
        no longer holds."""
        if old is None:
            return None
        return self.ids.get(table, {}).get(int(old))

    def cursor(self, table: str, old: float) -> int:
        """An id cursor ("every id up to `old` is read") in the new ids: the largest new id
        whose old id is at most `old` (0: none), since the new ids keep the old ones' order."""
        below = [new for was, new in self.ids.get(table, {}).items() if was <= old]
        return max(below, default=0)


# A JSON value's keys that hold ids, and whose ids they are.
_JSON_ID_KEYS = {"conversation_id": "conversations", "message_id": "messages",
                 "outbox_id": "outbox", "run_id": "selftests", "media_id": "media"}
# A list or object under these keys holds rows whose own "id" is that table's.
_JSON_ID_OWNERS = {"media": "media", "conversation": "conversations",
                   "conversations": "conversations", "calls": "calls"}


def _json_ids(remap: Remap, value: Any, owner: str | None = None) -> Any:
    """`value` (parsed JSON) with every id it names rewritten."""
    if isinstance(value, list):
        return [_json_ids(remap, item, owner) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if key in _JSON_ID_KEYS and isinstance(item, int) and not isinstance(item, bool):
            out[key] = remap.new(_JSON_ID_KEYS[key], item)
        elif key == "id" and owner and isinstance(item, int) and not isinstance(item, bool):
            out[key] = remap.new(owner, item)
        else:
            out[key] = _json_ids(remap, item, _JSON_ID_OWNERS.get(key))
    return out


def _order_key(remap: Remap, key: str) -> str:
    """A delivery order key: `conversation:<id>` follows its conversation; the others (a
    number, a call id, the self-test) name no id."""
    if key.startswith("conversation:") and key[len("conversation:"):].isdigit():
        return f"conversation:{remap.new('conversations', int(key[len('conversation:'):]))}"
    return key


def _progress(remap: Remap, row: dict[str, Any]) -> dict[str, Any]:
    """The webhook and CRM fan-out cursors and the push worker's event cursor are event ids;
    every other mark is a time, kept as it is."""
    if row["name"].startswith(DELIVERY_CURSOR_PREFIX) or row["name"] == PUSH_EVENT_CURSOR:
        row["value"] = remap.cursor("events", row["value"])
    return row


def _event(remap: Remap, row: dict[str, Any]) -> dict[str, Any]:
    row["order_key"] = _order_key(remap, row["order_key"])
    body = json.loads(row["body"])
    body["data"] = _json_ids(remap, body.get("data"))
    # The same encoding as textback.core.events.new_event.
    row["body"] = json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return row


def _delivery(remap: Remap, row: dict[str, Any]) -> dict[str, Any]:
    row["order_key"] = _order_key(remap, row["order_key"])
    return row


def _push(remap: Remap, row: dict[str, Any]) -> dict[str, Any]:
    """A push names its conversation in its payload (the thread's path and the tag); its
    sign-in link was signed over the old id with a key not copied, so it goes (a device with
    no session signs in). An escalation's ref is `<message id>:<level>`."""
    if row["kind"] == "escalation":
        message, _, level = row["ref"].partition(":")
        row["ref"] = f"{remap.new('messages', int(message))}:{level}"
    payload = json.loads(row["payload"])
    match = re.fullmatch(r"/c/([0-9]+)", str(payload.get("thread", "")))
    if match:
        conversation = remap.new("conversations", int(match.group(1)))
        payload["thread"], payload["tag"] = f"/c/{conversation}", f"c{conversation}"
    payload["link"] = None
    row["payload"] = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return row


def _ledger(remap: Remap, row: dict[str, Any]) -> dict[str, Any]:
    """A consent fact's detail names the text's message and outbox row: the new ids, and the
    file's kept beside them (`source_ids`), so the record still points into the old file's
    backups too. Sorted as `Fact.row` writes it."""
    detail = json.loads(row["detail"] or "{}")
    kept = {key: detail[key] for key in _JSON_ID_KEYS if isinstance(detail.get(key), int)}
    if kept:
        detail = _json_ids(remap, detail)
        detail["source_ids"] = kept
        row["detail"] = json.dumps(detail, sort_keys=True)
    return row


def _kept_answer(remap: Remap, row: dict[str, Any]) -> dict[str, Any]:
    """An API write's kept answer (replayed for its Idempotency-Key) names ids."""
    try:
        answer = json.loads(row["response"])
    except ValueError:
        return row
    row["response"] = json.dumps(_json_ids(remap, answer))
    return row


def _without_waiting_text(_remap: Remap, row: dict[str, Any]) -> dict[str, Any]:
    """A conversation is copied before its messages, so the text it waits on has no new id
    yet; `_restore_conversations` sets it."""
    return {**row, "last_reply_id": None}


def _search(remap: Remap, row: dict[str, Any]) -> dict[str, Any] | None:
    """The search index's key is a message's id, or minus its conversation's (its caller's
    line); an entry whose row is gone is left out."""
    rowid = int(row["rowid"])
    if rowid > 0:
        new = remap.new("messages", rowid)
    else:
        caller_line = remap.new("conversations", -rowid)
        new = None if caller_line is None else -caller_line
    conversation = remap.new("conversations", row["conversation_id"])
    if new is None or conversation is None:
        return None
    row["rowid"], row["conversation_id"] = new, conversation
    return row


_CLAIMED = {"claimed_by": "daemons"}

# Every table of the store, parents before the rows that refer to them.
TABLES: tuple[Table, ...] = (
    Table("daemons", identity=True,
          why="claimers: every claim's claimed_by names one (no foreign key)"),
    Table("conversations", identity=True, rewrite=_without_waiting_text,
          why="version and state_version put back after the rows whose insert bumps them "
              "(outcomes, contact_classes triggers); last_reply_id (a message id without a "
              "key) set once the messages have their ids"),
    Table("messages", identity=True, refs={"conversation_id": "conversations"},
          declared=("conversation_id",)),
    Table("calls", identity=True, refs={"conversation_id": "conversations",
                                        "message_id": "messages"},
          declared=("conversation_id",), why="message_id holds a message id without a key"),
    Table("outbox", identity=True, refs={"message_id": "messages", **_CLAIMED},
          declared=("message_id",)),
    Table("alerts", identity=True, refs={"conversation_id": "conversations",
                                         "message_id": "messages", **_CLAIMED},
          declared=("conversation_id", "message_id")),
    Table("notices", identity=True, refs=dict(_CLAIMED)),
    Table("reply_tokens", refs={"conversation_id": "conversations"},
          declared=("conversation_id",)),
    Table("assignments", identity=True, refs={"conversation_id": "conversations"},
          declared=("conversation_id",)),
    Table("outcomes", identity=True, refs={"conversation_id": "conversations"},
          declared=("conversation_id",)),
    Table("escalations", refs={"message_id": "messages"}, declared=("message_id",)),
    Table("suppressions"),
    Table("unroutable_texts", identity=True),
    Table("selftests", identity=True, refs=dict(_CLAIMED)),
    Table("incidents", identity=True, refs={"opened_by": "daemons"},
          why="opened_by names the daemon that opened it (no foreign key)"),
    Table("web_users"),
    Table("web_sessions"),
    Table("used_links"),
    Table("signin_failures"),
    Table("notes", identity=True, refs={"conversation_id": "conversations"},
          declared=("conversation_id",)),
    Table("conversation_search", rewrite=_search,
          why="rowid is a message id or minus a conversation id"),
    Table("contact_classes"),
    Table("conversation_turns"),
    Table("monthly_scorecards"),
    Table("events", identity=True, rewrite=_event,
          why="order_key and body name conversation, message, run and media ids"),
    Table("event_deliveries", identity=True, refs={"event": "events", **_CLAIMED},
          declared=("event",), rewrite=_delivery, why="order_key names a conversation id"),
    Table("api_tokens", identity=True),
    Table("api_idempotency", refs={"token_id": "api_tokens"}, declared=("token_id",),
          rewrite=_kept_answer, why="a kept answer's JSON names ids"),
    Table("media", identity=True, refs={"message_id": "messages", **_CLAIMED},
          declared=("message_id",), why="its files are named by digest, not by id"),
    Table("consent_ledger", identity=True, rewrite=_ledger,
          why="append-only: inserted once, in order; detail names message and outbox ids"),
    Table("owner_alert_texts", refs={"message_id": "messages",
                                     "conversation_id": "conversations"},
          declared=("message_id", "conversation_id")),
    Table("owner_answers", refs={"message_id": "messages"}, declared=("message_id",)),
    Table("push_subscriptions", identity=True),
    Table("push_messages", identity=True, refs={"subscription_id": "push_subscriptions",
                                                **_CLAIMED},
          declared=("subscription_id",), rewrite=_push,
          why="ref names a message id (escalations); payload a conversation id"),
    Table("owner_alert_channels"),
    # After events: its cursors are mapped through their new ids.
    Table("progress", rewrite=_progress,
          why="the webhook/CRM and push cursors are event ids"),
    Table("intake_facts", identity=True, refs={"conversation_id": "conversations",
                                               "message_id": "messages"},
          declared=("conversation_id", "message_id")),
)

# Tables of the file not copied: the schema's own bookkeeping (the target has its own), and
# the keys that sign links over ids (made anew on the target: see the module's docstring).
NOT_COPIED = {"written_by": "the target keeps its own schema's record",
              "web_keys": "link keys sign old ids: made anew, so old links are refused",
              "console_sessions": "the MSP console's: its admins sign in to the fleet's anew"}


@dataclass
class Copied:
    """One table's move: rows in the file, rows written for the company, rows left out."""

    table: str
    source: int
    copied: int
    note: str = ""


@dataclass
class Moved:
    """What `migrate` did: the company's id in the target and each table's rows."""

    company_id: int
    tables: list[Copied]
    media: list[str] = field(default_factory=list)  # what became of the files, in lines


def source_tables(db: sqlite3.Connection) -> set[str]:
    """The file's tables, less SQLite's own and the search index's FTS5 shadow tables."""
    names = {row[0] for row in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
    return {n for n in names if not n.startswith("conversation_search_")}


def open_source(path: Path) -> sqlite3.Connection:
    """The SQLite file, read in one snapshot, refused unless at this textback's schema."""
    if not Path(path).is_file():
        raise MigrationRefused(f"{path}: no such SQLite file")
    # Read and write mode, though it only reads: a read-only connection cannot always read a
    # file in WAL mode (its -shm index).
    db = sqlite3.connect(Path(path), isolation_level=None)
    db.row_factory = sqlite3.Row
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        known = len(sqlite_migrations.MIGRATIONS)
        if version > known:
            writer = None
            if "written_by" in source_tables(db):
                row = db.execute("SELECT textback_version FROM written_by"
                                 " WHERE schema_version = ?", (version,)).fetchone()
                writer = row[0] if row else None
            raise MigrationRefused(
                f"{downgrade_refused(str(path), version, writer, known)} Move it with the "
                f"migrate-store of the textback that wrote it.")
        if version < known:
            raise MigrationRefused(
                f"{path} has schema {version}; this textback ({textback_version()}) moves "
                f"schema {known} only. Run this textback against it first (start `textback "
                f"run` once, or any command such as `textback status`, which brings the file "
                f"to schema {known}), stop it, then move it.")
        missing = source_tables(db) - {t.name for t in TABLES} - set(NOT_COPIED)
        if missing:  # a table this code does not know would be lost: never silently
            raise MigrationRefused(f"{path} holds tables this textback cannot move: "
                                   f"{', '.join(sorted(missing))}")
        db.execute("BEGIN")  # one snapshot for the whole copy
    except BaseException:
        db.close()
        raise
    return db


def connect_target(url: str, password: str | None) -> psycopg.Connection:
    try:
        return psycopg.connect(url, connect_timeout=10, autocommit=True,
                               **({"password": password} if password else {}))
    except psycopg.OperationalError as exc:
        raise MigrationRefused(f"cannot connect to PostgreSQL at {redacted(url)}: "
                               f"{str(exc).strip()}") from None


def target_schema(connection: psycopg.Connection, url: str) -> int:
    """The target's schema version; refuse one this textback does not have."""
    known = len(pg_migrations.MIGRATIONS)
    if connection.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
        return 0
    version = connection.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version"
                                 ).fetchone()[0]
    if version > known:
        raise MigrationRefused(str(downgrade_refused(redacted(url), version, None, known)))
    return version


def company_rows(connection: psycopg.Connection, company_id: int) -> int:
    """How many rows of any table the company holds (read in the caller's transaction)."""
    connection.execute("SELECT set_config('textback.company', %s, true)", (str(company_id),))
    return sum(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
               for table in pg_migrations.CURRENT_COMPANY_TABLES)


def _rows(db: sqlite3.Connection, table: Table) -> tuple[list[str], list[dict[str, Any]]]:
    if table.name == "conversation_search":
        cursor = db.execute("SELECT rowid, conversation_id, text FROM conversation_search"
                            " ORDER BY rowid")
    else:
        order = "id" if table.identity else "rowid"
        cursor = db.execute(f"SELECT * FROM {table.name} ORDER BY {order}")
    columns = [d[0] for d in cursor.description]
    return columns, [dict(zip(columns, row)) for row in cursor]


def _new_ids(connection: psycopg.Connection, table: str, count: int) -> list[int]:
    """`count` new ids from `table`'s identity sequence, ascending."""
    if not count:
        return []
    return sorted(row[0] for row in connection.execute(
        "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
        (table, count)))


def _copy_table(connection: psycopg.Connection, db: sqlite3.Connection, table: Table,
                remap: Remap) -> Copied:
    columns, rows = _rows(db, table)
    if table.identity:
        remap.ids[table.name] = dict(zip((row["id"] for row in rows),
                                         _new_ids(connection, table.name, len(rows))))
    written = []
    for row in rows:
        if table.identity:
            row["id"] = remap.ids[table.name][row["id"]]
        for column, parent in table.refs.items():
            if row[column] is not None:
                new = remap.new(parent, row[column])
                if new is None and column in table.declared:
                    raise MigrationRefused(f"{table.name} row names {parent} {row[column]}, "
                                           "which the file does not hold (a broken key)")
                row[column] = new
        if table.rewrite is not None:
            row = table.rewrite(remap, row)
        if row is not None:
            written.append(row)
    if written:
        names = ", ".join(f'"{column}"' for column in columns)
        marks = ", ".join(["%s"] * len(columns))
        with connection.cursor() as cursor:
            cursor.executemany(f"INSERT INTO {table.name} ({names}) VALUES ({marks})",
                               [[row[c] for c in columns] for row in written])
    left_out = len(rows) - len(written)
    undeclared = [c for c in table.refs if c not in table.declared and c not in table.why]
    notes = ([table.why] + [f"{', '.join(undeclared)}: ids without a key"] * bool(undeclared)
             + [f"{left_out} left out: the rows they index were pruned"] * bool(left_out))
    return Copied(table.name, len(rows), len(written), "; ".join(n for n in notes if n))


def migrate(source: Path, url: str, password: str | None, company: str, company_name: str = "",
            *, media: Callable[[set[str]], list[str]] | None = None) -> Moved:
    """Copy the SQLite store at `source` into the PostgreSQL database at `url` as the new
    company `company`, in one transaction; refuse (MigrationRefused, nothing written) a file
    in use by a daemon, at another schema, or a target that already knows the company.

    `media` is given the digests of the files the media rows name, once the file is locked
    and before the database is written (the files go first: a row never names a file not
    yet copied), and returns lines saying what became of them. An empty (or older) database
    is first given the current schema, as `textback run` would, in a commit of its own."""
    if not Path(source).is_file():
        raise MigrationRefused(f"{source}: no such SQLite file")
    try:  # held to the end, so no daemon starts on the file while it is read
        lock = runlock.acquire(Path(source))
    except runlock.AlreadyRunning as exc:
        raise MigrationRefused(f"{exc} Stop it (systemctl stop textback) before the move: "
                               "what it writes meanwhile would not be moved.") from None
    try:
        db = open_source(source)
    except BaseException:
        lock.release()
        raise
    try:
        with connect_target(url, password) as connection:
            version = target_schema(connection, url)
            if version:
                with connection.transaction():  # refused before any file is copied
                    _refuse_known(connection, company, url)
            lines = media(_digests(db)) if media is not None else []
            if version < len(pg_migrations.MIGRATIONS):
                _bring_schema_up(url, password)
            with connection.transaction():
                company_id = _enrol(connection, company, company_name, url)
                connection.execute("SELECT set_config('textback.company', %s, true)",
                                   (str(company_id),))
                # No event-id lock (textback/store/postgres/claimers.py) is taken, unlike an
                # event insert's: the readers whose cursors it guards read their own company's
                # events alone, and this company has no daemon yet, while holding it for the
                # whole copy would stall every other company's webhook and push fan-out.
                remap, copied = Remap(), []
                for table in TABLES:
                    copied.append(_copy_table(connection, db, table, remap))
                _restore_conversations(connection, db, remap)
                for name, why in NOT_COPIED.items():
                    count = db.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0]
                    copied.append(Copied(name, count, 0, f"not copied: {why}"))
            return Moved(company_id, copied, lines)
    except psycopg.Error as exc:
        raise MigrationRefused(
            f"the move failed and was rolled back, so the database was left as it was: "
            f"{str(exc).strip()}") from None
    finally:
        db.close()
        lock.release()


def _bring_schema_up(url: str, password: str | None) -> None:
    """An empty (or older) target: the store's own migration, as `textback run` would."""
    import asyncio

    from textback.store.postgres.connection import migrate as migrate_schema

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(
                url, autocommit=True, connect_timeout=10,
                **({"password": password} if password else {})) as connection:
            await migrate_schema(connection, redacted(url))

    asyncio.run(run())


def _enrol(connection: psycopg.Connection, company: str, name: str, url: str) -> int:
    """The new company's row; refused when the database already has one of that name."""
    row = connection.execute(
        "INSERT INTO companies (slug, name, created_at) VALUES (%s, %s, %s)"
        " ON CONFLICT (slug) DO NOTHING RETURNING id", (company, name, time.time())).fetchone()
    if row is not None:
        return row[0]
    _refuse_known(connection, company, url)
    raise MigrationRefused(f"the company {company!r} was added meanwhile")


def _refuse_known(connection: psycopg.Connection, company: str, url: str) -> None:
    """Refuse a company the database already has (in the caller's transaction)."""
    row = connection.execute("SELECT id FROM companies WHERE slug = %s", (company,)).fetchone()
    if row is None:
        return
    held = company_rows(connection, row[0])
    raise MigrationRefused(
        f"{redacted(url)} already holds the company {company!r} ({held} row(s)): "
        f"migrate-store moves a store into a new company only, and nothing was written. "
        f"Choose another --company, or, if that company is an earlier try of this move, drop "
        f"its rows and its companies row first.")


def _restore_conversations(connection: psycopg.Connection, db: sqlite3.Connection,
                           remap: Remap) -> None:
    """Each conversation's live-update and state versions as the file has them (inserting an
    outcome or a contact's class bumps them, by triggers, which the copy must not), and the
    new id of the text it waits on."""
    rows = [(version, state, remap.new("messages", waiting), remap.new("conversations", old))
            for old, version, state, waiting in
            db.execute("SELECT id, version, state_version, last_reply_id FROM conversations")]
    if rows:
        with connection.cursor() as cursor:
            cursor.executemany("UPDATE conversations SET version = %s, state_version = %s,"
                               " last_reply_id = %s WHERE id = %s", rows)


def count_problems(moved: Moved, counts: list[tuple[str, int, int]]) -> list[str]:
    """Each table whose rows, counted after the move (`count_rows`), are not what it copied."""
    copied = {c.table: c for c in moved.tables}
    return [f"{table}: {in_file} in the file, {copied[table].copied} copied, {in_target} in "
            "the target" for table, in_file, in_target in counts
            if in_file != copied[table].source or in_target != copied[table].copied]


def count_rows(source: Path, url: str, password: str | None,
               company_id: int) -> list[tuple[str, int, int]]:
    """Each table's rows in the file and the company's rows in the target: (table, file,
    target), read after the move, for the verification."""
    db = sqlite3.connect(Path(source))
    try:
        with connect_target(url, password) as connection:
            connection.execute("SELECT set_config('textback.company', %s, false)",
                               (str(company_id),))
            counts = []
            for table in (*(t.name for t in TABLES), *NOT_COPIED):
                in_file = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                in_target = (connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                             if table in pg_migrations.CURRENT_COMPANY_TABLES else 0)
                counts.append((table, in_file, in_target))
            return counts
    finally:
        db.close()


def _digests(db: sqlite3.Connection) -> set[str]:
    """Every file the media rows name (originals and renditions), by SHA-256."""
    return {row[0] for row in db.execute(
        "SELECT sha256 FROM media WHERE sha256 IS NOT NULL UNION"
        " SELECT rendition_sha256 FROM media WHERE rendition_sha256 IS NOT NULL")}
