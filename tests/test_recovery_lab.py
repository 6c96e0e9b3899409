"""Calls that begin and end while textback is not logged in to AMI, on the real lab PBX.

textback runs as a real process; the lab's Asterisk writes its CSV CDR
(cdr_csv) into its instance directory, and the daemon reads it there from
the host, through the chroot path, as it would read
/var/log/asterisk/cdr-csv/Master.csv on a PBX.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from lab import flows
from lab.configs import BUSINESS_NUMBER
from lab.harness import DaemonProcess, wait_until
from textback.workers.pbx import PROGRESS_SAVE_SECONDS, RECOVERY_OVERLAP_SECONDS

pytestmark = pytest.mark.lab

DELAY = 2.0
# Past this, a daemon's saved moment is later than any earlier test's calls plus the overlap,
# so only this test's calls can be recovered.
SETTLED = RECOVERY_OVERLAP_SECONDS + 2 * PROGRESS_SAVE_SECONDS + 1


@pytest.fixture
def daemon(lab_daemon, lab_pbx):
    """textback reading the lab's CSV CDR, texting `DELAY` seconds after a miss."""

    def start(**overrides) -> DaemonProcess:
        return lab_daemon(**{
            "text.delay_seconds": DELAY,
            "recovery": {"max_age_minutes": 30, "cdr": {"type": "csv", "csv": {"path": str(lab_pbx.cdr_csv)}}},
            **overrides})

    return start


def calls_json(config_path) -> list[dict]:
    result = subprocess.run([sys.executable, "-m", "textback", "calls", "-c", str(config_path), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_calls_while_the_daemon_is_down_are_recovered_and_the_missed_ones_texted(lab_pbx, daemon, sink):
    textback_process = daemon()
    time.sleep(SETTLED)
    textback_process.kill()

    missed = flows.no_answer(lab_pbx, "+16465550131", did=BUSINESS_NUMBER)
    missed += flows.caller_hangs_up(lab_pbx, "+16465550132", after=4.0)
    flows.answered(lab_pbx, "+16465550133")
    assert sink.messages() == []

    textback_process.start()
    texts = wait_until(lambda: len(sink.messages()) >= 2 and sink.messages(), 15, "two texts")
    time.sleep(DELAY + 2)
    recipients = [t["to"] for t in sink.messages()]
    assert len(recipients) == 2 and all(any(c in to for to in recipients) for c in missed)
    assert all(BUSINESS_NUMBER in t["from"] for t in texts)
    calls = {c["caller"]: (c["outcome"], c["recovered"]) for c in calls_json(textback_process.config_path)}
    assert calls == {"+16465550131": ("missed", 1), "+16465550132": ("missed", 1),
                     "+16465550133": ("answered", 1)}
    assert "call recovered from the CDR" in textback_process.log_since_start()


def test_a_short_miss_while_asterisk_restarts_is_texted_once(lab_pbx, daemon, sink):
    textback_process = daemon(**{"ami.reconnect_max_seconds": 10})
    time.sleep(SETTLED)
    lab_pbx.stop_asterisk()
    # The daemon now retries every 10 s: the call below begins and ends between two tries.
    wait_until(lambda: "retrying in 10.0 s" in textback_process.log_since_start(), 30,
               "the daemon's reconnect backoff to reach 10 s")
    lab_pbx.start_asterisk()
    logins = textback_process.log_since_start().count("AMI logged in")
    flows.caller_hangs_up(lab_pbx, "+16465550134", after=3.5)
    ended = time.monotonic()
    assert textback_process.log_since_start().count("AMI logged in") == logins, "logged in mid-call"

    [text] = wait_until(lambda: sink.messages(), 10 + DELAY + 5, "the text")
    assert "+16465550134" in text["to"]
    time.sleep(DELAY + 2)
    assert len(sink.messages()) == 1
    [call] = calls_json(textback_process.config_path)
    assert (call["caller"], call["outcome"], call["reason"], call["recovered"]) == (
        "+16465550134", "missed", "caller_hung_up", 1)
    assert time.monotonic() - ended < 10 + DELAY + 5
