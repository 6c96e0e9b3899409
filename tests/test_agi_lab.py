"""The routing AGI on the lab PBX: it runs inside Asterisk's chroot with the root's own Python,
and the Dial that follows it uses the targets and ring timeout it set.

The lab DID +12125550118 goes through the shipped [textback-inbound]
context (dialplan/textback.conf), so these tests run the product's dialplan
and AGI as an installer would set them up; only the routing table's path
is the lab's. Timings come from Asterisk's own event timestamps
(manager.conf timestampevents).
"""

import asyncio
import sqlite3
from pathlib import Path

import pytest

from lab import configs, flows
from lab.ami import AmiClient, AmiMessage
from lab.configs import AGI_ROUTE, AGI_ROUTE_ID, AGI_ROUTED_NUMBER, write_agi_routing_table
from lab.harness import DaemonProcess, wait_until
from lab.pbx import LabPBX

pytest_plugins = ["lab.fixture"]
pytestmark = pytest.mark.lab

# The fallback the shipped dialplan passes to the AGI: used when the table cannot be read.
FALLBACK_TARGET, FALLBACK_TIMEOUT = "office1", 20


async def ring_out(lab: LabPBX, caller: str, phone: str, hangup_after: float | None = None) -> dict[str, AmiMessage]:
    """Call the AGI-routed number while `phone` rings unanswered; the caller's key AMI events."""
    ami = await AmiClient.connect(lab.ami_host, lab.ami_port, lab.admin_user, lab.admin_secret)
    try:
        ringing = lab.phone(phone, "noanswer")
        call = lab.call(caller, AGI_ROUTED_NUMBER, hangup_after=hangup_after)
        await asyncio.to_thread(call.wait_success, 60)
        await asyncio.to_thread(ringing.wait_success, 60)
        inbound = await ami.wait_for(lambda e: e.event == "Newchannel" and e["CallerIDNum"] == caller
                                     and e["Channel"].startswith("PJSIP/carrier-"))
        channel = inbound["Channel"]
        events = {"dial_app": await ami.wait_for(lambda e: e.event == "Newexten" and e["Channel"] == channel
                                                 and e["Application"] == "Dial"),
                  "dial_begin": await ami.wait_for(lambda e: e.event == "DialBegin" and e["Channel"] == channel),
                  "dial_end": await ami.wait_for(lambda e: e.event == "DialEnd" and e["Channel"] == channel),
                  "hangup": await ami.wait_for(lambda e: e.event == "Hangup" and e["Channel"] == channel)}
        return events
    finally:
        await ami.close()


def variables(event: AmiMessage) -> dict[str, str]:
    return dict(item.split("=", 1) for item in event.getall("ChanVariable"))


def seconds_between(first: AmiMessage, second: AmiMessage) -> float:
    return float(second["Timestamp"]) - float(first["Timestamp"])


async def test_dial_uses_the_targets_and_ring_timeout_the_agi_set(lab_pbx: LabPBX, tmp_path: Path) -> None:
    write_agi_routing_table(tmp_path, lab_pbx)
    events = await ring_out(lab_pbx, "+12125550131", "office2")
    assert variables(events["hangup"]) == {"TEXTBACK_ROUTE": AGI_ROUTE_ID, "TEXTBACK_RING_TIMEOUT": "5",
                                           "TEXTBACK_HOURS": "open"}
    assert events["dial_app"]["AppData"] == "PJSIP/office2,5"
    assert events["dial_begin"]["DestChannel"].startswith("PJSIP/office2-")
    assert events["dial_end"]["DialStatus"] == "NOANSWER"
    # Dial gave up after the AGI's 5 s, not the fallback 20 s nor the lab's usual 6 s.
    assert 4.8 <= seconds_between(events["dial_begin"], events["dial_end"]) <= 5.5


async def test_closed_day_rings_the_after_hours_targets(lab_pbx: LabPBX, tmp_path: Path) -> None:
    write_agi_routing_table(tmp_path, lab_pbx, closed_today=True)
    events = await ring_out(lab_pbx, "+12125550132", "office1")
    assert variables(events["hangup"]) == {"TEXTBACK_ROUTE": AGI_ROUTE_ID, "TEXTBACK_RING_TIMEOUT": "6",
                                           "TEXTBACK_HOURS": "closed"}
    assert events["dial_begin"]["DestChannel"].startswith("PJSIP/office1-")
    assert events["dial_end"]["DialStatus"] == "NOANSWER"
    assert 5.8 <= seconds_between(events["dial_begin"], events["dial_end"]) <= 6.5


async def test_unreadable_table_still_rings_the_fallback(lab_pbx: LabPBX) -> None:
    lab_pbx.routing_file.write_text('{"format": 1, "routes": ')  # half a file
    events = await ring_out(lab_pbx, "+12125550133", FALLBACK_TARGET, hangup_after=2.0)
    assert variables(events["hangup"]) == {"TEXTBACK_ROUTE": "fallback",
                                           "TEXTBACK_RING_TIMEOUT": str(FALLBACK_TIMEOUT),
                                           "TEXTBACK_HOURS": "unknown"}
    assert events["dial_app"]["AppData"] == f"PJSIP/{FALLBACK_TARGET},{FALLBACK_TIMEOUT}"
    assert events["dial_begin"]["DestChannel"].startswith(f"PJSIP/{FALLBACK_TARGET}-")
    assert events["dial_end"]["DialStatus"] == "CANCEL"  # the caller gave up, the call was never broken



def test_daemon_table_agi_dial_and_listener_agree(lab_pbx: LabPBX, tmp_path: Path) -> None:
    """The daemon writes the table, the AGI routes by it, and the daemon reads the route back from AMI."""
    config = configs.base_config(tmp_path)
    path = configs.lab_config(tmp_path, lab_pbx, **{
        "numbers": [*config["numbers"], AGI_ROUTE], "hours": configs.agi_routed_hours(closed_today=True),
        "text.delay_seconds": 0,
        "text.after_hours_template": "{business_name}: we're closed today, back {next_opening|soon}."})
    lab_pbx.routing_file.unlink(missing_ok=True)
    daemon = DaemonProcess(path, tmp_path / "textback.log").start()
    sink = lab_pbx.message_sink()
    try:
        assert lab_pbx.routing_file.exists()  # written by the daemon at start
        flows.no_answer(lab_pbx, "+12125550135", AGI_ROUTED_NUMBER, "office1")  # closed: office1 rings
        [text] = wait_until(lambda: [m for m in sink.messages() if "+12125550135" in m["to"]], 15,
                            "the after-hours text")
        assert text["body"].startswith("Acme Remodeling: we're closed today, back ")
    finally:
        sink.kill()
        daemon.stop()
    with sqlite3.connect(tmp_path / "textback.db") as db:
        route, decision = db.execute("SELECT route, decision FROM calls WHERE caller = '+12125550135'").fetchone()
    assert (route, decision) == (AGI_ROUTE_ID, "after_hours_text")
