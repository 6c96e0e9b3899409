"""An older textback on a store a newer one migrated: it refuses, names both, writes nothing.
A migration that meets a row it cannot keep is refused the same way: the store stays as it was.
Either way `textback run` exits with the status systemd does not restart: a person must act."""

from __future__ import annotations

import hashlib
import importlib.metadata
import sqlite3
import subprocess
import sys

import pytest

from lab.configs import base_config, write_config
from textback.store import MIGRATIONS, Store, StoreTooNew, UpgradeRefused, migrations
from textback.unit import CONFIG_REFUSED_STATUS


def snapshot(directory) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


async def test_each_migration_records_the_textback_that_made_it(tmp_path):
    store = await Store.open(tmp_path / "t.db")
    await store.close()
    with sqlite3.connect(tmp_path / "t.db") as db:
        rows = db.execute("SELECT schema_version, textback_version FROM written_by").fetchall()
    assert rows == [(len(MIGRATIONS), importlib.metadata.version("textback"))]


async def test_a_newer_schema_is_refused_with_both_versions_and_nothing_written(tmp_path):
    path = tmp_path / "t.db"
    store = await Store.open(path)
    await store.close()
    newer = len(MIGRATIONS) + 1
    with sqlite3.connect(path) as db:  # what the next release's migration leaves behind
        db.execute("INSERT INTO written_by VALUES (?, '9.1.0', 0)", (newer,))
        db.execute(f"PRAGMA user_version = {newer}")
    db.close()
    before = snapshot(tmp_path)

    with pytest.raises(StoreTooNew) as refused:
        await Store.open(path)

    message = str(refused.value)
    assert f"textback {importlib.metadata.version('textback')}" in message
    assert "textback 9.1.0" in message and f"schema {newer}" in message
    assert f"schema {len(MIGRATIONS)}" in message and str(path) in message
    after = snapshot(tmp_path)
    after.pop("textback.db.lock", None)  # the run lock, taken before the store is opened
    assert after == before


async def test_a_newer_schema_from_a_textback_that_did_not_record_itself_is_refused(tmp_path):
    path = tmp_path / "t.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    db.close()
    with pytest.raises(StoreTooNew, match=r"a newer textback"):
        await Store.open(path)


def test_textback_run_on_a_newer_store_exits_with_the_message_and_writes_nothing(tmp_path):
    config = write_config(tmp_path, base_config(tmp_path))
    path = tmp_path / "textback.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    before = snapshot(tmp_path)
    done = subprocess.run([sys.executable, "-m", "textback", "run", "-c", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == CONFIG_REFUSED_STATUS  # RestartPreventExitStatus: not restarted
    assert f"this is textback {importlib.metadata.version('textback')}" in done.stderr
    assert "Traceback" not in done.stderr
    after = snapshot(tmp_path)
    after.pop("textback.db.lock", None)  # the run lock, taken before the store is opened
    assert after == before


async def test_a_migration_meeting_a_row_it_cannot_keep_is_refused_and_changes_nothing(
        tmp_path, monkeypatch):
    """The next migration adds a constraint two rows break: the upgrade stops, naming the
    constraint, both schemas and the store; the store stays at its schema, without the
    migration's other statements."""
    path = tmp_path / "t.db"
    store = await Store.open(path)
    await store.close()
    with sqlite3.connect(path) as db:
        for opened in (1.0, 2.0):
            db.execute("INSERT INTO incidents (kind, summary, opened_at, closed_at)"
                       " VALUES ('ami_down', 'x', ?, ?)", (opened, opened + 1))
    db.close()
    current = len(MIGRATIONS)
    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, """
        CREATE TABLE made_by_the_refused_migration (id INTEGER PRIMARY KEY);
        CREATE UNIQUE INDEX incidents_one_per_kind ON incidents (kind)
    """])

    with pytest.raises(UpgradeRefused) as refused:
        await Store.open(path)

    message = str(refused.value)
    assert str(path) in message and f"upgrade to schema {current + 1} stopped" in message
    assert "UNIQUE constraint failed: incidents.kind" in message
    assert f"stays at schema {current}" in message and "Nothing was changed" in message
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (current,)
        assert db.execute("SELECT name FROM sqlite_master WHERE name IN"
                          " ('made_by_the_refused_migration', 'incidents_one_per_kind')"
                          ).fetchall() == []
        assert db.execute("SELECT COUNT(*) FROM incidents").fetchone() == (2,)
    db.close()
