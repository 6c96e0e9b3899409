"""Owners on the real lab PBX: round robin, SIP MESSAGE reply -> alert -> email reply -> SIP MESSAGE.

The owner's reply goes through textback's own SMTP listener with smtplib, as
a mail client would; the homeowner's side is the SIPp carrier.
"""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage

import pytest

from lab import configs, flows
from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from lab.harness import DaemonProcess, wait_until

pytestmark = pytest.mark.lab

REPLY_PORT = 15027
DOMAIN = "reply.acme.example"
OWNERS = [{"id": "dana", "name": "Dana Reyes", "email": "dana@acme.example"},
          {"id": "sam", "name": "Sam Ortiz", "email": "sam@acme.example"},
          {"id": "boss", "name": "Pat Boss", "email": "boss@acme.example"}]
SECOND_CALLER = "+12125550124"


def textback(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "textback", *args], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def owner_mail(sender: str, reply_to: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, reply_to, "Re: your text"
    message.set_content(body)
    return message


def send_mail(message: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", REPLY_PORT, timeout=10) as client:
        client.send_message(message)


@pytest.fixture
def running(tmp_path, lab_pbx, smtp_sink):
    raw_numbers = [{"number": BUSINESS_NUMBER, "owner": "dana", "assignment": "round_robin",
                    "owners": ["dana", "sam"]},
                   {"number": configs.RING_GROUP_NUMBER, "owner": "dana"}]
    path = configs.lab_config(tmp_path, lab_pbx, **{
        "text.delay_seconds": 0, "owners": OWNERS, "numbers": raw_numbers,
        "reply_mail": {"domain": DOMAIN, "listen_port": REPLY_PORT},
        "escalation": {"backup_owner": "boss", "after_minutes": 0.05}})
    daemon = DaemonProcess(path, tmp_path / "textback.log").start()
    sink = lab_pbx.message_sink()
    yield path, sink
    sink.kill()
    daemon.stop()


def miss(lab_pbx, caller: str) -> None:
    flows.no_answer(lab_pbx, caller, did=BUSINESS_NUMBER, phone="office1")


def test_round_robin_reply_by_email_and_the_scorecard(lab_pbx, running, smtp_sink):
    path, sink = running
    miss(lab_pbx, HOMEOWNER)
    miss(lab_pbx, SECOND_CALLER)
    wait_until(lambda: len(sink.messages()) >= 2, 10, "two missed-call texts")
    inbox = {r["caller"]: r["owner_id"] for r in json.loads(textback("inbox", "-c", str(path),
                                                                     "--json"))}
    assert inbox == {HOMEOWNER: "dana", SECOND_CALLER: "sam"}  # round robin, in call order

    assert lab_pbx.send_sms(HOMEOWNER, BUSINESS_NUMBER, "Yes, kitchen. When can you come?") < 300
    alert = smtp_sink.wait_for(1, 10)[0]
    assert alert.recipients == ["dana@acme.example"]
    reply_to = alert.message["Reply-To"]

    # a stranger, and the other owner, are refused; nothing reaches the homeowner
    for sender in ("stranger@evil.example", "sam@acme.example"):
        with pytest.raises(smtplib.SMTPDataError):
            send_mail(owner_mail(sender, reply_to, "Send this"))
    send_mail(owner_mail("dana@acme.example", reply_to,
                         "Tuesday at 10 works. See you then!\n\nDana\n--\nAcme Remodeling\n\n"
                         "On Thu, Nov 26, 2026, textback wrote:\n> Yes, kitchen. When can you come?\n"))
    texts = wait_until(lambda: [m for m in sink.messages() if m["body"].startswith("Tuesday")],
                       10, "the owner's reply as SIP MESSAGE")
    assert [t["body"] for t in texts] == ["Tuesday at 10 works. See you then!"]
    assert HOMEOWNER in texts[0]["to"] and BUSINESS_NUMBER in texts[0]["from"]
    time.sleep(0.5)
    assert len(sink.messages()) == 3  # two missed-call texts and the one reply

    send_mail(owner_mail("dana@acme.example", reply_to, "#won 82000"))
    report = json.loads(textback("report", "-c", str(path), "--format", "json"))
    [card] = [c for c in report["numbers"] if c["business_number"] == BUSINESS_NUMBER]
    assert (card["won"], card["won_value"], card["missed_calls"], card["replies"]) == (1, 82000, 2, 1)


def test_an_unanswered_reply_escalates_to_the_backup_owner(lab_pbx, running, smtp_sink):
    path, sink = running
    miss(lab_pbx, HOMEOWNER)
    wait_until(sink.messages, 10, "the missed-call text")
    assert lab_pbx.send_sms(HOMEOWNER, BUSINESS_NUMBER, "Hello? Anyone?") < 300
    mails = smtp_sink.wait_for(2, 40)
    assert mails[0].recipients == ["dana@acme.example"]  # the alert to the owner
    assert mails[1].recipients == ["boss@acme.example"]  # after_minutes: 3 s, then escalated
    assert mails[1].message["Subject"].startswith("Unanswered: text from " + HOMEOWNER)
