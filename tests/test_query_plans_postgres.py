"""On PostgreSQL too, every query on a hot path has an index to use: none needs a sequential
scan of a table that grows with the history.

The same workload as SQLite's (tests/test_query_plans.py: the daemon's per-call and per-reply
path, the workers, the CLI listings, the web inbox, retention) runs on a PostgreSQL store with
a history; every statement it sends is caught, and EXPLAINed with its own arguments with
sequential scans priced out (`enable_seqscan = off`): on a table this small the planner would
rightly prefer one, so what is checked is that an index *can* serve. A Seq Scan that remains
means none can.
"""

from __future__ import annotations

import time
from typing import Awaitable, Callable

import psycopg
import pytest

from lab.history import build_history
from textback.store.postgres import PostgresStore
from textback.store.postgres.connection import Session, to_psycopg
from tests.test_query_plans import ESCALATING, HISTORY_TABLES, _hot_paths


def seq_scans(plan: dict) -> list[str]:
    """The history tables a plan (EXPLAIN's JSON) reads with a sequential scan."""
    found = []
    if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") in HISTORY_TABLES:
        found.append(f"Seq Scan on {plan['Relation Name']}"
                     + (f" (filter {plan['Filter']})" if "Filter" in plan else ""))
    for child in plan.get("Plans", ()):
        found += seq_scans(child)
    return found


@pytest.fixture(scope="module")
def history_url(postgres_server, postgres_template):
    """A PostgreSQL store with 1,500 calls and what followed them (escalations too), analysed;
    and its end."""
    import asyncio
    # As the daemons' role: row-level security's company filter is in every plan, as it is
    # for a daemon.
    url = postgres_server.new_database(template=postgres_template,
                                       owner=postgres_server.daemon_role())
    end = time.time() - 3600

    async def build():
        store = await PostgresStore.open(url)
        try:
            await build_history(store, 1500, end, ESCALATING)
        finally:
            await store.close()

    asyncio.run(build())
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("ANALYZE")
    return url, end


Statements = list[tuple[str, object]]


@pytest.fixture
def statements_of(history_url, monkeypatch):
    """`await statements_of(work)`: every statement (SQL, arguments) that `work(store)` sends
    on a store opened on the history."""
    url, _ = history_url

    async def caught_while(work: Callable[[PostgresStore], Awaitable[object]]) -> Statements:
        statements: Statements = []
        execute = Session.execute

        async def caught(self, sql, args=()):
            statements.append((sql, args))
            return await execute(self, sql, args)

        monkeypatch.setattr(Session, "execute", caught)
        store = await PostgresStore.open(url)
        try:
            await work(store)
        finally:
            await store.close()
            monkeypatch.undo()
        return statements

    return caught_while


def plans(url: str, statements: Statements):
    """Each statement with its plan, EXPLAINed (run nothing) as the store's company, its
    arguments its own, sequential scans priced out: can an index serve, and which."""
    with psycopg.connect(url) as db:  # one transaction, rolled back
        db.execute("SET LOCAL enable_seqscan = off")
        db.execute("SELECT set_config('textback.company', id::text, true) FROM companies"
                   " WHERE slug = 'default'")  # the store's company, as its connections are
        for sql, args in statements:
            statement, params = to_psycopg(sql, args)
            [[plan]] = db.execute(f"EXPLAIN (FORMAT JSON) {statement}", params).fetchone()
            yield sql, plan["Plan"]
        db.rollback()


async def test_no_hot_query_needs_a_sequential_scan_of_the_history(history_url, statements_of):
    url, end = history_url
    statements = await statements_of(lambda store: _hot_paths(store, end))
    queries = {}
    for sql, args in statements:
        if sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH", "INSERT")):
            queries.setdefault(sql, args)
    assert len(queries) > 40  # the workload ran
    problems = {}
    for sql, plan in plans(url, sorted(queries.items())):
        if found := seq_scans(plan):
            problems[sql] = found
    assert not problems, "\n\n".join(f"{sql}\n  " + "\n  ".join(found)
                                     for sql, found in problems.items())


def nodes(plan: dict) -> list[dict]:
    """A plan's nodes, depth first."""
    return [plan] + [node for child in plan.get("Plans", ()) for node in nodes(child)]


async def test_the_digest_reads_one_range_as_long_as_the_reported_window(history_url,
                                                                       statements_of):
    """The waiting conversations of the reported window, as one index range bounded on both
    sides by the texts' times: never every waiting conversation of the history."""
    url, _ = history_url

    async def digest_reads(store: PostgresStore) -> None:
        assert await store.waiting_replies(time.time())  # the history has waiting texts
        await store.waiting_replies(time.time(), time.time() - 900, 1)

    statements = await statements_of(digest_reads)
    reads = [(sql, args) for sql, args in statements if "ON m.id = c.last_reply_id" in sql]
    assert len(reads) == 2
    for _, plan in plans(url, reads):
        assert not seq_scans(plan), plan
        [ranged] = [node for node in nodes(plan)
                    if node.get("Index Name") == "conversations_waiting"]
        bounds = ranged["Index Cond"]
        assert "last_reply_at >=" in bounds and "last_reply_at <" in bounds, bounds
