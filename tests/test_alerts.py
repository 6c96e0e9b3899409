"""Owner alert emails: caller-controlled text never reaches headers or markup raw."""

from __future__ import annotations

import email
import email.policy

from textback.core.alerts import ReplyAlert, ThreadEntry, compose_reply_alert

HOSTILE_NAME = 'Bob\r\nBcc: victim@example.com <script>alert(1)</script>'
HOSTILE_REPLY = "Yes please\r\nBcc: evil@example.com\n<img src=x onerror=alert(1)> & more"


def alert(**changes) -> ReplyAlert:
    values = dict(
        business_name="Acme Remodeling", timezone="America/New_York", owner_name="Dana Reyes",
        owner_email="dana@example.com", sender="textback@acme.example", caller="+12125550123",
        caller_name=HOSTILE_NAME, business_number="+12125550100", reply=HOSTILE_REPLY,
        entries=(ThreadEntry(1_764_000_000, "call", "missed (no_answer)"),
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
