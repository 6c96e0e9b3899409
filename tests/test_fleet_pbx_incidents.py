"""Incidents in a fleet: two daemons on one real PostgreSQL 15, each holding one of two PBXs
(AMI peers on loopback replaying the lab's recorded calls, tests/test_pbxs.py).

A PBX's incidents are judged by the daemon holding its lease: PBX south's `no_call_events`
opens while PBX north, whose calls flow, stays closed, and the daemon standing by for south
neither opens nor closes it. When south moves to another daemon, that one takes the incident
over: no second one, no recovery until it sees a call on south itself. An incident seen from
one daemon's own view (the gateway failing for it) is closed by that daemon alone.
"""

from __future__ import annotations

import asyncio
import time

from lab.configs import ALWAYS_OPEN, write_config
from lab.harness import eventually
from textback.config import load
from textback.core.fleet import pbx_lock_key
from textback.daemon import Daemon
from textback.store.postgres.fleet import AdvisoryLease
from tests.test_pbxs import TracePbx, subject, two_pbx_config

HOUR = 3600.0


class Running:
    """A daemon run in this process until `stop`, from its own directory (its own run lock)."""

    def __init__(self, home, north: int, south: int, database: str):
        home.mkdir()
        config = two_pbx_config(home, north, south, admin_email="it@acme.example",
                                hours={"windows": ALWAYS_OPEN}, incidents={"no_calls_hours": 1},
                                **{"storage.url": database})
        self.daemon = Daemon(load(write_config(home, config)))
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.daemon.run(self._stop))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self._task, 30)

    def holds(self, index: int) -> bool:
        pbx = self.daemon.pbxs[index] if len(self.daemon.pbxs) > index else None
        return pbx is not None and pbx.logged_in and pbx.lease is not None and pbx.lease.holding

    def stands_by(self, index: int) -> bool:
        pbx = self.daemon.pbxs[index] if len(self.daemon.pbxs) > index else None
        return pbx is not None and pbx.lease is not None and pbx.lease.standing_by

    async def check(self, now: float) -> None:
        await self.daemon.incidents.check_incidents(now)


async def _true(value: bool) -> bool:
    return value


async def open_incidents(store) -> list[tuple[str, str]]:
    return sorted((row["kind"], row["pbx"]) for row in await store.open_incidents())


async def test_each_pbx_is_judged_by_its_holder_and_a_daemons_own_view_by_that_daemon(
        tmp_path, smtp_sink, postgres_server, postgres_template):
    database = postgres_server.new_database(template=postgres_template)
    north, south = await TracePbx().start(), await TracePbx().start()
    # South's lease is held elsewhere while daemon a starts: a takes north and stands by for
    # south. Then a tries south no more for the test's length, so that b takes it.
    placeholder = AdvisoryLease(database, None, pbx_lock_key("127.0.0.1", south.port))
    assert await placeholder.take()
    a = Running(tmp_path / "a", north.port, south.port, database)
    b = c = None
    try:
        await eventually(lambda: _true(a.holds(0) and a.stands_by(1)), 15, "a holds north")
        a.daemon.pbxs[1].lease._retry = 3600  # noqa: SLF001 - a's next try of south is its last
        await asyncio.sleep(1.5)  # that try, while the placeholder still holds south
        b = Running(tmp_path / "b", north.port, south.port, database)
        await eventually(lambda: _true(b.stands_by(0) and b.stands_by(1)), 15, "b standing by")
        await placeholder.drop()
        await eventually(lambda: _true(b.holds(1)), 15, "b holds south")
        assert a.stands_by(1) and b.stands_by(0)

        # Each has held its PBX for two hours of business hours: north carried calls, south none.
        now = time.time()
        a.daemon.watch.held_since["north"] = b.daemon.watch.held_since["south"] = now - 2 * HOUR
        await north.play("noanswer", "n1")
        await eventually(lambda: _true("north" in a.daemon.watch.call_event_at), 10,
                         "north's call event")
        for daemon in (a, b, a, b):  # each judges twice: nothing more is opened or closed
            await daemon.check(time.time())
        assert await open_incidents(a.daemon.store) == [("no_call_events", "south")]
        [opened] = await asyncio.to_thread(smtp_sink.wait_for, 1, 10)
        assert subject(opened) == ("textback incident: no calls seen on PBX south during "
                                   "business hours")
        assert "PBX south: no call event from AMI for 2.0 hours" in opened.message.get_content()
        assert not any(key.pbx == "north" for key in a.daemon.watch.ami_behind_at)

        # The gateway fails for a alone: its incident, which b, whose sends go through, leaves
        # open; a closes it once its own sends go through again.
        for _ in range(5):
            a.daemon.watch.send_failed("HTTP 503 from the gateway")
        await a.check(time.time())
        b.daemon.watch.send_accepted()
        await b.check(time.time())
        assert await open_incidents(b.daemon.store) == [("gateway_failing", ""),
                                                        ("no_call_events", "south")]
        [row] = [r for r in await b.daemon.store.open_incidents() if r["kind"] == "gateway_failing"]
        assert not row["opened_here"] and not row["opener_gone"]
        assert row["summary"].endswith(f"(seen by the daemon on {row['opened_on']})")
        a.daemon.watch.send_accepted()
        await a.check(time.time())
        assert await open_incidents(a.daemon.store) == [("no_call_events", "south")]

        # b goes; south moves to c, a daemon just started: c takes the incident over, neither
        # opening it again nor closing it, until it sees a call on south itself.
        await b.stop()
        b = None
        c = Running(tmp_path / "c", north.port, south.port, database)
        await eventually(lambda: _true(c.holds(1) and c.stands_by(0)), 15, "c holds south")
        await c.check(time.time())
        await c.check(time.time())
        assert await open_incidents(c.daemon.store) == [("no_call_events", "south")]
        assert len(smtp_sink.received) == 3  # south's, a's gateway opened and recovered
        await south.play("busy", "s1")
        await eventually(lambda: _true("south" in c.daemon.watch.call_event_at), 10,
                         "south's call event")
        await c.check(time.time())
        assert await open_incidents(c.daemon.store) == []
        mails = await asyncio.to_thread(smtp_sink.wait_for, 4, 10)
        assert sorted(subject(m) for m in mails) == [
            "textback incident: no calls seen on PBX south during business hours",
            "textback incident: the SMS gateway keeps failing",
            "textback recovered: no calls seen on PBX south during business hours",
            "textback recovered: the SMS gateway keeps failing"]
    finally:
        for running in (c, b, a):
            if running is not None:
                await running.stop()
        await placeholder.drop()
        await north.stop()
        await south.stop()
