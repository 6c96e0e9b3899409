"""The fleet's pieces on a real PostgreSQL 15 (tests/postgres.py): the PBX's advisory lease,
its holder that stops listening the moment its database session is cut, and the wake-ups
through LISTEN/NOTIFY, each on a connection of its own."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psycopg
import pytest

from textback.core.fleet import WAKE_CHANNEL, parse_wake, pbx_lock_key
from textback.store import CallRow, PlannedText
from textback.store.postgres import PostgresStore
from textback.store.postgres.fleet import AdvisoryLease, WakeConnection
from textback.workers.ami_lease import AmiLease
from textback.workers.wakeups import WakeListener

KEY = pbx_lock_key("pbx.example", 5038)


@pytest.fixture
def database(postgres_server, postgres_template):
    return postgres_server.new_database(template=postgres_template)


def lease_pids(url: str, key: int) -> list[int]:
    """The backends that hold advisory lock `key`, as pg_locks shows them."""
    with psycopg.connect(url, autocommit=True) as connection:
        return [row[0] for row in connection.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
            " AND ((classid::bigint << 32) | objid::bigint) = %s", (key,))]


def terminate(url: str, pids: list[int]) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        for pid in pids:
            connection.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_the_lock_key_is_the_pbx_address_alone():
    assert pbx_lock_key("PBX.example ", 5038) == KEY  # every daemon computes the same key
    assert pbx_lock_key("pbx.example", 5039) != KEY
    assert pbx_lock_key("other.example", 5038) != KEY
    assert -2**63 <= KEY < 2**63  # PostgreSQL's bigint


def test_a_wake_payload_is_a_known_table_and_an_id():
    assert parse_wake("outbox:42") == ("outbox", 42)
    assert parse_wake("alerts:7") == ("alerts", 7)
    assert parse_wake("messages:7") is None
    assert parse_wake("outbox:1; DROP") is None
    assert parse_wake("") is None


async def test_one_lease_at_a_time_and_freed_when_its_session_ends(database):
    first, second = AdvisoryLease(database, None, KEY), AdvisoryLease(database, None, KEY)
    other_pbx = AdvisoryLease(database, None, pbx_lock_key("other.example", 5038))
    try:
        assert await first.take()
        assert not await second.take()
        assert await other_pbx.take()  # another PBX is another lock
        assert await first.alive(1.0)
        assert len(lease_pids(database, KEY)) == 1
        await first.drop()  # the session ends: the server frees the lock
        assert await second.take()
        assert not await first.alive(1.0)
    finally:
        for lease in (first, second, other_pbx):
            await lease.drop()


async def test_a_terminated_session_is_noticed_by_the_next_check(database):
    lease = AdvisoryLease(database, None, KEY)
    try:
        assert await lease.take()
        terminate(database, lease_pids(database, KEY))
        assert not await lease.alive(1.0)
    finally:
        await lease.drop()


async def test_an_unreachable_database_is_a_clear_error(postgres_server):
    lease = AdvisoryLease(postgres_server.url("no_such_database"), None, KEY)
    with pytest.raises(ConnectionError, match="cannot connect to PostgreSQL"):
        await lease.take()


class Listener:
    """What the daemon does on holding and losing the lease, with the moments it happened."""

    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    async def listen(self) -> None:
        self.log.append((self.name, "listen", time.monotonic()))

    async def stop(self) -> None:
        self.log.append((self.name, "stop", time.monotonic()))


def listening(log: list) -> list[str]:
    """Who listens now, replaying the log."""
    now: list[str] = []
    for name, what, _ in log:
        if what == "listen":
            now.append(name)
        else:
            now.remove(name)
    return now


async def wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"waited {seconds} s for {what}")


async def test_one_daemon_listens_and_a_cut_holder_stops_before_another_takes_over(database):
    log: list = []
    workers = {}
    for name in ("a", "b", "c"):
        listener = Listener(name, log)
        workers[name] = AmiLease(AdvisoryLease(database, None, KEY), "pbx.example:5038",
                                 listener.listen, listener.stop)
    tasks = [asyncio.create_task(w.run()) for w in workers.values()]
    try:
        await wait_for(lambda: listening(log), 5, "a holder")
        await asyncio.sleep(1.5)  # the standbys have tried again meanwhile
        assert len(listening(log)) == 1
        holder = listening(log)[0]
        assert workers[holder].holding
        assert all(w.standing_by for n, w in workers.items() if n != holder)

        cut_at = time.monotonic()
        terminate(database, lease_pids(database, KEY))  # the holder's database session is cut
        await wait_for(lambda: listening(log) and listening(log) != [holder], 5,
                       "another daemon to take over")
        stopped = next(at for name, what, at in log if name == holder and what == "stop")
        taken = next(at for name, what, at in log if what == "listen" and at > cut_at)
        assert stopped - cut_at < 2.0  # at the next check: every second, answer within 0.8 s
        assert stopped < taken  # never two listeners at once
        assert taken - cut_at < 5.0
        await asyncio.sleep(1.5)
        assert len(listening(log)) == 1  # the former holder stands by, it does not listen again
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert listening(log) == []  # a stopped worker stops listening and frees the lease
    assert lease_pids(database, KEY) == []


class SocketProxy:
    """A Unix-socket relay in front of the test server's socket, which a test can freeze: the
    bytes stop flowing both ways and nothing is closed, as when a network is cut."""

    def __init__(self, server_socket: Path, directory: Path):
        self._upstream = str(server_socket)
        self.directory = directory
        self.frozen = False
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(
            self._relay, str(self.directory / ".s.PGSQL.5432"))

    def url(self, database_url: str) -> str:
        return database_url.split("?host=")[0] + f"?host={self.directory}"

    async def _relay(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self._upstream)
        self._writers += [writer, up_writer]

        async def pipe(source, sink):
            while data := await source.read(65536):
                while self.frozen:
                    await asyncio.sleep(0.05)
                sink.write(data)
                await sink.drain()
            while self.frozen:  # a cut link carries no end either
                await asyncio.sleep(0.05)
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer),
                             return_exceptions=True)

    def cut(self) -> None:
        """The far end gives up on the dead link at last: every relayed connection closes."""
        for writer in self._writers:
            writer.transport.abort()
        self._server.close()


async def test_a_holder_whose_database_stops_answering_stops_listening_at_once(
        database, postgres_server, tmp_path):
    """A cut network refuses nothing: the check is left unanswered, and its timeout stops the
    listening. The server frees the lock once it drops the session; then another takes over."""
    log: list = []
    proxy = SocketProxy(postgres_server.root / ".s.PGSQL.5432", tmp_path)
    await proxy.start()
    cut_off = AmiLease(AdvisoryLease(proxy.url(database), None, KEY), "pbx.example:5038",
                       Listener("cut", log).listen, Listener("cut", log).stop)
    first = asyncio.create_task(cut_off.run())
    await wait_for(lambda: listening(log) == ["cut"], 5, "the lease")
    other = AmiLease(AdvisoryLease(database, None, KEY), "pbx.example:5038",
                     Listener("other", log).listen, Listener("other", log).stop)
    second = asyncio.create_task(other.run())
    try:
        await wait_for(lambda: other.standing_by, 5, "the other daemon to stand by")
        frozen_at = time.monotonic()
        proxy.frozen = True
        await wait_for(lambda: listening(log) == [], 3, "the holder to stop listening")
        assert log[-1][:2] == ("cut", "stop") and log[-1][2] - frozen_at < 2.5
        await asyncio.sleep(1.5)
        assert listening(log) == []  # the server still holds the session: nobody may listen
        proxy.cut()
        await wait_for(lambda: listening(log) == ["other"], 5, "the other daemon to take over")
    finally:
        for task in (first, second):
            task.cancel()
        await asyncio.gather(first, second, return_exceptions=True)


async def test_a_row_another_daemon_inserts_wakes_this_ones_worker(database):
    store = await PostgresStore.open(database)
    wakes = {table: asyncio.Event() for table in ("outbox", "alerts", "notices", "events", "media")}
    listening = {table: [wake] for table, wake in wakes.items()}
    listener = WakeListener(WakeConnection(database, None, WAKE_CHANNEL), listening)
    task = asyncio.create_task(listener.run())
    try:
        await wait_for(lambda: all(w.is_set() for w in wakes.values()), 5,
                       "the listener to connect (it wakes every worker once)")
        for wake in wakes.values():
            wake.clear()
        now = time.time()
        call = CallRow(linkedid="1700000000.1", business_number="+12125550100",
                       caller_raw="+12125550123", caller="+12125550123", caller_name="",
                       started_at=now - 10, answered_at=None, ended_at=now, outcome="missed",
                       reason="no_answer", decision="missed_call_text")
        sent_at = time.monotonic()
        outbox_id = await store.record_call(call, PlannedText("dana", "Hi", now))
        await wait_for(lambda: wakes["outbox"].is_set(), 2, "the outbox's wake-up")
        assert time.monotonic() - sent_at < 0.5  # not a poll: the notification
        assert outbox_id is not None
        assert wakes["events"].is_set()  # the call's webhook event: the deliveries wake
        assert not wakes["alerts"].is_set() and not wakes["notices"].is_set()
        assert listener.received >= 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


async def test_the_notification_carries_the_ids_only_and_follows_the_commit(database):
    store = await PostgresStore.open(database)
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as listen:
        await listen.execute(f"LISTEN {WAKE_CHANNEL}")
        notice_id = await store.queue_notice("Dana", "dana@example.com", "Subject",
                                             "a body that must not travel")
        payloads = []

        async def collect():
            async for notify in listen.notifies():
                payloads.append(notify.payload)
                return
        await asyncio.wait_for(collect(), 2)
    await store.close()
    assert payloads == [f"notices:{notice_id}"]


async def test_a_lost_listening_connection_comes_back_and_wakes_every_worker(database):
    """Notifications sent while the listener was away are lost: on its return every worker
    looks once, and later rows wake them again."""
    store = await PostgresStore.open(database)
    wakes = {table: asyncio.Event() for table in ("outbox", "alerts", "notices", "events", "media")}
    listening = {table: [wake] for table, wake in wakes.items()}
    listener = WakeListener(WakeConnection(database, None, WAKE_CHANNEL), listening,
                            reconnect_seconds=0.2)
    task = asyncio.create_task(listener.run())
    try:
        await wait_for(lambda: all(w.is_set() for w in wakes.values()), 5, "the first listen")
        for wake in wakes.values():
            wake.clear()
        with psycopg.connect(database, autocommit=True) as admin:
            [pid] = [row[0] for row in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%%'"
                " AND pid <> pg_backend_pid()")]
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await wait_for(lambda: all(w.is_set() for w in wakes.values()), 5,
                       "every worker woken on the listener's return")
        for wake in wakes.values():
            wake.clear()
        await store.queue_notice("Dana", "dana@example.com", "Subject", "body")
        await wait_for(lambda: wakes["notices"].is_set(), 2, "the notice's wake-up")
        assert not wakes["outbox"].is_set()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
