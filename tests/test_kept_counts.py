"""The rows the store keeps instead of counting (waiting texts, each number's conversations)
say what counting the history says, whether kept call by call or filled in by the migration."""

from __future__ import annotations

import sqlite3
import time

from lab.history import BUSINESS_NUMBERS, build_history
from textback.store import MIGRATIONS, Notice, Store

KEPT = next(script for script in MIGRATIONS if "CREATE TABLE waiting_texts" in script)


def _counted(db: sqlite3.Connection) -> tuple[list, list]:
    """Waiting texts and conversations per number, counted from the history itself."""
    waiting = db.execute(
        "SELECT c.id, m.id, (SELECT COUNT(*) FROM escalations e WHERE e.message_id = m.id)"
        " FROM conversations c JOIN messages m ON m.id = (SELECT id FROM messages"
        " WHERE conversation_id = c.id AND direction = 'in' ORDER BY created_at DESC, id DESC"
        " LIMIT 1) WHERE NOT EXISTS (SELECT 1 FROM messages o WHERE o.conversation_id = c.id"
        " AND o.direction = 'out' AND o.kind = 'owner' AND o.created_at >= m.created_at)"
        " ORDER BY c.id").fetchall()
    turns = db.execute("SELECT business_number, COUNT(*) FROM conversations"
                       " GROUP BY business_number ORDER BY 1").fetchall()
    return waiting, turns


def _kept(db: sqlite3.Connection) -> tuple[list, list]:
    return (db.execute("SELECT conversation_id, message_id, escalations FROM waiting_texts"
                       " ORDER BY 1").fetchall(),
            db.execute("SELECT business_number, started FROM conversation_turns ORDER BY 1").fetchall())


async def test_kept_rows_follow_every_text_answer_and_escalation(tmp_path):
    store = await Store.open(tmp_path / "t.db")
    try:
        await build_history(store, 600, time.time() - 3600)
        first, second, *_ = await store.waiting_replies(time.time())
        notice = Notice("Boss", "boss@example.com", "Unanswered", "body")
        for message_id, level in ((first["message_id"], 1), (second["message_id"], 1),
                                  (second["message_id"], 2)):
            await store.record_escalation(message_id, level, "boss", notice)
        waiting = await store.waiting_replies(time.time())
        to_escalate = {w["message_id"] for w in await store.waiting_replies(time.time(), 1)}
        to_remind = {w["message_id"] for w in await store.waiting_replies(time.time(), 2)}
        turns = [(await store.sender_facts("+12125550123", n)).turn for n in BUSINESS_NUMBERS]
    finally:
        await store.close()
    db = sqlite3.connect(tmp_path / "t.db")
    counted = _counted(db)
    assert counted[0] and _kept(db) == counted
    open_ids = {row[0] for row in db.execute("SELECT id FROM conversations WHERE status = 'open'")}
    assert sorted((w["conversation_id"], w["message_id"], w["escalated"]) for w in waiting) == [
        row for row in counted[0] if row[0] in open_ids]
    assert turns == [n for _, n in counted[1]]
    every = {w["message_id"] for w in waiting}
    assert to_escalate == every - {first["message_id"], second["message_id"]}
    assert to_remind == every - {second["message_id"]}


async def test_the_migration_fills_them_in_from_the_history(tmp_path):
    """A store from before they were kept: the migration's own INSERTs fill them in."""
    store = await Store.open(tmp_path / "t.db")
    try:
        await build_history(store, 600, time.time() - 3600)
    finally:
        await store.close()
    db = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    kept = _kept(db)
    db.execute("DELETE FROM waiting_texts")
    db.execute("DELETE FROM conversation_turns")
    for statement in filter(str.strip, KEPT.split(";")):
        if statement.strip().startswith("INSERT"):
            db.execute(statement)
    assert _kept(db) == kept == _counted(db) and kept[0]


async def test_a_store_that_holds_rows_is_analyzed_as_it_migrates(tmp_path):
    db = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    db.executescript(MIGRATIONS[0])
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
