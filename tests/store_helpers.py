"""Reading the store the way no production path needs to: for assertions only."""

from __future__ import annotations

import sqlite3

import psycopg

from textback.store import Store


async def outbox_states(store: Store) -> dict[str, int]:
    """How many outbox rows are in each state."""
    rows = await store._all("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state")
    return {row["state"]: row["n"] for row in rows}


def on_postgres(store: Store) -> bool:
    """Whether `store` is the PostgreSQL backend's."""
    from textback.store.postgres import PostgresStore
    return isinstance(store, PostgresStore)


# A statement the database refused for breaking a rule (a constraint, an append-only trigger).
REFUSED = (sqlite3.IntegrityError, psycopg.IntegrityError)


async def execute(store: Store, sql: str, args: tuple = ()) -> None:
    """Change rows behind the port's back (to age them, say), in a transaction of its own."""
    async with store._transaction() as db:
        await db.execute(sql, args)


async def refuse_inserts(store: Store, table: str, why: str) -> None:
    """Make every INSERT into `table` fail with `why`, in each backend's own dialect."""
    if on_postgres(store):
        await execute(store, f"CREATE FUNCTION refuse_{table}() RETURNS trigger LANGUAGE plpgsql"
                             f" AS $$ BEGIN RAISE EXCEPTION '{why}'; END $$")
        await execute(store, f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table}"
                             f" FOR EACH ROW EXECUTE FUNCTION refuse_{table}()")
    else:
        await execute(store, f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table}"
                             f" BEGIN SELECT RAISE(ABORT, '{why}'); END")
