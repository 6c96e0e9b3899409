"""What the store keeps instead of counting (who waits for an answer, each number's
conversations) says what counting the history says, whether kept call by call or filled in by
the migration."""

from __future__ import annotations

import sqlite3
import time

import psycopg

from lab.history import BUSINESS_NUMBERS, Shape, build_history
from textback.store import Notice, Store
from textback.store import migrations as sqlite_migrations
from textback.store.postgres import migrations as pg_migrations
from tests.conftest import open_store_at

TURNS = next(script for script in sqlite_migrations.MIGRATIONS if "CREATE TABLE conversation_turns" in script)
# Each conversation's latest homeowner text while it waits (textback/core/waiting.py), counted
# from the history itself: no owner answer after it, no outcome that closed the conversation
# since, no opt-out of the caller since.
COUNTED_WAITING = (
    "SELECT c.id, m.id FROM conversations c JOIN messages m ON m.id = (SELECT id FROM messages"
    " WHERE conversation_id = c.id AND direction = 'in' ORDER BY created_at DESC, id DESC"
    " LIMIT 1) WHERE NOT EXISTS (SELECT 1 FROM messages o WHERE o.conversation_id = c.id"
    " AND o.direction = 'out' AND o.kind = 'owner' AND o.created_at >= m.created_at)"
    " AND NOT EXISTS (SELECT 1 FROM outcomes d WHERE d.conversation_id = c.id"
    " AND d.stage IN ('won', 'lost', 'spam') AND d.at >= m.created_at)"
    " AND NOT EXISTS (SELECT 1 FROM suppressions s WHERE s.number = c.caller"
    " AND s.since >= m.created_at) ORDER BY c.id")
KEPT_WAITING = "SELECT id, last_reply_id FROM conversations WHERE unanswered = 1 ORDER BY id"
WAITING_COLUMNS = ("SELECT id, status, unanswered, waiting_since, last_reply_id FROM conversations"
                   " ORDER BY id")


def _counted(db: sqlite3.Connection) -> tuple[list, list]:
    """Waiting conversations and conversations per number, counted from the history itself."""
    turns = db.execute("SELECT business_number, COUNT(*) FROM conversations"
                       " GROUP BY business_number ORDER BY 1").fetchall()
    return db.execute(COUNTED_WAITING).fetchall(), turns


def _kept(db: sqlite3.Connection) -> tuple[list, list]:
    return (db.execute(KEPT_WAITING).fetchall(),
            db.execute("SELECT business_number, started FROM conversation_turns ORDER BY 1").fetchall())


async def test_kept_rows_follow_every_text_answer_and_escalation(tmp_path):
    store = await Store.open(tmp_path / "t.db")
    try:
        await build_history(store, 600, time.time() - 3600, Shape(opt_outs=0.1))
        first, second, *_ = await store.waiting_replies(time.time())
        notice = Notice("Boss", "boss@example.com", "Unanswered", "body")
        for message_id, level in ((first["message_id"], 1), (second["message_id"], 1),
                                  (second["message_id"], 2)):
            await store.record_escalation(message_id, level, "boss", notice)
        waiting = await store.waiting_replies(time.time())
        to_escalate = {w["message_id"] for w in await store.waiting_replies(time.time(), None, 1)}
        to_remind = {w["message_id"] for w in await store.waiting_replies(time.time(), None, 2)}
        turns = [(await store.sender_facts("+12125550123", n)).turn for n in BUSINESS_NUMBERS]
    finally:
        await store.close()
    db = sqlite3.connect(tmp_path / "t.db")
    counted = _counted(db)
    assert counted[0] and _kept(db) == counted
    # The history's outcomes closed some conversations (won), and some callers opted out.
    assert db.execute("SELECT COUNT(*) FROM outcomes WHERE stage = 'won'").fetchone()[0]
    assert db.execute("SELECT COUNT(*) FROM suppressions").fetchone()[0]
    assert sorted((w["conversation_id"], w["message_id"]) for w in waiting) == counted[0]
    assert {(w["message_id"], w["escalated"]) for w in waiting} >= {
        (first["message_id"], 1), (second["message_id"], 2)}
    assert turns == [n for _, n in counted[1]]
    every = {w["message_id"] for w in waiting}
    assert to_escalate == every - {first["message_id"], second["message_id"]}
    assert to_remind == every - {second["message_id"]}


