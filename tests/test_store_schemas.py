"""One migration history, two dialects: the schemas SQLite's and PostgreSQL's lists build are
the same tables, columns (types normalised), keys, checks, foreign keys, indexes (partial ones
with the same condition) and triggers. What only one backend can have is named here, and why.

Companies (migration 30) are PostgreSQL's alone, where one database holds many: its
`companies` table, a `company_id` column on every other table but the schema's bookkeeping
(NOT NULL, defaulting to the session's company, a key of `companies`), row-level security on
each, and the keys that named one thing of one company made per company; since migration 36,
each reference between two company tables names the company too (FOREIGN KEY (company_id, x)
REFERENCES parent (company_id, id), through a UNIQUE (company_id, id) on the parent). A SQLite
file is one company's store, so it has none of them; the comparison takes them out of
PostgreSQL's schema after checking each is exactly as said."""

from __future__ import annotations

import re
import sqlite3

import psycopg

from textback.store import Store
from textback.store.postgres import PostgresStore

TYPES = {"integer": "integer", "bigint": "integer", "real": "real", "double precision": "real",
         "text": "text", "blob": "bytes", "bytea": "bytes", "": "any"}
# SQLite's FTS5 table keeps its rows in shadow tables, and its planner's statistics in
# sqlite_stat1 (made by ANALYZE, which `PRAGMA optimize` may run as a new store closes);
# PostgreSQL's search index is a table with a trigram GIN index (no SQLite equivalent) and
# the migrations' version is a table.
SQLITE_ONLY_TABLES = re.compile(r"conversation_search_(data|idx|content|docsize|config)$"
                                r"|sqlite_stat\d$")
POSTGRES_ONLY_TABLES = {"schema_version", "companies"}
# Tables with no company: the schema's version and which textback wrote it.
NO_COMPANY_TABLES = {"written_by"}
# The keys (table, columns) that are per company on PostgreSQL: company_id added last.
PER_COMPANY_KEYS = {
    ("conversations", ("caller", "business_number")), ("calls", ("linkedid",)),
    ("suppressions", ("number",)), ("progress", ("name",)), ("web_users", ("owner_id",)),
    ("web_keys", ("name",)), ("contact_classes", ("number",)),
    ("conversation_turns", ("business_number",)), ("monthly_scorecards", ("month", "business_number")),
    ("push_subscriptions", ("endpoint",)), ("owner_alert_channels", ("owner_id",)),
    ("incidents", ("kind", "pbx")), ("unroutable_texts", ("gateway", "gateway_id")),
    ("console_sessions", ("token_digest",)),
}
POSTGRES_ONLY_INDEXES = {"conversation_search_text"}
POSTGRES_ONLY_TRIGGERS = {"consent_ledger_no_truncate"}  # SQLite has no TRUNCATE
# A fleet's wake-ups (LISTEN/NOTIFY): SQLite has one daemon and no NOTIFY.
POSTGRES_ONLY_TRIGGERS |= {f"{table}_wake" for table in ("outbox", "alerts", "notices", "events",
                                                          "media")}


def condition(text: str | None) -> str:
    """A partial index's WHERE, as both write it: no casts, parentheses or case."""
    if not text:
        return ""
    text = re.sub(r"::[a-z ]+", "", text)
    return " ".join(text.replace("(", " ").replace(")", " ").lower().split())


def literals(check: str) -> tuple[str, ...]:
    return tuple(sorted(re.findall(r"'([^']*)'", check)))


def sqlite_schema(path) -> dict:
    db = sqlite3.connect(path)
    tables, indexes, triggers = {}, {}, set()
    for name, sql in db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"):
        if SQLITE_ONLY_TABLES.match(name):
            continue
        columns = {row[1]: (TYPES[row[2].lower()], bool(row[3] or row[5]),
                            condition(row[4]), bool(row[5]))
                   for row in db.execute(f"PRAGMA table_info('{name}')")}
        if sql.startswith("CREATE VIRTUAL TABLE"):  # FTS5: rowid is its key, its columns untyped
            columns = {"rowid": ("integer", True, "", True)} | {
                column: ("text" if column == "text" else "integer", True, "", False)
                for column in columns}
        foreign = {(row[3], row[2], row[4], row[6]) for row in
                   db.execute(f"PRAGMA foreign_key_list('{name}')")}
        checks = {literals(m) for m in re.findall(r"CHECK \(([^)]*\))", sql)}
        unique = set()
        for index in db.execute(f"PRAGMA index_list('{name}')"):
            cols = tuple(r[2] for r in db.execute(f"PRAGMA index_info('{index[1]}')"))
            if index[3] == "u":
                unique.add((cols, "u"))
        primary = sorted((row[5], row[1]) for row in db.execute(f"PRAGMA table_info('{name}')")
                         if row[5])
        if primary:
            unique.add((tuple(column for _, column in primary), "pk"))
        if sql.startswith("CREATE VIRTUAL TABLE"):
            unique.add((("rowid",), "pk"))
        for index_name, table, where in db.execute(
                "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index'"
                " AND tbl_name = ? AND sql IS NOT NULL", (name,)):
            cols = tuple(r[2] for r in db.execute(f"PRAGMA index_info('{index_name}')"))
            part = where.split(" WHERE ", 1)[1] if " WHERE " in where else ""
            indexes[index_name] = (table, cols, "UNIQUE" in where.split(" ON ")[0], condition(part))
        tables[name] = {"columns": columns, "foreign": foreign, "checks": checks,
                        "unique": unique}
    triggers = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    return {"tables": tables, "indexes": indexes, "triggers": triggers}


