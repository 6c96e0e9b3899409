"""Consent on the real lab PBX: the homeowner's quiet hours with the clock moved on, and one
lead's whole consent ledger compared with what the lab carrier actually received.

Real Asterisk, SIPp actors and the carrier's message sink; they never skip.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from lab import configs
from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from lab.harness import eventually, in_process, wait_until
from textback.config import load
from textback.daemon import Daemon

pytestmark = pytest.mark.lab

EASTERN = ZoneInfo("America/New_York")
MIAMI = "+13055550123"
EVENING = datetime(2026, 12, 7, 21, 30, tzinfo=EASTERN)  # a Monday, 9:30 pm in Miami
MORNING = datetime(2026, 12, 8, 8, 0, tzinfo=EASTERN)


def textback(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "textback", *args], capture_output=True,
                          text=True, timeout=60)


async def _with_sent(daemon, number: str) -> list[tuple[str, str]] | None:
    """The number's ledger as (fact, kind) once it records a text sent; None before."""
    facts = [(r["fact"], r["kind"]) for r in await daemon.store.consent_record(number)]
    return facts if ("text_sent", "auto") in facts else None


async def miss_a_call(lab_pbx, caller: str) -> None:
    phone = lab_pbx.phone("office1", "noanswer")
    call = lab_pbx.call(caller, BUSINESS_NUMBER)
    await asyncio.to_thread(call.wait_success, 30)
    phone.kill()


@pytest.mark.parametrize("policy", ["hold", "send"])
async def test_a_florida_callers_text_at_930_pm_waits_for_8_am_only_when_held(
        tmp_path, lab_pbx, sink, policy):
    path = configs.lab_config(tmp_path, lab_pbx, **{
        "text.delay_seconds": 1, "compliance.homeowner_hours": {"missed_call": policy}})
    # The whole process, the daemon's store and outbox included, lives at 9:30 pm Eastern.
    with time_machine.travel(EVENING, tick=True) as clock:
        daemon = Daemon(load(path))
        async with in_process(daemon):
            await daemon.ami.wait_logged_in(10)
            await miss_a_call(lab_pbx, MIAMI)
            if policy == "send":
                await eventually(lambda: asyncio.to_thread(sink.messages), 10, "the text at once")
                sent_at = datetime.fromtimestamp(time.time(), EASTERN)
                assert (sent_at.hour, sent_at.minute) in ((21, 30), (21, 31))
                return
            held = await eventually(lambda: daemon.store._all(
                "SELECT o.held_until, m.status, m.error FROM outbox o JOIN messages m"
                " ON m.id = o.message_id WHERE m.status = 'held'"), 10, "the text held")
            assert held[0]["held_until"] == MORNING.timestamp()
            assert held[0]["error"].startswith("until Tue 2026-12-08 08:00 EST")
            shown = await asyncio.to_thread(textback, "thread", "-c", str(path), MIAMI)
            assert "[held] " in shown.stdout and "until Tue 2026-12-08 08:00 EST" in shown.stdout
            await asyncio.sleep(6)  # an idle poll and more: still held
            assert sink.messages() == []
            clock.move_to(datetime(2026, 12, 8, 7, 59, 57, tzinfo=EASTERN))  # the clock made fast
            await asyncio.sleep(1)
            assert sink.messages() == []  # 7:59:58: not yet
            [text] = await eventually(lambda: asyncio.to_thread(sink.messages), 15,
                                      "the held text at 8 am")
            arrived = time.time()
            assert MORNING.timestamp() <= arrived < MORNING.timestamp() + 10
            assert MIAMI in text["to"] and "Acme Remodeling" in text["body"]
            record = await eventually(
                lambda: _with_sent(daemon, MIAMI), 5, "the text's sending in the ledger")
            assert record == [("call", ""), ("text_queued", "auto"), ("text_held", "auto"),
                              ("text_sent", "auto")]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_ledger_of_one_lead_matches_what_the_carrier_received(request, lab_pbx, lab_daemon,
                                                                   sink, smtp_sink, backend):
    storage = ({"storage.url": request.getfixturevalue("postgres_server").new_database()}
               if backend == "postgresql" else {})
    process = lab_daemon(**{"text.delay_seconds": 1, **storage})
    config = str(process.config_path)
    phone = lab_pbx.phone("office1", "noanswer")
    lab_pbx.call(HOMEOWNER, BUSINESS_NUMBER).wait_success(30)
    phone.kill()
    wait_until(lambda: len(sink.messages()) == 1, 15, "the missed-call text")
    assert lab_pbx.send_sms(HOMEOWNER, BUSINESS_NUMBER, "STOP") < 300
    wait_until(lambda: len(sink.messages()) == 2, 15, "the opt-out confirmation")
    replied = textback("reply", "-c", config, HOMEOWNER, "Are you still interested?")
    assert replied.returncode == 1 and "opted out; nothing was sent" in replied.stderr

    def record() -> list[dict]:
        shown = textback("consent", "-c", config, "--format", "json", HOMEOWNER)
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)

    assert lab_pbx.send_sms(HOMEOWNER, BUSINESS_NUMBER, "START") < 300
    wait_until(lambda: len(sink.messages()) == 3, 15, "the opt-in confirmation")
    wait_until(lambda: len([r for r in record() if r["fact"] == "text_sent"]) == 3, 10,
               "the third text in the ledger")
    time.sleep(2)  # room for anything extra at the carrier
    ledger = record()
    assert [(r["fact"], r["kind"], r["channel"]) for r in ledger] == [
        ("call", "", "ami"),
        ("text_queued", "auto", "automatic"), ("text_sent", "auto", "asterisk"),
        ("keyword", "STOP", "sms"), ("opted_out", "", "sms"),
        ("text_queued", "optout_confirmation", "sms"),
        ("text_sent", "optout_confirmation", "asterisk"),
        ("text_refused", "owner", "cli"),
        ("keyword", "START", "sms"), ("opted_in", "", "sms"),
        ("text_queued", "optin_confirmation", "sms"),
        ("text_sent", "optin_confirmation", "asterisk"),
    ]
    carrier = sink.messages()
    sent = [r for r in ledger if r["fact"] == "text_sent"]
    assert [r["body"] for r in sent] == [m["body"] for m in carrier]  # the exact words
    assert all(HOMEOWNER in m["to"] and BUSINESS_NUMBER in m["from"] for m in carrier)
    call = ledger[0]["detail"]
    assert call["outcome"] == "missed" and call["linkedid"] and HOMEOWNER in call["caller_raw"]
    assert ledger[3]["body"] == "STOP" and ledger[8]["body"] == "START"
    assert ledger[7]["body"] == "Are you still interested?"
    assert "Are you still interested?" not in [m["body"] for m in carrier]
    # The daemon and the CLI read one store: PostgreSQL's when so configured, never SQLite's.
    assert (process.config_path.parent / "textback.db").exists() is (backend == "sqlite")
