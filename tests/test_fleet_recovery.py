"""Recovery of rows left in flight, with several daemons on one real PostgreSQL 15: a daemon
that starts (or a survivor's sweep) takes the rows of a daemon that is gone, by each claim's
table in textback/store/states.py, and never those a live daemon is working on. SQLite keeps
its start-up recovery through the same methods."""

from __future__ import annotations

import asyncio
import time

import psycopg

from lab.configs import BUSINESS_NUMBER
from textback.core import events
from textback.core.fleet import CLAIMER_LOCK_CLASS
from textback.store import CallRow, NewMedia, PlannedText, QueuedPush, Store
from textback.store.postgres import PostgresStore
from textback.workers.recovery import ClaimRecovery

PER_DAEMON = 3  # rows of each kind each of the two claiming daemons takes
URL = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM{n}/Media/ME1"


async def told(outbox_ids: list[int], how: str) -> None:
    """The outbox's notice of the texts a sweep marked `unknown`: these tests look at the rows
    (tests/test_outbox_unknown_notice.py looks at the owners' mail)."""


def claimer_pids(url: str, claimer: int) -> list[int]:
    """The backends holding daemon `claimer`'s advisory lock, as pg_locks shows them."""
    with psycopg.connect(url, autocommit=True) as connection:
        return [row[0] for row in connection.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2"
            " AND classid::bigint = %s AND objid::bigint = %s", (CLAIMER_LOCK_CLASS, claimer))]


def kill_claimer(url: str, claimer: int) -> None:
    """What PostgreSQL sees of a daemon killed -9, or its host lost: its session ends."""
    pids = claimer_pids(url, claimer)
    assert len(pids) == 1
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SELECT pg_terminate_backend(%s)", (pids[0],))


async def seed(store: Store, n: int, now: float) -> None:
    """`n` of every kind of claimable row: texts, notices, alerts and their media, webhook
    deliveries, self-test runs and pushes."""
    for i in range(n):
        caller = f"+1212555{i:04d}"
        await store.record_call(CallRow(f"7.{i}", BUSINESS_NUMBER, caller, caller, "", now - 60,
                                        None, now - 30, "missed", "no_answer", "missed_call_text"),
                                PlannedText("dana", f"Hi {i}", now - 1))
        await store.queue_notice("digest", f"owner{i}@acme.example", "Daily digest", "body")
        await store.record_inbound(f"+1718555{i:04d}", BUSINESS_NUMBER, "a photo", "twilio",
                                   f"MM{i}", "dana", media=[NewMedia(URL.format(n=i), "image/jpeg")])
        await store.request_selftest("schedule")
    device = await store.save_push_subscription("dana", "https://fcm.googleapis.com/fcm/send/a",
                                                "key", "auth", "phone")
    await store.queue_pushes([QueuedPush(device, "reply", f"r{i}", "{}", now, now + 3600)
                              for i in range(n)], 0, 0)
    assert await store.fan_out({"crm": (events.CALL_MISSED,)}, since=0) == n


async def claim_some(store: Store, k: int) -> dict[str, list[int]]:
    """`k` rows of every kind, claimed by `store`'s daemon: their ids, by table."""
    now = time.time()
    texts = await store.claim_all((await store.due(now, limit=k)))
    notices = [i for i in await store.due_mail("notices", now, k)
               if await store.claim_mail("notices", i, now)]
    alerts = [i for i in await store.due_mail("alerts", now, k)
              if await store.claim_mail("alerts", i, now)]
    media = [row["id"] for row in await store.claim_media(now, k)]
    deliveries = [d["id"] for d in await store.due_deliveries("crm", now, k)
                  if await store.claim_delivery(d["id"])]
    runs = [await store.claim_selftest() for _ in range(k)]
    pushes = [i for i in await store.due_pushes(now, k) if await store.claim_push(i, now)]
    taken = {"outbox": [t.id for t in texts], "notices": notices, "alerts": alerts,
             "media": media, "event_deliveries": deliveries, "selftests": runs,
             "push_messages": pushes}
    assert all(len(ids) == k for ids in taken.values()), taken
    return taken


async def states(store: Store, table: str, ids: list[int]) -> set[str]:
    marks = ",".join("?" * len(ids))
    return {row["state"] for row in await store._all(
        f"SELECT state FROM {table} WHERE id IN ({marks})", tuple(ids))}


# Where a gone daemon's rows end, by each claim's "interrupted" transition (states.py).
RECOVERED = {"outbox": {"unknown"}, "notices": {"pending"}, "alerts": {"pending"},
             "media": {"pending"}, "event_deliveries": {"pending"}, "selftests": {"done"},
             "push_messages": {"pending"}}
