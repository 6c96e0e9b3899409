"""What migration 36 (each reference between company tables names the company) costs on a
large PostgreSQL store, and what its keys cost a missed call afterwards.

A PostgreSQL 15 the bench starts itself (lab/postgres.py: a Unix socket; durable, with
PostgreSQL's default fsync and synchronous commit); a database owned by the daemons' role at
schema 35, holding two companies' rows written with SQL in bulk (per company: conversations,
four texts each, two calls each, an outbox row per text out, a photo per tenth reply, an
event and its webhook delivery per call); then:

    record call  Store.record_call for a missed call (the message, its outbox row, the call,
                 each naming a conversation or message: key checks), median of --rounds,
                 at schema 35 and again at 36
    migration    the time PostgresStore.open takes to apply migration 36 (its one
                 transaction: a UNIQUE (company_id, id) index built on each parent, each
                 foreign key dropped and added, which checks every row of the child)

Usage: python bench/company_references.py [--conversations 100000] [--rounds 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from lab.postgres import PostgresServer  # noqa: E402
from textback.store import CallRow, PlannedText  # noqa: E402
from textback.store.postgres import PostgresStore  # noqa: E402
from textback.store.postgres import migrations as pg_migrations  # noqa: E402

COMPANIES = ("acme", "birch")
NUMBER = "+12125550100"

# Each statement runs with the session set to one company; its rows are that company's.
BULK = [
    "INSERT INTO conversations (caller, business_number, owner_id, created_at, updated_at)"
    " SELECT '+1212' || lpad(i::text, 7, '0'), %(number)s, 'dana', i, i"
    " FROM generate_series(1, %(conversations)s) i",
    "INSERT INTO messages (conversation_id, direction, body, status, created_at)"
    " SELECT c.id, CASE WHEN g %% 2 = 0 THEN 'in' ELSE 'out' END, 'text ' || g,"
    " 'sent', c.created_at + g FROM conversations c CROSS JOIN generate_series(1, 4) g",
    "INSERT INTO outbox (message_id, sender, recipient, due_at, first_due_at, idempotency_key,"
    " updated_at, state) SELECT id, %(number)s, '+2', created_at, created_at, 'k' || id,"
    " created_at, 'sent' FROM messages WHERE direction = 'out'",
    "INSERT INTO calls (linkedid, business_number, caller_raw, caller, started_at, ended_at,"
    " outcome, reason, conversation_id) SELECT c.id || '.' || g, %(number)s, c.caller,"
    " c.caller, c.created_at, c.created_at + 20, 'missed', 'no_answer', c.id"
    " FROM conversations c CROSS JOIN generate_series(1, 2) g",
    "INSERT INTO media (message_id, position, url, declared_type, created_at)"
    " SELECT id, 0, 'https://api.example/m/' || id, 'image/jpeg', created_at FROM messages"
    " WHERE direction = 'in' AND id %% 10 = 0",
    "INSERT INTO events (event_id, type, order_key, body, created_at)"
    " SELECT %(company)s || '-' || id, 'call.missed', caller, '{}', started_at FROM calls",
    "INSERT INTO event_deliveries (event, endpoint, order_key, updated_at, state)"
    " SELECT id, 'crm', order_key, created_at, 'delivered' FROM events",
]


def missed(linkedid: str, caller: str) -> CallRow:
    now = time.time()
    return CallRow(linkedid=linkedid, business_number=NUMBER, caller_raw=caller,
                   caller=caller, caller_name="", started_at=now - 10,
                   answered_at=None, ended_at=now, outcome="missed", reason="no_answer",
                   decision="missed_call_text")


async def record_call_median(store: PostgresStore, rounds: int, tag: str) -> float:
    """The median time of Store.record_call over `rounds` missed calls of new callers."""
    times = []
    for i in range(rounds):
        call = missed(f"{tag}.{i}", f"+1212555{i:04d}")
        start = time.perf_counter()
        await store.record_call(call, PlannedText("dana", "Sorry we missed you", 0))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def run(conversations: int, rounds: int) -> None:
    server = PostgresServer()
    server.start(durable=True)
    try:
        url = server.new_database(owner=server.daemon_role())
        latest = pg_migrations.MIGRATIONS
        pg_migrations.MIGRATIONS = latest[:35]
        try:
            old = {slug: await PostgresStore.open(url, company=slug) for slug in COMPANIES}
        finally:
            pg_migrations.MIGRATIONS = latest
        with psycopg.connect(url, autocommit=True) as db:
            for slug, store in old.items():
                db.execute("SELECT set_config('textback.company', %s, false)",
                           (str(store.company_id),))
                for statement in BULK:
                    db.execute(statement, {"number": NUMBER, "conversations": conversations,
                                           "company": slug})
            db.execute("VACUUM ANALYZE")
            rows = {table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                    for table in ("conversations", "messages", "outbox", "calls", "media",
                                  "events", "event_deliveries")}
        before = await record_call_median(old["acme"], rounds, "at35")
        for store in old.values():
            await store.close()
        start = time.perf_counter()
        new = await PostgresStore.open(url, company="acme")
        migration = time.perf_counter() - start
        after = await record_call_median(new, rounds, "at36")
        await new.close()
    finally:
        server.stop()
    print(f"rows of each company: {', '.join(f'{t} {n}' for t, n in rows.items())}")
    print(f"migration 36: {migration:.2f} s")
    print(f"record call median: {before * 1000:.2f} ms at 35, {after * 1000:.2f} ms at 36")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100_000,
                        help="conversations per company (four texts, two calls each)")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(run(args.conversations, args.rounds))


if __name__ == "__main__":
    main()
