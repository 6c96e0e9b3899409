"""Owner alert emails: caller-controlled text never reaches headers or markup raw."""

from __future__ import annotations

import asyncio
import email
import email.policy
import time

from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from sms_gateway.base import InboundText
from textback.core.alerts import ReplyAlert, ThreadEntry, compose_reply_alert
from textback.core.tracker import CallFinished
from textback.core.views import timeline

HOSTILE_NAME = 'Bob\r\nBcc: victim@example.com <script>alert(1)</script>'
HOSTILE_REPLY = "Yes please\r\nBcc: evil@example.com\n<img src=x onerror=alert(1)> & more"


def alert(**changes) -> ReplyAlert:
    values = dict(
        business_name="Acme Remodeling", timezone="America/New_York", owner_name="Dana Reyes",
        owner_email="dana@example.com", sender="textback@acme.example", caller="+12125550123",
        caller_name=HOSTILE_NAME, business_number="+12125550100", reply=HOSTILE_REPLY,
        entries=(ThreadEntry(1_764_000_000, "call", "nobody picked up. We texted them."),
                 ThreadEntry(1_764_000_030, "text_out", "Hi, this is Acme"),
                 ThreadEntry(1_764_000_090, "text_in", HOSTILE_REPLY)))
    values.update(changes)
    return ReplyAlert(**values)


def roundtrip(message) -> email.message.EmailMessage:
    return email.message_from_bytes(message.as_bytes(), policy=email.policy.default)


def test_headers_carry_no_injected_lines():
    parsed = roundtrip(compose_reply_alert(alert(), "acme.example"))
    assert parsed["Bcc"] is None
    assert parsed["To"] == "Dana Reyes <dana@example.com>"
    assert "\n" not in parsed["Subject"] and "\r" not in parsed["Subject"]
    assert parsed["Subject"].startswith("Text from (212) 555-0123: Yes please")
    assert parsed["Auto-Submitted"] == "auto-generated"


def test_html_part_escapes_caller_text_and_plain_part_keeps_it():
    parsed = roundtrip(compose_reply_alert(alert(), "acme.example"))
    html = parsed.get_body(("html",)).get_content()
    plain = parsed.get_body(("plain",)).get_content()
    assert "<script>" not in html and "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; more" in html
    assert "<img src=x onerror=alert(1)> & more" in plain
    assert "(212) 555-0123" in plain and "(212) 555-0100" in plain
    assert "Hi, this is Acme" in plain


async def test_the_alert_tells_the_call_in_the_words_of_the_inbox(offline_daemon, smtp_sink):
    daemon = await offline_daemon()
    now = time.time()
    await daemon.finish_call(CallFinished("a.1", BUSINESS_NUMBER, HOMEOWNER, "", "PJSIP/carrier-1",
                                          now - 20, now, "missed", "no_answer"))
    await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, "Yes please"), "log")
    worker = asyncio.create_task(daemon.mail.run_alerts())
    try:
        [mail] = await asyncio.to_thread(smtp_sink.wait_for, 1, 10)
    finally:
        worker.cancel()
    plain = mail.message.get_body(("plain",)).get_content()
    html = mail.message.get_body(("html",)).get_content()
    conversation = (await daemon.store.conversation_for(HOMEOWNER, BUSINESS_NUMBER))["id"]
    [call] = [e for e in timeline(daemon.config, await daemon.store.thread(conversation))
              if e.kind == "call"]
    assert call.title == "Missed call: nobody picked up. We texted them."
    assert call.title in plain
    assert "<b>Missed call</b></td><td>nobody picked up. We texted them.</td>" in html
    assert "no_answer" not in plain and "no_answer" not in html


def test_an_answered_call_in_the_thread_is_named_so():
    parsed = roundtrip(compose_reply_alert(alert(entries=(
        ThreadEntry(1_764_000_000, "call", "", "Answered call"),
        ThreadEntry(1_764_000_090, "text_in", "Thanks")), reply="Thanks"), "acme.example"))
    plain = parsed.get_body(("plain",)).get_content()
    assert "EST  Answered call\n" in plain and "Missed call" not in plain
