"""Several daemons on one PostgreSQL: each claims with its own pool, at the same time as the
others, and every text, notice, event delivery and self-test run is claimed exactly once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from lab.configs import BUSINESS_NUMBER
from textback.core import events
from textback.store import CallRow, PlannedText
from textback.store.postgres import PostgresStore

DAEMONS = 4
TEXTS, NOTICES, RUNS = 60, 30, 12


async def seed(store: PostgresStore, now: float) -> None:
    for n in range(TEXTS):
        caller = f"+1212555{n:04d}"
        await store.record_call(CallRow(f"9.{n}", BUSINESS_NUMBER, caller, caller, "", now - 60,
                                        None, now - 30, "missed", "no_answer", "missed_call_text"),
                                PlannedText("dana", f"Hi {n}", now - 1))
    for n in range(NOTICES):
        await store.queue_notice("digest", f"owner{n}@acme.example", "Daily digest", "body")
    for _ in range(RUNS):
        await store.request_selftest("schedule")
    assert await store.fan_out({"crm": (events.CALL_MISSED,)}, since=0) == TEXTS


async def claim_texts(store: PostgresStore, due: list) -> list[int]:
    return [item.id for item in await store.claim_all(due)]


async def claim_notices(store: PostgresStore, due: list[int]) -> list[int]:
    taken = []
    for notice_id in due:
        if await store.claim_mail("notices", notice_id, time.time()):
            taken.append(notice_id)
            await store.mark_notice(notice_id, "sent")
    return taken


async def claim_deliveries(store: PostgresStore, due: list[dict]) -> list[int]:
    taken = []
    for delivery in due:
        if await store.claim_delivery(delivery["id"]):
            taken.append(delivery["id"])
            await store.end_delivery(delivery["id"], 200, "", None)
    return taken


async def claim_runs(store: PostgresStore, due: None) -> list[int]:
    run_id = await store.claim_selftest()
    return [] if run_id is None else [run_id]


# What each daemon sees due before it claims: every daemon reads the same rows in a round, then
# all claim them at once, so each row is fought over and exactly one daemon may win it.
DUE = {
    "claim_texts": lambda store: store.due(time.time(), limit=7),
    "claim_notices": lambda store: store.due_mail("notices", time.time(), limit=5),
    "claim_deliveries": lambda store: store.due_deliveries("crm", time.time(), limit=5),
    "claim_runs": lambda store: asyncio.sleep(0),
}


async def rounds(claim, daemons: list[PostgresStore]) -> list[list[int]]:
    """Rounds of every daemon reading what is due, then all claiming at once, until a round
    claims nothing; each daemon's claimed ids."""
    taken: list[list[int]] = [[] for _ in daemons]
    while True:
        seen = await asyncio.gather(*(DUE[claim.__name__](store) for store in daemons))
        won = await asyncio.gather(*(claim(store, due) for store, due in zip(daemons, seen)))
        if not any(won):
            return taken
        for rows, more in zip(taken, won):
            rows += more


async def test_claims_hold_exactly_once_across_daemons(postgres_server, postgres_template):
    url = postgres_server.new_database(template=postgres_template)
    daemons = [await PostgresStore.open(url) for _ in range(DAEMONS)]
    try:
        await seed(daemons[0], time.time())
        for claim, total in ((claim_texts, TEXTS), (claim_notices, NOTICES),
                             (claim_deliveries, TEXTS), (claim_runs, RUNS)):
            taken = await rounds(claim, daemons)
            every = Counter(row for rows in taken for row in rows)
            assert len(every) == total, claim.__name__  # none left unclaimed ...
            assert set(every.values()) == {1}, claim.__name__  # ... and none claimed twice
        states = {row["state"]: row["n"] for row in await daemons[0]._all(
            "SELECT state, COUNT(*) AS n FROM outbox GROUP BY state")}
        assert states == {"sending": TEXTS}
    finally:
        for store in daemons:
            await store.close()


async def test_a_notice_sent_at_most_once_an_hour_is_queued_once_by_daemons_racing(
        postgres_server, postgres_template):
    """The once-an-hour notices (a recovery's alert to the admin, a fraud alert) are checked and
    queued in one transaction; on PostgreSQL two daemons' transactions run side by side, so the
    check holds only if they take turns: every daemon asking at once queues one notice."""
    url = postgres_server.new_database(template=postgres_template)
    daemons = [await PostgresStore.open(url) for _ in range(DAEMONS)]
    try:
        for round_ in range(5):
            subject = f"textback recovered the calls missed meanwhile ({round_})"
            queued = await asyncio.gather(*(
                store.queue_notice("textback admin", "it@acme.example", subject, "body",
                                   unless_since=time.time() - 3600)
                for store in daemons for _ in range(3)))
            assert len([notice for notice in queued if notice is not None]) == 1, subject
        # Another address, or another subject, is a notice of its own.
        assert await daemons[1].queue_notice("textback admin", "ops@acme.example", subject,
                                             "body", unless_since=time.time() - 3600)
    finally:
        for store in daemons:
            await store.close()
