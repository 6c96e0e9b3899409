"""The owner's own mobile on the real lab PBX: a homeowner's text (SIP MESSAGE from the SIPp
carrier) -> the alert text to the owner's mobile at the carrier -> the owner's answer, sent
into the lab as a SIP MESSAGE from that mobile -> the homeowner, from the number they dialled.
"""

from __future__ import annotations

import re
import time

import pytest

from lab import configs, flows
from lab.configs import BUSINESS_NUMBER, HOMEOWNER, RING_GROUP_NUMBER
from lab.harness import DaemonProcess, wait_until
from textback.core.relay import STOP_TEXT

pytestmark = pytest.mark.lab

MOBILE = "+19175550188"  # Dana's own phone
SECOND_CALLER = "+12125550124"
# Alert texts come from the second business number, so an answer that goes out from the number
# the homeowner dialled (BUSINESS_NUMBER) shows the relay chose it.
OWNERS = [{"id": "dana", "name": "Dana Reyes", "email": "dana@acme.example",
           "alerts": {"channels": ["email", "sms"], "sms": MOBILE,
                      "sms_from": RING_GROUP_NUMBER}}]


@pytest.fixture
def running(tmp_path, lab_pbx, smtp_sink):
    path = configs.lab_config(tmp_path, lab_pbx, **{"text.delay_seconds": 0, "owners": OWNERS})
    daemon = DaemonProcess(path, tmp_path / "textback.log").start()
    sink = lab_pbx.message_sink()
    yield sink
    sink.kill()
    daemon.stop()


def texts_to(sink, number: str) -> list[dict]:
    return [m for m in sink.messages() if number in m["to"]]


def wait_for_texts(sink, number: str, count: int, what: str) -> list[dict]:
    return wait_until(lambda: len(texts_to(sink, number)) >= count and texts_to(sink, number),
                      10, what)


def alert_code(text: dict) -> int:
    return int(re.search(r"Reply to answer\. #(\d+)$", text["body"]).group(1))


def test_the_alert_text_reaches_the_owner_and_the_answer_the_homeowner(lab_pbx, running,
                                                                        smtp_sink):
    sink = running
    flows.no_answer(lab_pbx, HOMEOWNER, did=BUSINESS_NUMBER, phone="office1")
    wait_for_texts(sink, HOMEOWNER, 1, "the missed-call text")
    assert lab_pbx.send_sms(HOMEOWNER, BUSINESS_NUMBER, "We need a kitchen quote, can you come?") < 300
    [alert] = wait_for_texts(sink, MOBILE, 1, "the alert text at the owner's mobile")
    # The intake facts read from the reply lead (the caller's area code is the number's own).
    assert alert["body"].startswith('Kitchen. (212) 555-0123: "We need a kitchen quote, can you '
                                    'come?" Reply to answer. #')
    assert RING_GROUP_NUMBER in alert["from"]  # alerts.sms_from
    assert smtp_sink.wait_for(1, 10)[0].recipients == ["dana@acme.example"]  # email as ever

    assert lab_pbx.send_sms(MOBILE, RING_GROUP_NUMBER, "Tuesday at 10 works. Dana") < 300
    texts = wait_for_texts(sink, HOMEOWNER, 2, "the owner's answer at the homeowner")
    assert texts[1]["body"] == "Tuesday at 10 works. Dana"
    assert BUSINESS_NUMBER in texts[1]["from"]  # the number the homeowner dialled
    time.sleep(1.0)
    assert len(texts_to(sink, MOBILE)) == 1  # sent: nothing more to tell the owner

    # The owner's own call is no lead: recorded, never texted.
    flows.no_answer(lab_pbx, MOBILE, did=BUSINESS_NUMBER, phone="office1")
    time.sleep(2.0)
    assert len(texts_to(sink, MOBILE)) == 1


def test_a_code_sends_the_answer_to_that_conversation(lab_pbx, running):
    sink = running
    assert lab_pbx.send_sms(HOMEOWNER, BUSINESS_NUMBER, "Kitchen, please") < 300
    [first] = wait_for_texts(sink, MOBILE, 1, "the first alert")
    assert lab_pbx.send_sms(SECOND_CALLER, BUSINESS_NUMBER, "Bathroom, please") < 300
    alerts = wait_for_texts(sink, MOBILE, 2, "the second alert")
    assert SECOND_CALLER[-4:] in alerts[1]["body"]
    assert lab_pbx.send_sms(MOBILE, RING_GROUP_NUMBER, f"#{alert_code(first)} Kitchen on Monday") < 300
    [answer] = wait_for_texts(sink, HOMEOWNER, 1, "the answer to the first homeowner")
    assert answer["body"] == "Kitchen on Monday" and BUSINESS_NUMBER in answer["from"]
    assert lab_pbx.send_sms(MOBILE, RING_GROUP_NUMBER, "Bathroom on Friday") < 300
    [answer] = wait_for_texts(sink, SECOND_CALLER, 1, "the answer to the last one alerted")
    assert answer["body"] == "Bathroom on Friday"
    assert len(texts_to(sink, HOMEOWNER)) == 1


def test_the_owners_stop_turns_off_their_alerts_only(lab_pbx, running, smtp_sink):
    sink = running
    assert lab_pbx.send_sms(HOMEOWNER, BUSINESS_NUMBER, "Hello") < 300
    wait_for_texts(sink, MOBILE, 1, "the alert")
    assert lab_pbx.send_sms(MOBILE, RING_GROUP_NUMBER, "STOP") < 300
    confirmation = wait_for_texts(sink, MOBILE, 2, "the owner's STOP confirmation")[1]
    assert confirmation["body"] == STOP_TEXT
    assert lab_pbx.send_sms(HOMEOWNER, BUSINESS_NUMBER, "Are you there?") < 300
    assert len(smtp_sink.wait_for(2, 10)) == 2  # the email alert still goes
    time.sleep(1.0)
    assert len(texts_to(sink, MOBILE)) == 2  # but no alert text
    assert lab_pbx.send_sms(MOBILE, RING_GROUP_NUMBER, "Coming at 3") < 300
    [answer] = wait_for_texts(sink, HOMEOWNER, 1, "the homeowner, untouched by the owner's STOP")
    assert answer["body"] == "Coming at 3"


def test_an_opted_out_homeowner_is_never_reached_through_the_relay(lab_pbx, running):
    sink = running
    assert lab_pbx.send_sms(HOMEOWNER, BUSINESS_NUMBER, "STOP") < 300
    [confirmation] = wait_for_texts(sink, HOMEOWNER, 1, "the homeowner's STOP confirmation")
    wait_for_texts(sink, MOBILE, 1, "the alert of the STOP")
    assert lab_pbx.send_sms(MOBILE, RING_GROUP_NUMBER, "Sorry to see you go, can I call?") < 300
    notice = wait_for_texts(sink, MOBILE, 2, "the owner told why")[1]
    assert notice["body"] == ("textback: your answer to (212) 555-0123 was not sent: they texted "
                              "STOP, so nothing more is texted to them. Call them instead.")
    time.sleep(1.0)
    assert texts_to(sink, HOMEOWNER) == [confirmation]
