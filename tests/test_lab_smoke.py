"""Smoke tests for the lab PBX: real Asterisk, driven by SIPp, seen over AMI.

They pin down the behaviour the product relies on: what AMI shows for a
missed call and for a ring group, that the least-privilege AMI user can send
a text with the business number as sender, and that an inbound text reaches
AMI as a Base64-encoded UserEvent.
"""

import asyncio
import base64
import time
from pathlib import Path

import pytest

from lab.ami import AmiClient, AmiMessage
from lab.pbx import LabPBX
from sms_gateway.asterisk import parse_user_event
from sms_gateway.base import InboundText

pytest_plugins = ["lab.fixture"]
pytestmark = pytest.mark.lab

TRACE_DIR = Path("/tmp/lab-traces")
SINGLE_DID = "+12125550100"  # rings office1 only
RING_GROUP_DID = "+12125550101"  # rings office1 and office2
CARRIER_DESTINATION = "pjsip:carrier/sip:{number}@127.0.0.3:5060"


async def admin_ami(lab: LabPBX) -> AmiClient:
    return await AmiClient.connect(lab.ami_host, lab.ami_port, lab.admin_user, lab.admin_secret)


async def product_ami(lab: LabPBX) -> AmiClient:
    secret = lab.ami_secret_file.read_text().strip()
    return await AmiClient.connect(lab.ami_host, lab.ami_port, lab.ami_user, secret)


def save_trace(ami: AmiClient, name: str) -> None:
    """Keep the raw AMI frames of a flow for people reading real event shapes."""
    TRACE_DIR.mkdir(parents=True, exist_ok=True)
    (TRACE_DIR / name).write_text(ami.dump())


async def inbound_channel(ami: AmiClient, caller: str) -> AmiMessage:
    return await ami.wait_for(
        lambda e: e.event == "Newchannel"
        and e["Channel"].startswith("PJSIP/carrier-")
        and e["CallerIDNum"] == caller
    )


async def dial_end_to(ami: AmiClient, linkedid: str, phone: str) -> AmiMessage:
    return await ami.wait_for(
        lambda e: e.event == "DialEnd"
        and e["Linkedid"] == linkedid
        and e["DestChannel"].startswith(f"PJSIP/{phone}-")
    )


async def hangup_of(ami: AmiClient, channel: str) -> AmiMessage:
    return await ami.wait_for(lambda e: e.event == "Hangup" and e["Channel"] == channel)


async def test_unanswered_call_ends_with_dialend_noanswer(lab_pbx: LabPBX) -> None:
    caller = "+12125550123"
    ami = await admin_ami(lab_pbx)
    try:
        phone = lab_pbx.phone("office1", "noanswer")
        call = lab_pbx.call(caller, SINGLE_DID)
        await asyncio.to_thread(call.wait_success, 30)
        await asyncio.to_thread(phone.wait_success, 30)

        inbound = await inbound_channel(ami, caller)
        assert inbound["Exten"] == SINGLE_DID
        dial_end = await dial_end_to(ami, inbound["Linkedid"], "office1")
        assert dial_end["DialStatus"] == "NOANSWER"
        assert dial_end["Channel"] == inbound["Channel"]

        caller_hangup = await hangup_of(ami, inbound["Channel"])
        phone_hangup = await hangup_of(ami, dial_end["DestChannel"])
        assert phone_hangup["Linkedid"] == inbound["Linkedid"]
        # manager.conf channelvars: the route set by the DID reaches AMI.
        assert "TEXTBACK_ROUTE=office1" in caller_hangup.getall("ChanVariable")
        assert "TEXTBACK_RING_TIMEOUT=6" in caller_hangup.getall("ChanVariable")
    finally:
        save_trace(ami, "noanswer.txt")
        await ami.close()


