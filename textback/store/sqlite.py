"""The SQLite backend's connection: one aiosqlite connection (WAL), writes serialised by a
lock and run as IMMEDIATE transactions; opening applies the migrations and refuses a newer
schema."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import AsyncIterator, Self

import aiosqlite

from textback.store import migrations
from textback.store.connection import (Connection, downgrade_refused, textback_version,
                                       upgrade_refused)
from textback.store.migrations import ANALYSIS_LIMIT, statements
from textback.store.values import _segments


def _connect(path: Path) -> aiosqlite.Connection:
    """aiosqlite's connection, whose worker thread cannot keep the process alive.

    Since aiosqlite 0.22 that thread is not a daemon, so a store left open by
    a crash kept the interpreter from exiting, forever. Every commit is
    awaited before anything is acknowledged, and SQLite rolls back whatever
    was not committed, so nothing is lost by not waiting for the thread.
    """
    connection = aiosqlite.connect(path, isolation_level=None)
    # The thread starts when the connection is awaited; before 0.22 the connection was the thread.
    worker = getattr(connection, "_thread", connection)
    if isinstance(worker, threading.Thread):
        worker.daemon = True
    return connection


async def _refuse_newer_schema(db: aiosqlite.Connection, path: Path) -> None:
    """Raise StoreTooNew, naming this textback and the one that wrote the store, when the
    store's schema is newer than MIGRATIONS. Reads only."""
    version = (await (await db.execute("PRAGMA user_version")).fetchone())[0]
    if version <= len(migrations.MIGRATIONS):
        return
    try:
        row = await (await db.execute("SELECT textback_version FROM written_by "
                                       "WHERE schema_version = ?", (version,))).fetchone()
    except aiosqlite.OperationalError:
        row = None
    raise downgrade_refused(str(path), version, row[0] if row else None,
                            len(migrations.MIGRATIONS))


class SqliteConnection(Connection):
    """The one aiosqlite connection every aggregate works on: writes serialised by a lock
    and run as IMMEDIATE transactions; events and consent facts join the transaction under way."""

    def __init__(self, db: aiosqlite.Connection):
        super().__init__()
        self._db = db
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Self:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await _connect(path)
        db.row_factory = aiosqlite.Row
        # First: journal_mode takes a lock, and a CLI command opening the database while the
        # daemon writes must wait for it rather than fail with "database is locked".
        await db.execute("PRAGMA busy_timeout=5000")
        try:  # before journal_mode or a migration: a store this textback cannot read is left as is
            await _refuse_newer_schema(db, path)
        except BaseException:
            await db.close()
            raise
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.create_function("text_segments", 1, _segments, deterministic=True)  # migrations
        store = cls(db)
        try:
            await store._migrate(str(path))
        except BaseException:
            await db.close()
            raise
        return store

    async def close(self) -> None:
        """Close, refreshing the planner's statistics first where they have gone stale."""
        with contextlib.suppress(aiosqlite.Error):
            await self._db.execute(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT}")
            await self._db.execute("PRAGMA optimize")
        await self._db.close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            else:
                await self._db.execute("COMMIT")
                self._committed()
            finally:
                self._emitted = False

    async def _migrate(self, where: str) -> None:
        async with self._transaction() as db:
            version = (await (await db.execute("PRAGMA user_version")).fetchone())[0]
            for number, script in enumerate(migrations.MIGRATIONS[version:], start=version + 1):
                for statement in statements(script):
                    try:
                        await db.execute(statement)
                    except sqlite3.IntegrityError as exc:  # the transaction rolls back whole
                        raise upgrade_refused(where, version, number, str(exc)) from exc
                await db.execute(f"PRAGMA user_version = {number}")
            recorded = await (await db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'written_by'")).fetchone()
            if version < len(migrations.MIGRATIONS) and recorded:  # absent only below its own migration
                await db.execute("INSERT OR REPLACE INTO written_by VALUES (?, ?, ?)",
                                 (len(migrations.MIGRATIONS), textback_version(), time.time()))
            if 0 < version < len(migrations.MIGRATIONS):
                # A store that already holds rows gets statistics for its new indexes at once:
                # without them the planner may prefer a scan (a new store gets them at close).
                await db.execute(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT}")
                await db.execute("ANALYZE")

    # A read runs to its end in one call to the connection's thread: a statement left open
    # between calls would pin an old snapshot, and a transaction another task begins on this
    # connection meanwhile could then not write ("database is locked" at once, no busy wait).

    async def _one(self, sql: str, args: tuple = ()) -> aiosqlite.Row | None:
        rows = await self._db.execute_fetchall(sql, args)
        return rows[0] if rows else None

    async def _all(self, sql: str, args: tuple = ()) -> list[aiosqlite.Row]:
        return list(await self._db.execute_fetchall(sql, args))
