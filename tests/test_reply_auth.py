"""The optional sender check: only our own MX's topmost Authentication-Results, aligned with From."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from hypothesis import given, settings, strategies as st

from textback.core.replies import authenticated, judge
from tests.budget import examples

TRUSTED = "mx.acme.example"
OWNER = "dana@acme.example"


def message(*results: str, sender: str = OWNER, body: str = "See you Tuesday.") -> EmailMessage:
    mail = EmailMessage()
    for value in results:
        mail["Authentication-Results"] = value
    mail["From"] = sender
    mail["To"] = "reply+aaaaaaaaaaaaaaaaaaaaaaaa@reply.acme.example"
    mail["Subject"] = "Re: Text from (212) 555-0123"
    mail.set_content(body)
    return mail


@pytest.mark.parametrize("results", [
    (f"{TRUSTED}; dkim=pass header.d=evil.example; dmarc=fail header.from=acme.example",),
    (f"{TRUSTED}; spf=fail (dkim=pass header.d=acme.example) smtp.mailfrom=dana@acme.example",),
    (f"{TRUSTED}; x-dkim=pass header.d=acme.example",),
    (f"{TRUSTED}; spf=pass smtp.mailfrom=attacker@evil.example",),
    (f"{TRUSTED}; spf=fail smtp.mailfrom=dana@acme.example",  # ours, on top
     f"{TRUSTED}; dkim=pass header.d=acme.example"),            # forged, below it
    ("other.example; dkim=pass header.d=acme.example",),
    (f"{TRUSTED}; dkim=pass header.d=notacme.example",),
    (f"{TRUSTED}; dkim=pass header.d=acme.example; dmarc=fail header.from=acme.example",),
    (f"{TRUSTED} dkim=pass",),
    (),
])
def test_bypasses_are_refused(results):
    assert not authenticated(message(*results), TRUSTED, OWNER)
    verdict = judge(message(*results), OWNER, OWNER, frozenset(), TRUSTED, 3, "Dana Reyes")
    assert verdict.action == "refuse"


@pytest.mark.parametrize("result", [
    "dkim=pass header.d=acme.example header.s=s1",
    "dkim=pass header.d=mail.acme.example",
    "spf=pass smtp.mailfrom=dana@acme.example",
    "dmarc=pass header.from=acme.example",
    "spf=pass (sender IP is 198.51.100.7) smtp.mailfrom=dana@acme.example; dkim=fail header.d=x.example",
])
def test_an_aligned_pass_from_our_mx_is_accepted(result):
    assert authenticated(message(f"{TRUSTED}; {result}"), TRUSTED, OWNER)
    assert judge(message(f"{TRUSTED}; {result}"), OWNER, OWNER, frozenset(), TRUSTED, 3).action == "text"


@settings(max_examples=examples(300), deadline=None)
@given(st.text(max_size=200), st.text(max_size=2000))
def test_any_header_and_body_gives_a_verdict_never_an_exception(header, body):
    mail = EmailMessage()
    try:
        mail["Authentication-Results"] = header
    except ValueError:  # the email package itself refuses CR/LF in a header value
        pass
    mail["From"] = OWNER
    mail.set_content(body)
    verdict = judge(mail, OWNER, OWNER, frozenset(), TRUSTED, 3, "Dana Reyes")
    assert verdict.action in {"refuse", "text", "command", "too_long", "nothing_to_send"}
    if verdict.action == "text":
        assert verdict.text == verdict.text.strip() != ""
