"""psycopg 3 against asyncpg on textback's hot queries, on a real PostgreSQL 15.

A store with a history (lab/history.py, through PostgresStore's own API) on a PostgreSQL the
bench starts itself (lab/postgres.py, a Unix socket, fsync off for both drivers alike); then,
on one connection per driver, the same statements with the same arguments, each operation in a
transaction that is rolled back so every round starts from the same rows:

    claim        the outbox claim (UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED))
    record call  what Store.record_call sends for a missed call: the checks, the message, the
                 outbox row, the call, its consent facts and its event
    inbox page   the web inbox's first page of open conversations (its summary columns)

Prints the median and p99 of each, per driver, and psycopg's median over asyncpg's.
Usage: python bench/pg_drivers.py [--calls 1000] [--rounds 2000]  (asyncpg: pip install -e '.[bench]')
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg  # noqa: E402
import psycopg  # noqa: E402

from lab.history import BUSINESS_NUMBERS, build_history  # noqa: E402
from lab.postgres import PostgresServer  # noqa: E402
from textback.store.postgres import PostgresStore  # noqa: E402
from textback.store.web import INBOX_COLUMNS  # noqa: E402

CALLER = "+12125550123"
CLAIM = ("UPDATE outbox SET state = 'sending', attempts = attempts + 1, updated_at = $1"
         " WHERE id IN (SELECT id FROM outbox WHERE id = $2 AND state = 'pending'"
         " FOR UPDATE OF outbox SKIP LOCKED) AND state = 'pending' RETURNING id")
RECORD_CALL = [
    "SELECT 1 FROM calls WHERE linkedid = $1",
    "SELECT id FROM conversations WHERE caller = $1 AND business_number = $2",
    "SELECT 1 FROM messages WHERE conversation_id = $1 AND direction = 'out' AND kind = 'auto'"
    " AND created_at >= $2",
    "INSERT INTO messages (conversation_id, direction, kind, template, body, segments, status,"
    " created_at, author) VALUES ($1, 'out', 'auto', '', $2, 1, 'queued', $3, '') RETURNING id",
    "INSERT INTO outbox (message_id, sender, recipient, due_at, first_due_at, idempotency_key,"
    " updated_at) VALUES ($1, $2, $3, $4, $4, $5, $4) RETURNING id",
    "INSERT INTO calls (linkedid, business_number, caller_raw, caller, caller_name, started_at,"
    " answered_at, ended_at, outcome, reason, decision, route, recovered, selftest,"
    " conversation_id, message_id) VALUES ($1, $2, $3, $3, '', $4, NULL, $4, 'missed',"
    " 'no_answer', 'missed_call_text', '', 0, 0, $5, $6)",
    "INSERT INTO consent_ledger (at, fact, number, business_number, channel, kind, body, detail)"
    " VALUES ($1, 'call', $2, $3, 'ami', '', '', '{}')",
    "INSERT INTO events (event_id, type, order_key, body, created_at)"
    " VALUES ($1, 'call.missed', $2, '{}', $3)",
]
INBOX = (f"SELECT {INBOX_COLUMNS} FROM conversations c WHERE status = 'open' AND selftest = 0"
         " AND owner_line = 0 ORDER BY c.updated_at DESC, c.id DESC LIMIT 50")


# Each connection set to the store's company, as the store's own are (migration 30): the rows
# its inserts write are that company's.
COMPANY = ("SELECT set_config('textback.company', id::text, false) FROM companies"
           " WHERE slug = 'default'")


def for_psycopg(sql: str) -> str:
    """$n placeholders (each used in order, repeats as they come) as psycopg's %s."""
    import re
    return re.sub(r"\$\d+", "%s", sql)


def psycopg_args(sql: str, args: tuple) -> tuple:
    import re
    return tuple(args[int(n) - 1] for n in re.findall(r"\$(\d+)", sql))


class Psycopg:
    name = "psycopg 3"

    async def open(self, url: str) -> None:
        self.db = await psycopg.AsyncConnection.connect(url)
        await self.db.execute(COMPANY)
        await self.db.commit()

    async def one(self, sql: str, *args):
        cursor = await self.db.execute(for_psycopg(sql), psycopg_args(sql, args) or None)
        return await cursor.fetchone() if cursor.description else None

    async def all(self, sql: str, *args):
        return await (await self.db.execute(for_psycopg(sql), psycopg_args(sql, args))).fetchall()

    async def rollback(self) -> None:
        await self.db.rollback()

    async def close(self) -> None:
        await self.db.close()