async def test_ring_group_answered_by_second_phone(lab_pbx: LabPBX) -> None:
    caller = "+12125550124"
    ami = await admin_ami(lab_pbx)
    try:
        office1 = lab_pbx.phone("office1", "noanswer")
        office2 = lab_pbx.phone("office2", "answer", answer_after=1.0, talk_seconds=10.0)
        call = lab_pbx.call(caller, RING_GROUP_DID, talk_seconds=1.5)
        for actor in (call, office1, office2):
            await asyncio.to_thread(actor.wait_success, 30)

        inbound = await inbound_channel(ami, caller)
        linkedid = inbound["Linkedid"]
        office1_end = await dial_end_to(ami, linkedid, "office1")
        office2_end = await dial_end_to(ami, linkedid, "office2")
        assert office1_end["DialStatus"] == "CANCEL"
        assert office2_end["DialStatus"] == "ANSWER"

        office2_channel = office2_end["DestChannel"]
        office2_bridged = await ami.wait_for(lambda e: e.event == "BridgeEnter" and e["Channel"] == office2_channel)
        caller_bridged = await ami.wait_for(
            lambda e: e.event == "BridgeEnter" and e["Channel"] == inbound["Channel"]
        )
        assert caller_bridged["BridgeUniqueid"] == office2_bridged["BridgeUniqueid"]

        office1_hangup = await hangup_of(ami, office1_end["DestChannel"])
        assert office1_hangup["Cause"] == "26"  # answered elsewhere
        await hangup_of(ami, inbound["Channel"])
        await hangup_of(ami, office2_channel)
    finally:
        save_trace(ami, "ringgroup.txt")
        await ami.close()


# Both forms put the business number in the From URI user.  Without From,
# PJSIP sends the endpoint name ("carrier") instead.
@pytest.mark.parametrize("sender", ["+12125550100", "sip:+12125550100@127.0.0.1"])
async def test_product_user_texts_caller_as_business_number(lab_pbx: LabPBX, sender: str) -> None:
    body = "Sorry we missed your call, José — reply here ✓"
    sink = lab_pbx.message_sink()
    ami = await product_ami(lab_pbx)
    try:
        response = await ami.action(
            "MessageSend", Destination=CARRIER_DESTINATION.format(number="+12125550125"), From=sender, Body=body
        )
        assert response["Response"] == "Success", response.raw

        deadline = time.monotonic() + 10
        while not sink.messages() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        [text] = sink.messages()
        assert text["from"] == "sip:+12125550100@127.0.0.1"
        assert text["to"] == "sip:+12125550125@127.0.0.3"
        assert text["body"] == body
    finally:
        await ami.close()
        sink.kill()


async def test_product_user_cannot_originate(lab_pbx: LabPBX) -> None:
    ami = await product_ami(lab_pbx)
    try:
        response = await ami.action("Originate", Channel="PJSIP/office1", Application="Wait", Data="1")
        assert response["Response"] == "Error"
        assert "Permission denied" in response["Message"]
    finally:
        await ami.close()


async def test_inbound_text_reaches_ami_as_base64_userevent(lab_pbx: LabPBX) -> None:
    sender = "+12125550126"
    # A comma, CRLF and a fake AMI header: none may split the UserEvent
    # arguments or become an AMI header, because every field is Base64.
    body = "Yes, 3pm works — merci!\r\nEvent: Fake\r\n\r\nAction: Originate"
    ami = await product_ami(lab_pbx)
    try:
        status = await asyncio.to_thread(lab_pbx.send_sms, sender, SINGLE_DID, body,
                                         call_id="smoke-1@carrier.example")
        assert status == 202

        event = await ami.wait_for(lambda e: e.event == "UserEvent" and e["UserEvent"] == "TextbackSmsIn")
        assert event["Context"] == "textback-sms-in"
        assert event["Exten"] == SINGLE_DID
        assert base64.b64decode(event["From"]).decode() == f"<sip:{sender}@127.0.0.3>"
        assert base64.b64decode(event["To"]).decode() == f"pjsip:{SINGLE_DID}@127.0.0.1"
        assert base64.b64decode(event["Body"]).decode() == body
        # MESSAGE_DATA() has every SIP header of the MESSAGE: its Call-ID and CSeq are its id
        assert base64.b64decode(event["CallID"]).decode() == "smoke-1@carrier.example"
        assert base64.b64decode(event["CSeq"]).decode() == "1 MESSAGE"
        assert parse_user_event(dict(event)) == InboundText(
            f"<sip:{sender}@127.0.0.3>", f"pjsip:{SINGLE_DID}@127.0.0.1", body,
            gateway_id="smoke-1@carrier.example 1 MESSAGE")
        older_dialplan = {k: v for k, v in event.items() if k not in ("CallID", "CSeq")}
        assert parse_user_event(older_dialplan).gateway_id is None
        assert not [frame for frame in ami.frames if frame.event == "Fake"]
    finally:
        await ami.close()
