"""The rows the store keeps instead of counting (waiting texts, each number's conversations)
say what counting the history says, whether kept call by call or filled in by the migration."""

from __future__ import annotations

import re
import sqlite3
import time

from lab.history import BUSINESS_NUMBERS, build_history
from textback.store import MIGRATIONS, Store

KEPT = next(script for script in MIGRATIONS if "CREATE TABLE waiting_texts" in script)


def _counted(db: sqlite3.Connection) -> tuple[list, list]:
    """Waiting texts and conversations per number, counted from the history itself."""
    waiting = db.execute(
        "SELECT c.id, m.id FROM conversations c JOIN messages m ON m.id = (SELECT id FROM messages"
        " WHERE conversation_id = c.id AND direction = 'in' ORDER BY created_at DESC, id DESC"
        " LIMIT 1) WHERE NOT EXISTS (SELECT 1 FROM messages o WHERE o.conversation_id = c.id"
        " AND o.direction = 'out' AND o.kind = 'owner' AND o.created_at >= m.created_at)"
        " ORDER BY c.id").fetchall()
    turns = db.execute("SELECT business_number, COUNT(*) FROM conversations"
                       " GROUP BY business_number ORDER BY 1").fetchall()
    return waiting, turns


def _kept(db: sqlite3.Connection) -> tuple[list, list]:
    return (db.execute("SELECT conversation_id, message_id FROM waiting_texts ORDER BY 1").fetchall(),
            db.execute("SELECT business_number, started FROM conversation_turns ORDER BY 1").fetchall())


async def test_kept_rows_follow_every_text_and_answer(tmp_path):
    store = await Store.open(tmp_path / "t.db")
    try:
        await build_history(store, 600, time.time() - 3600)
        waiting = await store.waiting_replies(time.time())
        turns = [await store.conversations_started(n) for n in BUSINESS_NUMBERS]
    finally:
        await store.close()
    db = sqlite3.connect(tmp_path / "t.db")
    counted = _counted(db)
    assert counted[0] and _kept(db) == counted
    open_ids = {row[0] for row in db.execute("SELECT id FROM conversations WHERE status = 'open'")}
    assert sorted((w["conversation_id"], w["message_id"]) for w in waiting) == [
        row for row in counted[0] if row[0] in open_ids]
    assert turns == [n for _, n in counted[1]]


async def test_a_store_from_before_gets_them_filled_in(tmp_path):
    path = tmp_path / "t.db"
    store = await Store.open(path)
    try:
        await build_history(store, 600, time.time() - 3600)
        before = (await store.waiting_replies(time.time()),
                  [await store.conversations_started(n) for n in BUSINESS_NUMBERS])
    finally:
        await store.close()
    db = sqlite3.connect(path, isolation_level=None)
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for index in re.findall(r"CREATE INDEX (\w+)", KEPT):
        db.execute(f"DROP INDEX {index}")
    db.execute("DROP TABLE waiting_texts")
    db.execute("DROP TABLE conversation_turns")
    db.execute("DROP TABLE IF EXISTS sqlite_stat1")
    db.execute(f"PRAGMA user_version = {MIGRATIONS.index(KEPT)}")
    db.close()

    store = await Store.open(path)  # migrates: the kept rows filled in from the history
    try:
        after = (await store.waiting_replies(time.time()),
                 [await store.conversations_started(n) for n in BUSINESS_NUMBERS])
    finally:
        await store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == version
    assert db.execute("SELECT COUNT(*) FROM sqlite_stat1").fetchone()[0] > 0  # analyzed at once
    assert after == before and before[0]
