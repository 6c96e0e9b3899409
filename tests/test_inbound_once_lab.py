"""A SIP MESSAGE the carrier delivers twice is one text: stored once, alerted once, answered once.

The carrier (SIPp) sends the same MESSAGE again in a new transaction, with the
same Call-ID and CSeq, as a carrier does when it missed the 202. PJSIP cannot
tell (new Via branch), so the dialplan raises the UserEvent twice; the
daemon recognises the second by the Call-ID and CSeq the dialplan passes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from lab import configs
from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from lab.harness import DaemonProcess, wait_until

pytestmark = pytest.mark.lab

CALL_ID = "a84b4c76e66710@carrier.example"


def test_the_same_sip_message_twice_is_stored_alerted_and_answered_once(tmp_path, lab_pbx,
                                                                        smtp_sink):
    path = configs.lab_config(tmp_path, lab_pbx)
    daemon = DaemonProcess(path, tmp_path / "textback.log").start()
    sink = lab_pbx.message_sink()
    try:
        for _ in range(2):
            assert lab_pbx.send_sms(HOMEOWNER, BUSINESS_NUMBER, "HELP", call_id=CALL_ID) == 202
        [alert] = smtp_sink.wait_for(1, 10)
        wait_until(sink.messages, 10, "the help text")
        wait_until(lambda: "duplicate delivery" in daemon.log_since_start(), 10,
                   "the second delivery to be recognised")
        time.sleep(1.5)  # room for a second alert or help text to show up
        assert len(smtp_sink.received) == 1 and alert.recipients == ["dana@example.com"]
        assert len(sink.messages()) == 1
        assert f"duplicate delivery of message {CALL_ID} 1 MESSAGE ignored" in daemon.log()
        thread = subprocess.run([sys.executable, "-m", "textback", "thread", "-c", str(path),
                                 HOMEOWNER, "--json"], capture_output=True, text=True, timeout=30)
        kinds = [row["kind"] for row in json.loads(thread.stdout)]
        assert kinds.count("text_in") == 1 and kinds.count("alert") == 1
    finally:
        sink.kill()
        daemon.stop()
