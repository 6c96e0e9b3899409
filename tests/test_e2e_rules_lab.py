"""Routing rules end to end on the real lab PBX: hours, caller classes, dedupe, opt-out."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from lab import configs, flows
from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from lab.harness import DaemonProcess, wait_until

pytestmark = pytest.mark.lab

CLIENT, VENDOR = "+12125550150", "+12125550151"
DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def window_around_now(open_now: bool) -> dict:
    """Business hours that are open right now, or closed right now, whatever the clock says."""
    now = datetime.now(ZoneInfo("America/New_York"))
    if open_now:
        start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    else:
        start, end = now + timedelta(hours=1), now + timedelta(hours=2)
    if start.date() != now.date() or end.date() != now.date():  # near midnight: keep it simple
        start, end = (now.replace(hour=0, minute=0), now.replace(hour=23, minute=59)) if open_now \
            else (now.replace(hour=23, minute=58), now.replace(hour=23, minute=59))
    return {"windows": [{"days": DAY, "start": f"{start:%H:%M}", "end": f"{end:%H:%M}"}]}


@pytest.fixture
def start(tmp_path, lab_pbx):
    running = []

    def launch(open_now: bool = True) -> tuple:
        path = configs.lab_config(tmp_path, lab_pbx, **{
            "text.delay_seconds": 0, "hours": window_around_now(open_now),
            "text.after_hours_template": "{business_name}: we're closed, back {next_opening|soon}.",
            "text.client_template": "Hi {caller_name|there}, {business_name} here.",
            "contacts": [{"number": CLIENT, "name": "Jane", "class": "client"},
                         {"number": VENDOR, "name": "Lumber Supply", "class": "vendor"}]})
        daemon = DaemonProcess(path, tmp_path / "textback.log").start()
        sink = lab_pbx.message_sink()
        running.append((daemon, sink))
        return daemon, sink

    yield launch
    for daemon, sink in running:
        sink.kill()
        daemon.stop()


def miss(lab_pbx, caller: str) -> None:
    flows.no_answer(lab_pbx, caller, did=BUSINESS_NUMBER, phone="office1")


def bodies(sink, caller: str) -> list[str]:
    return [m["body"] for m in sink.messages() if caller in m["to"]]


def test_after_hours_miss_gets_the_after_hours_text(lab_pbx, start):
    _, sink = start(open_now=False)
    miss(lab_pbx, HOMEOWNER)
    [body] = wait_until(lambda: bodies(sink, HOMEOWNER), 10, "the after-hours text")
    assert body.startswith("Acme Remodeling: we're closed, back ")


def test_client_vendor_and_three_misses(lab_pbx, start):
    daemon, sink = start(open_now=True)
    miss(lab_pbx, CLIENT)
    miss(lab_pbx, VENDOR)
    for _ in range(3):
        miss(lab_pbx, HOMEOWNER)
    wait_until(lambda: bodies(sink, HOMEOWNER) and bodies(sink, CLIENT), 10, "the texts")
    time.sleep(1)
    assert bodies(sink, CLIENT) == ["Hi Jane, Acme Remodeling here. Reply STOP to opt out."]
    assert bodies(sink, VENDOR) == []
    assert len(bodies(sink, HOMEOWNER)) == 1  # three misses, one text
    log = daemon.log()
    assert "no text for +12125550151: caller_is_vendor" in log
    assert log.count("already texted within 24 h") == 2


def test_stop_then_call_again_gets_no_text_and_one_confirmation(lab_pbx, start):
    daemon, sink = start(open_now=True)
    miss(lab_pbx, HOMEOWNER)
    wait_until(lambda: bodies(sink, HOMEOWNER), 10, "the missed-call text")
    assert lab_pbx.send_sms(HOMEOWNER, BUSINESS_NUMBER, "STOP") < 300
    assert lab_pbx.send_sms(HOMEOWNER, BUSINESS_NUMBER, "stop texting me") < 300
    wait_until(lambda: len(bodies(sink, HOMEOWNER)) >= 2, 10, "the opt-out confirmation")
    miss(lab_pbx, HOMEOWNER)
    time.sleep(2)
    texts = bodies(sink, HOMEOWNER)
    assert len(texts) == 2 and "unsubscribed" in texts[1]
    assert "no text for +12125550123: opted_out" in daemon.log()


def test_a_caller_who_texted_first_and_then_calls_gets_no_automatic_text(lab_pbx, start):
    daemon, sink = start(open_now=True)
    caller = "+12125550153"
    assert lab_pbx.send_sms(caller, BUSINESS_NUMBER, "Hi, can someone look at my basement?") < 300
    wait_until(lambda: "homeowner replied: +12125550153" in daemon.log(), 10, "the inbound text")
    miss(lab_pbx, caller)
    wait_until(lambda: "no text for +12125550153" in daemon.log(), 10, "the miss")
    assert "in a conversation with texts within 24 h; the miss joins its thread" in daemon.log()
    assert bodies(sink, caller) == []


def test_stop_from_a_display_name_address_opts_out_the_number_itself(lab_pbx, start, smtp_sink):
    """Carriers dress the From up with a name; the opt-out must land on the number, not the string."""
    daemon, sink = start(open_now=True)
    caller = "+12125550154"
    from_header = f'"John Smith" <sip:{caller}@carrier.example;user=phone>'
    assert lab_pbx.send_sms(caller, BUSINESS_NUMBER, "Do you do basements?",
                            from_header=from_header) < 300
    [alert] = smtp_sink.wait_for(1, 10)
    assert alert.message["Subject"].startswith("Text from (212) 555-0154")
    assert "John Smith" in alert.message.get_body(("plain",)).get_content()
    assert lab_pbx.send_sms(caller, BUSINESS_NUMBER, "STOP", from_header=from_header) < 300
    [confirmation] = wait_until(lambda: bodies(sink, caller), 10, "the opt-out confirmation")
    assert "unsubscribed" in confirmation
    # The next missed call shows the number in another shape: still the same homeowner.
    flows.no_answer(lab_pbx, caller.removeprefix("+"), did=BUSINESS_NUMBER, phone="office1")
    wait_until(lambda: f"no text for {caller}: opted_out" in daemon.log(), 10, "the miss")
    time.sleep(1)
    assert bodies(sink, caller) == [confirmation]
    assert "MessageSend refused" not in daemon.log()