COMPANY_POLICY = "(company_id = (current_setting('textback.company'::text))::bigint)"


def per_company(table: str, cols: tuple[str, ...], seen: set) -> tuple[str, ...]:
    """A key's columns without the company_id that ends a per-company key (noted in `seen`)."""
    if cols[-1:] == ("company_id",):
        seen.add((table, cols[:-1]))
        return cols[:-1]
    assert "company_id" not in cols, (table, cols)
    return cols


def reference(table: str, definition: str) -> tuple[str, str, str, str]:
    """A foreign key as SQLite's list gives it (column, parent, parent's column, ON DELETE),
    without the company_id that a reference between two company tables names first on both
    sides; one that does not name it fails here."""
    match = re.fullmatch(r"FOREIGN KEY \(([\w, ]+)\) REFERENCES (\w+)\(([\w, ]+)\)"
                         r"(?: ON DELETE (\w+( \w+)?))?", definition)
    assert match, (table, definition)
    columns, parent, keys = match[1].split(", "), match[2], match[3].split(", ")
    if parent != "companies" and table not in NO_COMPANY_TABLES:
        assert columns[0] == keys[0] == "company_id", (table, definition)
        columns, keys = columns[1:], keys[1:]
    [column], [key] = columns, keys
    return column, parent, key, match[4] or "NO ACTION"


def postgres_schema(url: str) -> dict:
    per_company_keys: set = set()
    parents, reference_keys = set(), set()
    with psycopg.connect(url) as db:
        tables, indexes = {}, {}
        names = [r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for name in names:
            if name in POSTGRES_ONLY_TABLES:
                continue
            keys = {r[0] for r in db.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
                " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
                (name,))}
            columns = {r[0]: (TYPES[r[1]], r[2] == "NO", condition(r[3]), r[0] in keys)
                       for r in db.execute(
                "SELECT column_name, data_type, is_nullable, column_default FROM"
                " information_schema.columns WHERE table_schema = 'public' AND table_name = %s",
                (name,))}
            foreign, checks, unique = set(), set(), set()
            for kind, definition, cols in db.execute(
                    "SELECT c.contype, pg_get_constraintdef(c.oid), ARRAY(SELECT a.attname FROM"
                    " unnest(c.conkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON"
                    " a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o)"
                    " FROM pg_constraint c WHERE c.conrelid = %s::regclass", (name,)):
                if kind == "f":
                    foreign.add(reference(name, definition))
                    parents.add(reference(name, definition)[1])
                elif kind == "u" and cols == ["company_id", "id"]:  # what a reference names
                    reference_keys.add(name)
                elif kind == "c":
                    checks.add(literals(definition))
                elif kind in ("u", "p"):
                    unique.add((tuple(cols), {"u": "u", "p": "pk"}[kind]))
            if name not in NO_COMPANY_TABLES:
                company = columns.pop("company_id")
                assert company[:3] == ("integer", True, "current_setting 'textback.company'"), name
                foreign.remove(("company_id", "companies", "id", "NO ACTION"))
                unique = {(per_company(name, cols, per_company_keys), kind)
                          for cols, kind in unique}
                assert db.execute("SELECT relrowsecurity AND relforcerowsecurity FROM pg_class"
                                  " WHERE oid = %s::regclass", (name,)).fetchone()[0], name
                assert db.execute(
                    "SELECT qual, with_check FROM pg_policies WHERE tablename = %s",
                    (name,)).fetchall() == [(COMPANY_POLICY, COMPANY_POLICY)], name
            tables[name] = {"columns": columns, "foreign": foreign, "checks": checks,
                            "unique": unique}
        for name, table, definition in db.execute(
                "SELECT indexname, tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'"
                " AND indexname NOT IN (SELECT conname FROM pg_constraint)"):
            if name in POSTGRES_ONLY_INDEXES:
                continue
            cols = tuple(c.strip() for c in re.search(r"\(([^)]*)\)", definition)[1].split(","))
            part = definition.split(" WHERE ", 1)[1] if " WHERE " in definition else ""
            if definition.startswith("CREATE UNIQUE"):
                cols = per_company(table, cols, per_company_keys)
            indexes[name] = (table, cols, definition.startswith("CREATE UNIQUE"), condition(part))
        triggers = {r[0] for r in db.execute(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")} - POSTGRES_ONLY_TRIGGERS
    assert per_company_keys == PER_COMPANY_KEYS
    assert reference_keys == parents - {"companies"}
    return {"tables": tables, "indexes": indexes, "triggers": triggers}


async def test_both_migration_lists_build_the_same_schema(tmp_path, postgres_database):
    await (await Store.open(tmp_path / "t.db")).close()
    await (await PostgresStore.open(postgres_database)).close()
    sqlite, postgres = sqlite_schema(tmp_path / "t.db"), postgres_schema(postgres_database)
    assert sorted(sqlite["tables"]) == sorted(postgres["tables"])
    for table in sqlite["tables"]:
        for part in ("columns", "foreign", "checks", "unique"):
            assert sqlite["tables"][table][part] == postgres["tables"][table][part], (table, part)
    assert sqlite["indexes"] == postgres["indexes"]
    assert sqlite["triggers"] == postgres["triggers"]
    assert len(sqlite["tables"]) > 30 and len(sqlite["indexes"]) > 40  # the comparison saw them