IN_FLIGHT = {"outbox": {"sending"}, "notices": {"sending"}, "alerts": {"sending"},
             "media": {"fetching"}, "event_deliveries": {"sending"}, "selftests": {"running"},
             "push_messages": {"sending"}}


async def test_a_starting_daemon_takes_a_gone_daemons_rows_and_never_a_live_ones(
        postgres_server, postgres_template):
    url = postgres_server.new_database(template=postgres_template)
    live, doomed, starting = [await PostgresStore.open(url) for _ in range(3)]
    try:
        await live.register_claimer("host-a", 101)
        doomed_id = await doomed.register_claimer("host-b", 202)
        await seed(live, 2 * PER_DAEMON, time.time())
        mine, theirs = await claim_some(live, PER_DAEMON), await claim_some(doomed, PER_DAEMON)

        # A daemon starts beside two live ones: it takes nothing either is working on.
        await starting.register_claimer("host-c", 303)
        sweep = ClaimRecovery(starting, "host-c", 303, report_unknown=told)
        await sweep.sweep()
        for table in RECOVERED:
            assert await states(live, table, mine[table] + theirs[table]) == IN_FLIGHT[table], table

        # One of them is killed: the next sweep takes its rows, each by its claim's table ...
        kill_claimer(url, doomed_id)
        assert not await doomed.claimer_present()
        await sweep.sweep()
        for table, ends in RECOVERED.items():
            assert await states(live, table, theirs[table]) == ends, table
            assert await states(live, table, mine[table]) == IN_FLIGHT[table], table
        run = await live.selftest_run(theirs["selftests"][0])
        assert run["passed"] == 0 and "gone" in run["steps"]
        messages = await live._all(
            "SELECT m.status FROM messages m JOIN outbox o ON o.message_id = m.id"
            f" WHERE o.id IN ({','.join('?' * PER_DAEMON)})", tuple(theirs["outbox"]))
        assert {row["status"] for row in messages} == {"unknown"}  # never sent again

        # ... and the live daemon ends its own as if nothing happened: its texts go out once.
        texts = [t for t in await live._all("SELECT id FROM outbox WHERE state = 'sending'")]
        assert sorted(row["id"] for row in texts) == sorted(mine["outbox"])
        assert await live.due(time.time() + 3600) == []  # no text of the dead one is due again
    finally:
        for store in (live, doomed, starting):
            await store.close()


async def test_a_survivors_sweep_takes_a_dead_daemons_rows_within_its_period(
        postgres_server, postgres_template):
    url = postgres_server.new_database(template=postgres_template)
    survivor, doomed = await PostgresStore.open(url), await PostgresStore.open(url)
    sweeping = None
    try:
        await survivor.register_claimer("host-a", 101)
        doomed_id = await doomed.register_claimer("host-b", 202)
        await seed(survivor, PER_DAEMON, time.time())
        theirs = await claim_some(doomed, PER_DAEMON)
        sweeping = asyncio.create_task(ClaimRecovery(survivor, "host-a", 101, report_unknown=told,
                                                          every=0.2).run())
        await asyncio.sleep(0.6)
        assert await states(survivor, "outbox", theirs["outbox"]) == {"sending"}  # alive: kept
        kill_claimer(url, doomed_id)
        deadline = time.monotonic() + 5
        while await states(survivor, "outbox", theirs["outbox"]) != {"unknown"}:
            assert time.monotonic() < deadline, "the survivor never took the dead daemon's texts"
            await asyncio.sleep(0.1)
        assert await states(survivor, "event_deliveries", theirs["event_deliveries"]) == {"pending"}
    finally:
        if sweeping is not None:
            sweeping.cancel()
            await asyncio.gather(sweeping, return_exceptions=True)
        await survivor.close()
        await doomed.close()


async def test_a_daemon_whose_claimer_lock_is_lost_claims_under_a_new_id(
        postgres_server, postgres_template):
    """Its database session cut, a daemon's rows may be taken by the others (it looks gone):
    it registers again, so what it claims from then on is its own and kept."""
    url = postgres_server.new_database(template=postgres_template)
    cut, other = await PostgresStore.open(url), await PostgresStore.open(url)
    sweeping = None
    try:
        first = await cut.register_claimer("host-a", 101)
        await other.register_claimer("host-b", 202)
        await seed(cut, 2, time.time())
        before = await claim_some(cut, 1)
        kill_claimer(url, first)
        sweeping = asyncio.create_task(ClaimRecovery(cut, "host-a", 101, report_unknown=told,
                                                     every=0.1).run())
        deadline = time.monotonic() + 5
        while not await cut.claimer_present():
            assert time.monotonic() < deadline, "the daemon never registered again"
            await asyncio.sleep(0.05)
        after = await claim_some(cut, 1)
        await ClaimRecovery(other, "host-b", 202, report_unknown=told).sweep()
        assert await states(other, "outbox", before["outbox"]) == {"unknown"}
        assert await states(other, "outbox", after["outbox"]) == {"sending"}
        row = await other._one("SELECT claimed_by FROM outbox WHERE id = ?", (after["outbox"][0],))
        assert row["claimed_by"] != first and claimer_pids(url, row["claimed_by"])
    finally:
        if sweeping is not None:
            sweeping.cancel()
            await asyncio.gather(sweeping, return_exceptions=True)
        await cut.close()
        await other.close()


