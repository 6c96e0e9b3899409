"""Gateway errors in plain words: the pure mapping, the owner's email, and the CLI screens."""

from __future__ import annotations

import asyncio
import time

import pytest
from click.testing import CliRunner

from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from sms_gateway.callbacks import DeliveryStatus
from textback.cli import main
from textback.core.gateway_errors import described, explain
from textback.store import CallRow, PlannedText


@pytest.mark.parametrize("gateway, error, words, code", [
    ("twilio", "Twilio error 30003: Unreachable destination handset", "switched off", "Twilio 30003"),
    ("twilio", "provider error 30005", "unknown or no longer in service", "Twilio 30005"),
    ("twilio", "provider error 30006", "landline", "Twilio 30006"),
    ("twilio", "provider error 30007", "their carrier filtered the message", "Twilio 30007"),
    ("twilio", "Twilio error 30034: blocked", "not registered for A2P 10DLC", "Twilio 30034"),
    ("telnyx", "provider error 40001", "landline", "Telnyx 40001"),
    ("telnyx", "Telnyx error 40002: Blocked as spam", "filtered the message as spam", "Telnyx 40002"),
    ("telnyx", "provider error 40010", "not registered for A2P 10DLC", "Telnyx 40010"),
    ("kannel", "NACK/0x0000000b/Invalid Destination Address", "not valid", "SMPP status 0x0000000b"),
    ("kannel", "id:77 sub:001 dlvrd:000 stat:UNDELIV err:001", "could not deliver",
     "delivery receipt UNDELIV"),
])
def test_known_codes_become_sentences_and_keep_the_code(gateway, error, words, code):
    explanation = explain(gateway, error)
    assert words in explanation.sentence and explanation.code == code
    assert described(gateway, error) == f"{explanation.sentence} [{error}]"


@pytest.mark.parametrize("gateway, error", [
    ("twilio", "HTTP 503"), ("twilio", "Twilio error 99999: new"), ("telnyx", "provider error 30007"),
    ("kannel", "NACK/0x000000ff/odd"), ("http", "provider error 30007"), ("twilio", ""),
])
def test_unknown_codes_stay_as_they_came(gateway, error):
    assert explain(gateway, error) is None and described(gateway, error) == error


async def sent_twilio_text(daemon) -> None:
    now = time.time()
    call = CallRow(linkedid="call-1", business_number=BUSINESS_NUMBER, caller_raw=HOMEOWNER,
                   caller=HOMEOWNER, caller_name="", started_at=now - 60, answered_at=None,
                   ended_at=now - 40, outcome="missed", reason="no_answer", decision="text")
    await daemon.store.record_call(call, PlannedText("dana", "Sorry we missed you", now - 30))
    (item,) = await daemon.store.due(now)
    await daemon.store.claim_all([item])
    await daemon.store.mark_all_sent([(item, "SM1")], "twilio")


async def test_a_text_the_carrier_filters_after_sending_is_mailed_to_its_owner_in_plain_words(
        offline_daemon, smtp_sink):
    daemon = await offline_daemon()
    await sent_twilio_text(daemon)
    await daemon.report_delivery(DeliveryStatus("SM1", "undelivered", "30007"), "twilio")
    (mail,) = await asyncio.to_thread(smtp_sink.wait_for, 1, 5)
    assert mail.message["To"] == "Dana Reyes <dana@example.com>"
    body = mail.message.get_content()
    assert ("We could not text (212) 555-0123: their carrier filtered the message. "
            "Call them back.") in body
    assert "Last error: provider error 30007" in body
    # A repeated report changes nothing and mails nobody again.
    await daemon.report_delivery(DeliveryStatus("SM1", "undelivered", "30007"), "twilio")
    assert len(await daemon.store.notices()) == 1


async def test_thread_and_calls_show_the_plain_words_beside_the_code(offline_daemon, tmp_path):
    daemon = await offline_daemon()
    await sent_twilio_text(daemon)
    await daemon.store.update_delivery("twilio", "SM1", "undelivered", "30006")
    path = str(tmp_path / "config.yaml")
    runner = CliRunner()
    thread = await asyncio.to_thread(runner.invoke, main, ["thread", HOMEOWNER, "-c", path])
    assert ("[undelivered] Sorry we missed you  (it is a landline, or their carrier cannot "
            "receive texts [provider error 30006])") in thread.output
    calls = await asyncio.to_thread(runner.invoke, main, ["calls", "-c", path])
    assert ("undelivered: it is a landline, or their carrier cannot receive texts "
            "[provider error 30006]") in calls.output
    assert "SEEN TEXT" in calls.output and "missed: nobody picked up" in calls.output
