"""A fleet on one PostgreSQL and the real lab PBX: the daemon holding the PBX's AMI lease is
killed, or its database session cut, during a burst of missed calls; another takes the PBX
over within 5 s, recovers the gap from the lab's CSV CDR, and every call is texted once.

The daemons are real `textback run` processes on a real PostgreSQL 15 (tests/postgres.py);
the texts go out through the PBX (the asterisk gateway) to the lab's carrier sink.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from lab.configs import FLOW_NUMBERS, lab_config
from lab.flows import OFFLINE_PHONE
from lab.harness import DaemonProcess, wait_until
from textback.core.fleet import pbx_lock_key
from tests.hooks_receiver import Receiver, ReceiverThread, endpoint, new_secret

pytestmark = pytest.mark.lab

TAKEOVER_SECONDS = 5.0
RECEIVER_PORT = 18293
HOLDING = "holding the AMI lease"
STANDING_BY = "standing by"


class Fleet:
    """Daemons on one PostgreSQL database, each with its own directory (config, run lock, log)."""

    def __init__(self, root: Path, lab_pbx, url: str):
        self.root, self.lab_pbx, self.url = root, lab_pbx, url
        self.daemons: dict[str, DaemonProcess] = {}

    def start(self, name: str, ready: str, **overrides) -> DaemonProcess:
        workdir = self.root / name
        workdir.mkdir()
        config = lab_config(workdir, self.lab_pbx, **{
            "storage": {"url": self.url, "path": str(workdir / "textback.db")},
            "numbers": FLOW_NUMBERS,
            "text.delay_seconds": 1,
            # The burst's callers share a prefix: the fraud guard's burst limit is not under test.
            "fraud": {"max_per_prefix_per_hour": 1000, "max_texts_per_hour": 1000},
            "recovery": {"max_age_minutes": 30,
                         "cdr": {"type": "csv", "csv": {"path": str(self.lab_pbx.cdr_csv)}}},
            **overrides,
        })
        daemon = DaemonProcess(config, workdir / "textback.log").start(ready_timeout=30,
                                                                       ready=ready)
        self.daemons[name] = daemon
        return daemon

    def holder(self) -> str:
        """The one daemon listening to the PBX now (its log's last lease line says so)."""
        holding = [name for name, d in self.daemons.items()
                   if d.process.poll() is None and last_lease_line(d.log()) == HOLDING]
        assert len(holding) == 1, f"holders: {holding}"
        return holding[0]

    def stop(self) -> None:
        for daemon in self.daemons.values():
            daemon.stop()


def last_lease_line(log: str) -> str | None:
    """What the daemon last said of the lease: holding it, or not (lost, standing by)."""
    said = None
    for line in log.splitlines():
        if HOLDING in line:
            said = HOLDING
        elif "lost the AMI lease" in line or STANDING_BY in line:
            said = STANDING_BY
    return said


@pytest.fixture
def fleet(tmp_path, lab_pbx, postgres_server, postgres_template):
    url = postgres_server.new_database(template=postgres_template)
    running = Fleet(tmp_path, lab_pbx, url)
    try:
        yield running
    finally:
        running.stop()


def burst(lab_pbx, callers: list[str], rate: float) -> threading.Thread:
    """Missed calls from `callers`, `rate` a second, in the background (the offline phone:
    each call ends at once, unanswered)."""
    def play():
        lab_pbx.rejected_calls(callers, OFFLINE_PHONE, rate).wait_success(60 + len(callers) / rate)
    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    return thread


def texts_to(sink, callers: list[str]) -> Counter:
    """How many texts each of `callers` received."""
    received = Counter()
    for text in sink.messages():
        for caller in callers:
            if caller in text["to"]:
                received[caller] += 1
    return received


def assert_each_texted_once(sink, callers: list[str], within: float) -> None:
    wait_until(lambda: len(texts_to(sink, callers)) == len(callers), within,
               f"a text to each of {len(callers)} callers")
    time.sleep(3)  # a second text would come now, if any did
    counts = texts_to(sink, callers)
    assert all(counts[c] == 1 for c in callers), {c: n for c, n in counts.items() if n != 1}
    assert all(OFFLINE_PHONE in t["from"] for t in sink.messages()
               if any(c in t["to"] for c in callers))


def test_the_holder_killed_mid_burst_another_takes_over_and_every_call_is_texted_once(
        fleet, lab_pbx, sink):
    fleet.start("a", ready="AMI logged in")
    fleet.start("b", ready=STANDING_BY)
    assert fleet.holder() == "a"
    callers = [f"+1646555{200 + i:04d}" for i in range(20)]
    playing = burst(lab_pbx, callers, rate=2)
    time.sleep(4)  # some calls decided and texted by a, some not yet placed
    killed_at = time.monotonic()
    fleet.daemons["a"].kill()
    wait_until(lambda: last_lease_line(fleet.daemons["b"].log()) == HOLDING, TAKEOVER_SECONDS,
               "b to take the PBX over")
    assert time.monotonic() - killed_at < TAKEOVER_SECONDS
    playing.join(90)
    assert_each_texted_once(sink, callers, within=60)
    # The calls that ended while nobody listened (one to two seconds of the burst) came back
    # from the CDR at b's login.
    assert "call recovered from the CDR" in fleet.daemons["b"].log()
    assert "text sent to" in fleet.daemons["a"].log()  # the burst's first texts were a's


def test_a_holder_whose_database_session_is_cut_stops_listening_and_another_takes_over(
        fleet, lab_pbx, sink):
    fleet.start("a", ready="AMI logged in")
    fleet.start("b", ready=STANDING_BY)
    key = pbx_lock_key("127.0.0.1", lab_pbx.ami_port)
    with psycopg.connect(fleet.url, autocommit=True) as admin:
        pids = [row[0] for row in admin.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
            " AND ((classid::bigint << 32) | objid::bigint) = %s", (key,))]
        assert len(pids) == 1
        admin.execute("SELECT pg_terminate_backend(%s)", (pids[0],))
    wait_until(lambda: "lost the AMI lease" in fleet.daemons["a"].log(), 2.5,
               "a to stop listening")
    wait_until(lambda: last_lease_line(fleet.daemons["b"].log()) == HOLDING, TAKEOVER_SECONDS,
               "b to take the PBX over")
    assert fleet.holder() == "b"  # a stands by again: its database answers, b holds the lease
    callers = [f"+1646555{300 + i:04d}" for i in range(5)]
    burst(lab_pbx, callers, rate=5).join(60)
    assert_each_texted_once(sink, callers, within=30)