async def test_on_sqlite_a_start_recovers_every_earlier_run_and_a_worker_its_own(tmp_path):
    path = tmp_path / "t.db"
    earlier = await Store.open(path)
    await earlier.register_claimer("host", 1)
    await seed(earlier, 3, time.time())
    stopped = await claim_some(earlier, 1)
    await earlier.close()  # killed mid-send

    store = await Store.open(path)
    try:
        await store.register_claimer("host", 2)
        running = await claim_some(store, 1)
        assert await store.recover_interrupted() == stopped["outbox"]
        assert await store.recover_interrupted_deliveries() == 1
        assert await states(store, "outbox", running["outbox"]) == {"sending"}
        assert await states(store, "event_deliveries", running["event_deliveries"]) == {"sending"}
        # A worker that starts again in this daemon takes its own stopped work too.
        assert await store.recover_interrupted_deliveries(mine_too=True) == 1
        assert await store.recover_interrupted(mine_too=True) == running["outbox"]
    finally:
        await store.close()


async def test_a_claim_records_its_daemon(store):
    claimer = await store.register_claimer("host", 7)
    await seed(store, 1, time.time())
    taken = await claim_some(store, 1)
    for table, ids in taken.items():
        row = await store._one(f"SELECT claimed_by FROM {table} WHERE id = ?", (ids[0],))
        assert row["claimed_by"] == claimer, table


async def test_a_daemon_starting_while_another_sends_through_an_http_gateway_spares_its_text(
        tmp_path, smtp_sink, postgres_server, postgres_template):
    """Two daemons' real outbox workers on one PostgreSQL, the generic `http` gateway in front
    of a real loopback provider that takes 2 s per text: a daemon that starts while a text is
    being sent leaves it alone, and it goes out once, `sent` (a start used to mark it
    `unknown`). A killed daemon's text: the tests above."""
    from lab.harness import SMTP_SINK_PORT
    from lab.configs import base_config, write_config
    from tests.providers.common import serving
    from tests.test_outbox_outage import Provider, missed_call
    from textback.config import load
    from textback.daemon import Daemon
    from textback.gateways import build_gateway
    from textback.workers.common import SystemClock

    url = postgres_server.new_database(template=postgres_template)
    provider = Provider(SystemClock(), work_seconds=2.0)
    daemons, workers = [], []

    async def daemon(name: str, provider_url: str, run_outbox: bool) -> Daemon:
        (tmp_path / name).mkdir()
        config = base_config(tmp_path / name, **{
            "smtp.port": SMTP_SINK_PORT, "text.delay_seconds": 0,
            "gateway": {"type": "http", "http": {"url": f"{provider_url}/send",
                                                 "timeout_seconds": 10}}})
        made = Daemon(load(write_config(tmp_path / name, config)))
        made.attach(await PostgresStore.open(url), build_gateway(made.config, None, made.secrets))
        await made.store.register_claimer(name, len(daemons) + 1)
        await ClaimRecovery(made.store, name, 0,  # what `textback run` does at start
                            report_unknown=made.outbox.report_interrupted).sweep()
        daemons.append(made)
        if run_outbox:
            workers.append(asyncio.create_task(made.outbox.run()))
        return made

    async def until(predicate, what: str) -> None:
        deadline = time.monotonic() + 15
        while not await predicate():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.05)

    async def in_flight() -> bool:
        return provider.in_flight == 1

    try:
        async with serving(provider.app()) as provider_url:
            sender = await daemon("a", provider_url, run_outbox=True)
            await missed_call(sender.store, "+12125550150", time.time())
            sender.wake_outbox()
            await until(in_flight, "the first text to reach the provider")
            starting = await daemon("b", provider_url, run_outbox=False)  # starts mid-send
            assert provider.in_flight == 1  # still being sent, and still the sender's:
            assert await states(starting.store, "outbox", [1]) == {"sending"}

            async def first_sent() -> bool:
                return await states(starting.store, "outbox", [1]) == {"sent"}
            await until(first_sent, "the first text to be sent")
            assert [to for to, _ in provider.taken] == ["+12125550150"]

            assert await states(starting.store, "outbox", [1]) == {"sent"}  # not unknown
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for made in daemons:
            await made.gateway.close()
            await made.store.close()
