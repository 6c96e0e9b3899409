"""The vertical slice on the real lab PBX: missed call -> text -> reply -> owner email.

Every test here drives a real Asterisk with SIPp actors and runs `textback run`
as a real process. They never skip: if the lab cannot start, they fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from lab import configs
from lab.configs import BUSINESS_NUMBER, HOMEOWNER, RING_GROUP_NUMBER
from lab.harness import wait_until

pytestmark = pytest.mark.lab

DELAY = 2.0
GRACE = 0.5


def lab_config(tmp_path, lab_pbx, **overrides):
    return configs.lab_config(tmp_path, lab_pbx, **{"text.delay_seconds": DELAY, **overrides})


@pytest.fixture
def daemon(lab_daemon):
    return lambda **overrides: lab_daemon(**{"text.delay_seconds": DELAY, **overrides})


def textback(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "textback", *args],
                          capture_output=True, text=True, timeout=60)


def thread_json(config_path, number=HOMEOWNER) -> list[dict]:
    result = textback("thread", "-c", str(config_path), number, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_missed_call_is_texted_and_the_reply_reaches_the_owner(lab_pbx, daemon, sink, smtp_sink):
    textback_process = daemon()
    phone = lab_pbx.phone("office1", "noanswer")
    call = lab_pbx.call(HOMEOWNER, BUSINESS_NUMBER)
    call.wait(30)
    hung_up = time.monotonic()
    phone.kill()

    [text] = wait_until(lambda: sink.messages(), DELAY + GRACE + 2, "the SIP MESSAGE at the carrier")
    arrived = time.monotonic() - hung_up
    assert arrived <= DELAY + 2, f"text arrived {arrived:.2f} s after the hangup"
    assert BUSINESS_NUMBER in text["from"] and HOMEOWNER in text["to"]
    assert text["body"] == ("Hi, this is Acme Remodeling. Sorry we missed your call!"
                            " Reply STOP to opt out.")
    time.sleep(1)
    assert len(sink.messages()) == 1

    assert lab_pbx.send_sms(HOMEOWNER, BUSINESS_NUMBER, "Yes! Kitchen remodel, about 75k, café ☕") < 300
    [mail] = smtp_sink.wait_for(1, 10)
    assert mail.recipients == ["dana@example.com"]
    plain = mail.message.get_body(("plain",)).get_content()
    assert "Kitchen remodel, about 75k, café ☕" in plain
    assert "(212) 555-0123" in plain and "(212) 555-0123" in mail.message["Subject"]

    kinds = [row["kind"] for row in thread_json(textback_process.config_path)]
    assert [kind for kind in kinds if kind != "intake"] == ["call", "text_out", "text_in", "alert"]
    assert "intake" in kinds  # "Kitchen remodel, about 75k": read and kept with the reply
    shown = textback("thread", "-c", str(textback_process.config_path), HOMEOWNER).stdout
    lines = [line for line in shown.splitlines() if "  intake  " not in line]
    assert "missed (nobody picked up)" in lines[0] and "text sent" in lines[1]
    assert "reply" in lines[2] and "owner alert" in lines[3]
    assert "project: Kitchen (read from the reply)" in shown


def test_answered_call_is_not_texted(lab_pbx, daemon, sink):
    textback_process = daemon()
    phone = lab_pbx.phone("office1", "answer", answer_after=1.0, talk_seconds=2.0)
    lab_pbx.call(HOMEOWNER, BUSINESS_NUMBER, talk_seconds=2.0).wait(30)
    phone.wait(10)
    calls = wait_until(lambda: [r for r in thread_json(textback_process.config_path)
                                if r["kind"] == "call"], 5, "the call record")
    assert [(c["status"], c["detail"]) for c in calls] == [("answered", "answered")]
    time.sleep(DELAY + 1)
    assert sink.messages() == []


def test_ring_group_answered_by_the_second_phone_is_not_texted(lab_pbx, daemon, sink):
    textback_process = daemon()
    first = lab_pbx.phone("office1", "noanswer")
    second = lab_pbx.phone("office2", "answer", answer_after=1.5, talk_seconds=2.0)
    lab_pbx.call(HOMEOWNER, RING_GROUP_NUMBER, talk_seconds=2.0).wait(30)
    second.wait(10)
    first.kill()
    calls = wait_until(lambda: [r for r in thread_json(textback_process.config_path)
                                if r["kind"] == "call"], 5, "the call record")
    assert [(c["status"], c["detail"]) for c in calls] == [("answered", "answered")]
    time.sleep(DELAY + 1)
    assert sink.messages() == []


def test_a_daemon_killed_before_the_due_time_sends_exactly_once_after_restart(
        lab_pbx, daemon, sink):
    textback_process = daemon(**{"text.delay_seconds": 8})
    phone = lab_pbx.phone("office1", "noanswer")
    lab_pbx.call(HOMEOWNER, BUSINESS_NUMBER).wait(30)
    phone.kill()
    wait_until(lambda: "text due at" in textback_process.log_since_start(), 5, "the queued text")
    textback_process.kill()
    assert sink.messages() == []

    textback_process.start()
    wait_until(lambda: sink.messages(), 15, "the text after the restart")
    time.sleep(2)
    assert len(sink.messages()) == 1
    statuses = [r["status"] for r in thread_json(textback_process.config_path)
                if r["kind"] == "text_out"]
    assert statuses == ["sent"]


def test_check_passes_against_the_lab_and_names_a_wrong_secret(lab_pbx, tmp_path, smtp_sink):
    good = lab_config(tmp_path, lab_pbx)
    result = textback("check", "-c", str(good))
    assert result.returncode == 0, result.stdout + result.stderr
    checked = {line.split()[1].rstrip(":"): line.split()[0]
               for line in result.stdout.splitlines() if line and not line.startswith(" ")}
    assert {"ami", "gateway", "smtp", "photos"} <= set(checked), result.stdout
    assert set(checked.values()) == {"ok"}, result.stdout

    (tmp_path / "wrong.secret").write_text("wrong")
    bad = lab_config(tmp_path, lab_pbx, **{"ami.secret": {"file": str(tmp_path / "wrong.secret")}})
    result = textback("check", "-c", str(bad))
    assert result.returncode == 1
    [ami_line] = [line for line in result.stdout.splitlines() if " ami:" in line]
    assert ami_line.startswith("FAIL") and "refused" in ami_line


def test_test_text_goes_out_through_the_gateway_and_its_reply_reaches_the_owner(
        lab_pbx, daemon, sink, smtp_sink, tmp_path):
    running = daemon()
    installer_cell = "+12125550160"
    result = textback("test-text", "-c", str(running.config_path), installer_cell)
    assert result.returncode == 0, result.stderr
    [message] = wait_until(lambda: [m for m in sink.messages() if installer_cell in m["to"]], 15,
                           "the test text at the carrier")
    assert BUSINESS_NUMBER in message["from"]
    assert message["body"].startswith("Acme Remodeling: this is a test text from textback.")
    assert lab_pbx.send_sms(installer_cell, BUSINESS_NUMBER, "Got it, works!") < 300
    [mail] = smtp_sink.wait_for(1, 15)
    assert mail.recipients == ["dana@example.com"] and "Got it, works!" in mail.message.as_string()
