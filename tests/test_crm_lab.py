"""The hand-off on the real lab PBX: a missed call and its reply reach a webhook receiver; a win
posted through the API shows in `textback report`."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from lab.harness import wait_until
from tests.hooks_receiver import Receiver, ReceiverThread, endpoint, new_secret

pytestmark = pytest.mark.lab

RECEIVER_PORT = 18291
API_PORT = 18292


def textback(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "textback", *args], capture_output=True,
                          text=True, timeout=60)


def test_a_missed_call_and_reply_reach_the_crm_and_a_win_posted_back_counts(
        tmp_path, lab_pbx, lab_daemon, sink, smtp_sink):
    crm = Receiver(new_secret())
    with ReceiverThread(crm, RECEIVER_PORT) as receiver:
        process = lab_daemon(**{
            "text.delay_seconds": 1,
            "webhooks": {"endpoints": [endpoint(tmp_path, "crm", receiver.url, crm.secret)]},
            "web": {"port": API_PORT, "public_url": "https://textback.acme.example"}})
        config = str(process.config_path)
        phone = lab_pbx.phone("office1", "noanswer")
        lab_pbx.call(HOMEOWNER, BUSINESS_NUMBER).wait(30)
        phone.kill()
        wait_until(lambda: sink.messages(), 10, "the text at the carrier")
        lab_pbx.send_sms(HOMEOWNER, BUSINESS_NUMBER, "Yes please, kitchen remodel")

        def arrived():
            kinds = [d.event["type"] for d in crm.deliveries]
            return kinds if {"call.missed", "text.sent", "reply.received"} <= set(kinds) else None
        kinds = wait_until(arrived, 20, "call.missed, text.sent and reply.received at the CRM")

        token = textback("token", "create", "-c", config, "--scope", "write", "--name", "crm")
        assert token.returncode == 0, token.stderr
        missed = next(d.event["data"] for d in crm.deliveries if d.event["type"] == "call.missed")
        request = urllib.request.Request(
            f"http://127.0.0.1:{API_PORT}/api/v1/conversations/{missed['conversation_id']}/outcome",
            data=json.dumps({"stage": "won", "value": 82000, "external_ref": "deal-7"}).encode(),
            headers={"Authorization": f"Bearer {token.stdout.splitlines()[0]}",
                     "Content-Type": "application/json", "Idempotency-Key": "deal-7-won"},
            method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
        wait_until(lambda: any(d.event["type"] == "outcome.changed" for d in crm.deliveries), 10,
                   "outcome.changed at the CRM")
        report = textback("report", "-c", config, "--format", "json")

    assert crm.forged == []
    assert kinds.index("call.missed") < kinds.index("text.sent") < kinds.index("reply.received")
    assert missed["caller"] == HOMEOWNER and missed["business_number"] == BUSINESS_NUMBER
    reply = next(d.event["data"] for d in crm.deliveries if d.event["type"] == "reply.received")
    assert reply["body"] == "Yes please, kitchen remodel"
    won = next(d.event["data"] for d in crm.deliveries if d.event["type"] == "outcome.changed")
    assert (won["stage"], won["value"], won["external_ref"], won["source"]) == (
        "won", 82000.0, "deal-7", "api:crm")
    [card] = json.loads(report.stdout)["numbers"]
    assert (card["missed_calls"], card["replies"], card["won"], card["won_value"]) == (1, 1, 1, 82000.0)
