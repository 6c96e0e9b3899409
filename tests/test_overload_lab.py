"""A daemon that falls behind reading AMI keeps its session, and records every call.

Above textback's throughput ceiling, or on a host whose CPU is taken by other work, the
daemon reads AMI more slowly than Asterisk writes. Once the socket's buffers are full,
Asterisk's write to the session waits, and Asterisk drops the session when one write has
waited longer than the user's `writetimeout` (100 ms by default): the events still queued
for it are gone, so calls whose Hangup was among them are not seen ending, and the daemon
logs in again. That was the stall past the ceiling (README, "How many missed calls a
second"). The lab's textback user, like the one `textback init` writes, has
`writetimeout = 5000`.

Here the daemon is frozen (SIGSTOP) during a burst until Asterisk's side of the session
stops sending (its send queue full and not moving: Asterisk's write is waiting), then
held so for HELD_SECONDS more, far past the default's 100 ms and well inside 5 s. It
must come back on the same session and record every call of the burst. With Asterisk's
default writetimeout the same test fails: the session is dropped.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time

import pytest

from lab.configs import FLOW_NUMBERS
from lab.flows import OFFLINE_PHONE
from lab.harness import wait_until

pytestmark = pytest.mark.lab

HELD_SECONDS = 1.5  # Asterisk's write waits this long: 15 times the default writetimeout
# About 1 MB of events a second. The frozen reader's receive buffer and Asterisk's send buffer
# (each grown by the kernel up to tcp_rmem's and tcp_wmem's maximum) take 4 s to fill on a quiet
# host and more than 6 s on a loaded one: the burst lasts long enough for both, since a burst
# that ended first would leave the queue still without Asterisk's write ever waiting.
CALLS, RATE = 1200, 100.0


def recorded(db_path, callers: list[str]) -> int:
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM calls WHERE caller BETWEEN ? AND ?"
                          " AND message_id IS NOT NULL", (callers[0], callers[-1])).fetchone()[0]
    finally:
        db.close()


def asterisk_send_queue(ami_port: int) -> int | None:
    """Bytes Asterisk has queued on its AMI session's socket and the reader has not taken
    (`ss`: the Send-Q of the socket whose local port is AMI's); None with no session."""
    out = subprocess.run(["ss", "-tnH", "state", "established", f"( sport = :{ami_port} )"],
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[1]) if out else None


def wait_until_asterisk_blocks(ami_port: int, within: float) -> int:
    """Until Asterisk's send queue to the frozen reader is full: non-empty, and not moving
    for half a second (its write is waiting for room). Returns its size."""
    deadline, last, still_since = time.monotonic() + within, None, None
    while time.monotonic() < deadline:
        queued = asterisk_send_queue(ami_port)
        if queued is None and last:
            raise AssertionError(f"Asterisk dropped the AMI session with {last} bytes queued "
                                 "for the frozen reader (its writetimeout passed)")
        if queued and queued == last:
            still_since = still_since or time.monotonic()
            if time.monotonic() - still_since >= 0.5:
                return queued
        else:
            still_since = None
        last = queued
        time.sleep(0.1)
    raise AssertionError(f"Asterisk's AMI send queue never filled within {within:g} s "
                         f"(last {last} bytes)")


def test_a_daemon_frozen_mid_burst_keeps_its_ami_session_and_records_every_call(
        tmp_path, lab_pbx, lab_daemon):
    daemon = lab_daemon(**{
        "numbers": FLOW_NUMBERS, "text.delay_seconds": 3600,  # the call path alone
        "fraud": {"max_per_prefix_per_hour": 10_000, "max_texts_per_hour": 10_000,
                  "max_texts_per_day": 10_000}})
    callers = [f"+1646556{i:04d}" for i in range(CALLS)]
    playing = lab_pbx.rejected_calls(callers, OFFLINE_PHONE, RATE)
    time.sleep(0.5)
    os.kill(daemon.process.pid, signal.SIGSTOP)
    try:
        queued = wait_until_asterisk_blocks(lab_pbx.ami_port, within=CALLS / RATE)
        time.sleep(HELD_SECONDS)
    finally:
        os.kill(daemon.process.pid, signal.SIGCONT)
    assert queued > 0
    assert playing.wait(60) == 0, "SIPp did not place every call"
    wait_until(lambda: recorded(tmp_path / "textback.db", callers) == CALLS, 90,
               f"all {CALLS} calls recorded")
    log = daemon.log()
    assert log.count("AMI logged in") == 1, "Asterisk dropped the session: " + log[-2000:]
    assert f"{lab_pbx.ami_port} unavailable" not in log and "not recovered" not in log