async def test_the_migration_fills_the_turns_in_from_the_history(tmp_path):
    """A store from before they were kept: the migration's own INSERT fills them in."""
    store = await Store.open(tmp_path / "t.db")
    try:
        await build_history(store, 600, time.time() - 3600)
    finally:
        await store.close()
    db = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    kept = _kept(db)
    db.execute("DELETE FROM conversation_turns")
    for statement in filter(str.strip, TURNS.split(";")):
        if statement.strip().startswith("INSERT INTO conversation_turns"):
            db.execute(statement)
    assert _kept(db) == kept == _counted(db) and kept[1]


WAITING_MIGRATION = 34  # the one record of who waits (waiting_texts dropped)

# What a store of schema 33 held: the old waiting_texts table, no last_reply_id, and
# `unanswered` set by the old rule alone (a homeowner's text after the last owner answer),
# whether the conversation was since closed or its caller opted out.
_BEFORE_34 = (
    "ALTER TABLE conversations DROP COLUMN last_reply_id",
    "UPDATE conversations SET unanswered = 1, waiting_since = last_reply_at WHERE unanswered = 0"
    " AND last_reply_at > COALESCE(last_answer_at, 0)",
    "CREATE TABLE waiting_texts (conversation_id INTEGER PRIMARY KEY, message_id INTEGER NOT"
    " NULL, escalations INTEGER NOT NULL DEFAULT 0)",
)


async def test_the_migration_builds_who_waits_from_the_rows_before_it(store_location,
                                                                      monkeypatch):
    """From a store of the schema before it, on each backend: the same conversations wait,
    since the same time, for the same text, as if they had been kept call by call."""
    store = await open_store_at(store_location)
    try:
        await build_history(store, 500, time.time() - 3600)
        kept = [tuple(row) for row in await store._all(WAITING_COLUMNS)]
    finally:
        await store.close()
    if isinstance(store_location, str):  # PostgreSQL, as the tables' owner
        with psycopg.connect(store_location) as db:
            db.execute("SELECT set_config('textback.company', id::text, true) FROM companies"
                       " WHERE slug = 'default'")
            for statement in _BEFORE_34:
                db.execute(statement)
            db.execute("UPDATE schema_version SET version = %s", (WAITING_MIGRATION - 1,))
            before = db.execute("SELECT id FROM conversations WHERE unanswered = 1").fetchall()
    else:
        db = sqlite3.connect(store_location, isolation_level=None)
        for statement in _BEFORE_34:
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {WAITING_MIGRATION - 1}")
        before = db.execute("SELECT id FROM conversations WHERE unanswered = 1").fetchall()
        db.close()
    assert len(before) > len([row for row in kept if row[2]])  # the old rule kept more waiting
    # Reopened, the store runs migration 34 alone (those after it stay as they were applied:
    # they do not touch who waits).
    with monkeypatch.context() as patched:
        for module in (sqlite_migrations, pg_migrations):
            patched.setattr(module, "MIGRATIONS", module.MIGRATIONS[:WAITING_MIGRATION])
        store = await open_store_at(store_location)
        try:
            assert [tuple(row) for row in await store._all(WAITING_COLUMNS)] == kept
            assert not await store._all(
                "SELECT 1 FROM information_schema.tables WHERE table_name = 'waiting_texts'"
                if isinstance(store_location, str) else
                "SELECT 1 FROM sqlite_master WHERE name = 'waiting_texts'")
        finally:
            await store.close()


async def test_a_store_that_holds_rows_is_analyzed_as_it_migrates(tmp_path):
    db = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    db.executescript(sqlite_migrations.MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    db.executemany(
        "INSERT INTO calls (linkedid, business_number, caller_raw, started_at, ended_at, outcome,"
        " reason) VALUES (?, '+12125550100', 'x', ?, ?, 'missed', 'no_answer')",
        [(f"call-{i}", i, i + 10) for i in range(50)])
    db.close()
    store = await Store.open(tmp_path / "t.db")
    try:  # read before close: the statistics come from the migration, not the close
        stats = await store._all("SELECT idx FROM sqlite_stat1 WHERE tbl = 'calls'")
    finally:
        await store.close()
    assert "calls_started" in {row["idx"] for row in stats}
