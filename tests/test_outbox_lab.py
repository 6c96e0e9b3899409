"""Asterisk goes away while texts are due; they go out as soon as it is back and ready.

The real lab PBX is killed and started again under a running `textback run`:
the texts of calls missed just before keep failing (no AMI) until the new
login. AMI answers that login while Asterisk is still loading its modules (a
MessageSend then fails with "Message technology not found"), so they wait for
its FullyBooted, then go out at once, each exactly once.
"""

from __future__ import annotations

import re
import sqlite3
import time
from datetime import datetime

import pytest

from lab import configs
from lab.configs import BUSINESS_NUMBER
from lab.harness import DaemonProcess, wait_until

pytestmark = pytest.mark.lab

CALLERS = ["+16465550181", "+17185550182", "+13475550183"]
LOGIN = re.compile(r"^(\S+ \S+) INFO +textback\.ami: AMI logged in", re.M)
READY = re.compile(r"^(\S+ \S+) INFO +textback: Asterisk is ready: sending the (\d+) text", re.M)


def stamps(pattern: re.Pattern, log: str) -> list[float]:
    return [datetime.strptime(match[0] if isinstance(match, tuple) else match,
                              "%Y-%m-%d %H:%M:%S,%f").timestamp() for match in pattern.findall(log)]


def logins(log: str) -> list[float]:
    return stamps(LOGIN, log)


def test_texts_that_waited_for_asterisk_go_out_within_two_seconds_of_its_fullybooted(tmp_path, lab_pbx):
    config = configs.lab_config(tmp_path, lab_pbx, **{"text.delay_seconds": 3,
                                                      "ami.reconnect_max_seconds": 1})
    daemon = DaemonProcess(config, tmp_path / "textback.log").start()
    sink = lab_pbx.message_sink()
    try:
        phone = lab_pbx.phone("office1", "noanswer", calls=len(CALLERS))
        calls = [lab_pbx.call(caller, BUSINESS_NUMBER) for caller in CALLERS]
        for call in calls:
            call.wait_success(60)
        phone.wait_success(30)
        lab_pbx.stop_asterisk(crash=True)
        time.sleep(12)  # the texts fall due 3 s into the outage
        lab_pbx.start_asterisk()
        wait_until(lambda: len(logins(daemon.log_since_start())) >= 2, 20, "the second AMI login")
        wait_until(lambda: len(sink.messages()) >= len(CALLERS), 20, "the texts at the carrier")
        time.sleep(3)  # room for a duplicate to show up
        log = daemon.log_since_start()
    finally:
        daemon.stop()
        sink.kill()
        # Texts sent while Asterisk was still booting are retransmitted by PJSIP for up to
        # 32 s (its Timer F); a clean restart drops them, so no later test's sink gets them.
        lab_pbx.stop_asterisk()
        lab_pbx.start_asterisk()
    texted = [caller for m in sink.messages() for caller in CALLERS if caller in m["to"]]
    assert sorted(texted) == sorted(CALLERS)  # each exactly once
    for caller in CALLERS:
        assert f"text to {caller} not sent (not logged in to AMI)" in log  # it did wait for Asterisk
        assert f"text to {caller} failed" not in log
    assert "Message technology not found" not in log  # none went out while Asterisk was loading
    assert [count for _, count in READY.findall(log)] == [str(len(CALLERS))]
    login, ready = logins(log)[-1], stamps(READY, log)[-1]
    assert login <= ready
    db = sqlite3.connect(tmp_path / "textback.db")
    sent = dict(db.execute("SELECT o.recipient, m.sent_at FROM outbox o JOIN messages m"
                           " ON m.id = o.message_id WHERE m.status = 'sent'").fetchall())
    db.close()
    assert sorted(sent) == sorted(CALLERS)
    late = {caller: round(at - ready, 3) for caller, at in sent.items()}
    assert all(-0.001 <= seconds < 2.0 for seconds in late.values()), late  # log stamps have ms


def test_a_messagesend_refused_for_want_of_a_message_technology_is_retried_not_failed(tmp_path, lab_pbx):
    """"Message technology not found" is what Asterisk answers while res_pjsip_messaging is not
    loaded yet (a boot, a module reload): the text is kept and retried, never failed at once.
    Here the real Asterisk answers it because the destination names a technology it lacks."""
    config = configs.lab_config(tmp_path, lab_pbx, **{
        "text.delay_seconds": 1,
        "gateway": {"type": "asterisk", "asterisk": {"destination": "nosuchtech:{to}",
                                                     "from_uri": "sip:{sender}@127.0.0.1"}}})
    daemon = DaemonProcess(config, tmp_path / "textback.log").start()
    try:
        phone = lab_pbx.phone("office1", "noanswer")
        lab_pbx.call(CALLERS[0], BUSINESS_NUMBER).wait_success(60)
        phone.wait_success(30)
        line = wait_until(lambda: re.search(
            rf"text to \{CALLERS[0]} not sent \(MessageSend refused: Message technology not found"
            r"[^)]*\(Asterisk has not loaded its messaging module[^)]*\)\), attempt 1; next in",
            daemon.log_since_start()), 30, "the refused MessageSend, kept for a retry")
        assert line
        log = daemon.log_since_start()
    finally:
        daemon.stop()
    assert f"text to {CALLERS[0]} failed" not in log
    db = sqlite3.connect(tmp_path / "textback.db")
    states = [row[0] for row in db.execute("SELECT o.state FROM outbox o")]
    db.close()
    assert states == ["pending"]