class Asyncpg:
    name = "asyncpg"

    async def open(self, url: str) -> None:
        self.db = await asyncpg.connect(url)
        await self.db.execute(COMPANY)
        self.transaction = None

    async def _begin(self) -> None:
        if self.transaction is None:
            self.transaction = self.db.transaction()
            await self.transaction.start()

    async def one(self, sql: str, *args):
        await self._begin()
        return await self.db.fetchrow(sql, *args)

    async def all(self, sql: str, *args):
        await self._begin()
        return await self.db.fetch(sql, *args)

    async def rollback(self) -> None:
        await self.transaction.rollback()
        self.transaction = None

    async def close(self) -> None:
        await self.db.close()


async def claim(driver, outbox_id: int) -> None:
    assert await driver.one(CLAIM, time.time(), outbox_id)
    await driver.rollback()


async def record_call(driver, conversation_id: int) -> None:
    now = time.time()
    linkedid = uuid.uuid4().hex
    await driver.one(RECORD_CALL[0], linkedid)
    await driver.one(RECORD_CALL[1], CALLER, BUSINESS_NUMBERS[0])
    await driver.one(RECORD_CALL[2], conversation_id, now - 86400)
    message_id = (await driver.one(RECORD_CALL[3], conversation_id, "Sorry we missed you", now))[0]
    await driver.one(RECORD_CALL[4], message_id, BUSINESS_NUMBERS[0], CALLER, now, linkedid)
    await driver.one(RECORD_CALL[5], linkedid, BUSINESS_NUMBERS[0], CALLER, now,
                     conversation_id, message_id)
    await driver.one(RECORD_CALL[6], now, CALLER, BUSINESS_NUMBERS[0])
    await driver.one(RECORD_CALL[7], uuid.uuid4().hex, CALLER, now)
    await driver.rollback()


async def inbox_page(driver, _: int) -> None:
    assert await driver.all(INBOX)
    await driver.rollback()


async def measure(driver, operation, argument: int, rounds: int) -> list[float]:
    for _ in range(min(200, rounds)):  # warm: plans cached, pages in memory
        await operation(driver, argument)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await operation(driver, argument)
        times.append(time.perf_counter() - started)
    return times


def p99(times: list[float]) -> float:
    return sorted(times)[int(len(times) * 0.99)]


async def main(calls: int, rounds: int) -> None:
    server = PostgresServer()
    server.start()
    try:
        url = server.new_database()
        store = await PostgresStore.open(url)
        await build_history(store, calls, time.time() - 3600)
        await store.close()
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("ANALYZE")
            outbox_id = db.execute("SELECT o.id FROM outbox o JOIN messages m ON m.id ="
                                   " o.message_id ORDER BY o.id DESC LIMIT 1").fetchone()[0]
            db.execute("UPDATE outbox SET state = 'pending' WHERE id = %s", (outbox_id,))
            conversation_id = db.execute("SELECT id FROM conversations ORDER BY id"
                                         " LIMIT 1").fetchone()[0]
        print(f"PostgreSQL {server.version()}, {calls} calls of history, {rounds} rounds each;"
              " times in microseconds")
        print(f"{'operation':<12} {'driver':<10} {'median':>8} {'p99':>8}")
        for operation, argument in ((claim, outbox_id), (record_call, conversation_id),
                                    (inbox_page, 0)):
            medians = {}
            for driver in (Psycopg(), Asyncpg()):
                await driver.open(url)
                try:
                    times = await measure(driver, operation, argument, rounds)
                finally:
                    await driver.close()
                medians[driver.name] = statistics.median(times)
                print(f"{operation.__name__:<12} {driver.name:<10} "
                      f"{statistics.median(times) * 1e6:>8.0f} {p99(times) * 1e6:>8.0f}")
            print(f"{'':<12} psycopg/asyncpg median: "
                  f"{medians['psycopg 3'] / medians['asyncpg']:.2f}")
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2000)
    options = parser.parse_args()
    asyncio.run(main(options.calls, options.rounds))