def test_three_daemons_through_a_burst_text_mail_and_deliver_each_thing_once(
        fleet, lab_pbx, sink, smtp_sink):
    """Every daemon runs the alert, notice and delivery workers on the shared rows; the claims
    hold: each text, alert and webhook delivery goes out once."""
    hooks = Receiver(new_secret())
    with ReceiverThread(hooks, RECEIVER_PORT) as receiver:
        crm = endpoint(fleet.root, "crm", receiver.url, hooks.secret)
        crm["secret"] = {"file": str(fleet.root / "crm.whsec")}  # one file for the three
        for name, ready in (("a", "AMI logged in"), ("b", STANDING_BY), ("c", STANDING_BY)):
            fleet.start(name, ready, **{"webhooks": {"endpoints": [crm]}})
        callers = [f"+1646555{400 + i:04d}" for i in range(20)]
        burst(lab_pbx, callers, rate=5).join(60)
        assert_each_texted_once(sink, callers, within=60)
        replies = {caller: f"reply {index} from the burst" for index, caller in enumerate(callers)}
        for caller, body in replies.items():
            assert lab_pbx.send_sms(caller, OFFLINE_PHONE, body) == 202

        def alerts() -> Counter:
            mailed = Counter()
            for received in smtp_sink.received:
                text = received.message.get_body(("plain",)).get_content()
                for body in replies.values():
                    if body in text:
                        mailed[body] += 1
            return mailed

        wait_until(lambda: len(alerts()) == len(replies), 60, "an alert for each reply")
        expected = {"call.missed": 20, "text.sent": 20, "reply.received": 20}
        wait_until(lambda: all(len(hooks.of_type(k)) >= n for k, n in expected.items()), 60,
                   "every event at the webhook receiver")
        time.sleep(5)  # a second alert or delivery would come now, if any did
        assert all(n == 1 for n in alerts().values()), alerts()
        assert len(hooks.deliveries) == len(hooks.ids())  # no event delivered twice
        assert {k: len(hooks.of_type(k)) for k in expected} == expected


def test_a_standby_tells_systemd_it_is_ready_without_an_ami_login(
        fleet, tmp_path, monkeypatch):
    """Under `Type=notify`, a standby that waited for an AMI login would be killed by systemd
    at TimeoutStartSec: it is ready once it serves, and says so."""
    fleet.start("a", ready="AMI logged in")
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(address)
        notify.settimeout(20)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        standby = fleet.start("b", ready=STANDING_BY)
        datagrams = []
        while not any(d.startswith(b"READY=1") for d in datagrams):
            datagrams.append(notify.recv(4096))
    assert "AMI logged in" not in standby.log()
    assert fleet.holder() == "a"
