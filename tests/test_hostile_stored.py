"""Hostile input through the running daemon into its store, as property tests, on each backend.

The pure property tests fuzz what reads a webhook (test_fuzz_webhooks.py), judges a reply
mail (test_reply_auth.py) and parses an API body (test_api.py). These send the same kinds of
input to a real daemon (in process, no AMI) over loopback, so that what the readers let
through reaches the store: once with SQLite and once with a real PostgreSQL, reached as a
daemon's role (conftest.py's `backend_storage`). Each test starts one daemon and sends all its
examples to it. What they hold, whatever the input:

* the answer is a verdict (a 2xx, a 4xx, an SMTP 250 or 5xx), never a server error;
* what is refused or unreadable changes nothing in the store;
* what is accepted is in the store when the answer goes back, its text as it came (on
  PostgreSQL a NUL, which its text type cannot hold, reads back as U+FFFD).

`make fuzz` raises the budget (tests/budget.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import smtplib
from urllib.parse import urlencode

import aiohttp
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, base_config, write_config
from lab.harness import SMTP_SINK_PORT, in_process
from sms_gateway.base import InboundText
from textback.config import load
from textback.daemon import Daemon
from tests.budget import examples
from tests.providers.twilio import FakeTwilio
from tests.test_api import cli, pathological

SID = "AC" + "5" * 32
TWILIO_TOKEN = "hostile-twilio-token"
PUBLIC = "https://textback.example.com/hooks"
WEBHOOK_PORT = 15183
REPLY_PORT = 15027
API_PORT = 18189
DOMAIN = "reply.acme.example"
OWNER = "dana@acme.example"
OWNERS = [{"id": "dana", "name": "Dana Reyes", "email": OWNER},
          {"id": "sam", "name": "Sam Ortiz", "email": "sam@acme.example"}]
# One daemon answers every example of a test; the budget is per backend.
HOSTILE = settings(max_examples=examples(60), deadline=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture,
                                          HealthCheck.too_slow])

hostile_text = st.text(max_size=80) | st.sampled_from(
    ["\x00", "a\x00b", "\x1b]0;pwned\x07", "\u202egnp.exe", "\ud7ff\uffff", "'; DROP TABLE--",
     "%s %(x)s ? :name", "\\u0000", "\r\nSubject: x"])


def stored(text: str, backend: str) -> str:
    """`text` as the backend reads it back."""
    return text.replace("\x00", "\ufffd") if backend == "postgresql" else text


@pytest.fixture
def backend(store_location) -> str:
    return "postgresql" if isinstance(store_location, str) else "sqlite"


@pytest.fixture
async def daemon(tmp_path, backend_storage, smtp_sink):
    """One daemon on the backend under test: Twilio's webhooks, reply mail and the API, with a
    homeowner's conversation whose alert went to the owner (so a reply address exists)."""
    (tmp_path / "twilio.token").write_text(TWILIO_TOKEN)
    config = base_config(tmp_path, owners=OWNERS, **{
        **backend_storage,
        "ami.port": 15099,  # nothing listens: calls are not part of these tests
        "smtp.port": SMTP_SINK_PORT,
        "gateway": {"type": "twilio",
                    "twilio": {"account_sid": SID, "auth_token": {"file": "twilio.token"},
                               "api_base_url": "http://127.0.0.1:9"},
                    "callbacks": {"listen_port": WEBHOOK_PORT, "public_base_url": PUBLIC}},
        "reply_mail": {"domain": DOMAIN, "listen_port": REPLY_PORT},
        "web": {"port": API_PORT, "public_url": "https://textback.acme.example"},
        "api": {"requests_per_minute": 100_000, "burst": 10_000}})
    path = write_config(tmp_path, config)
    code, made = await asyncio.to_thread(cli, path, "token", "create", "--name", "fuzz",
                                         "--scope", "write")
    assert code == 0, made
    async with in_process(Daemon(load(path))) as running:
        running.api_token = made.splitlines()[0]
        await running.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, "Kitchen, Tuesday?",
                                               "first"), "log")
        [alert] = await asyncio.to_thread(smtp_sink.wait_for, 1, 10)
        running.reply_to = alert.message["Reply-To"]
        running.conversation = (await running.store.conversation_for(
            HOMEOWNER, BUSINESS_NUMBER))["id"]
        yield running


async def counts(daemon: Daemon) -> dict[str, int]:
    """How many rows the tables input lands in hold (SQL both backends run)."""
    tables = ("messages", "unroutable_texts", "outbox", "outcomes", "assignments",
              "suppressions", "notices", "consent_ledger")
    row = await daemon.store._one("SELECT " + ", ".join(
        f"(SELECT COUNT(*) FROM {table}) AS {table}" for table in tables))
    return {table: row[table] for table in tables}


webhook_ids = itertools.count(1)  # each example's MessageSid is new: never a provider's retry
callers = st.sampled_from(["+12125550177", "+16465550123", "(212) 555-0188", HOMEOWNER])
# Fields Twilio may add (free text, so the reader keeps them), and some it refuses the
# request for: a name not in Twilio's shape, a count that is not one.
junk = st.dictionaries(st.sampled_from(["FromCity", "FromState", "ToZip", "x", "NumMedia"]),
                       hostile_text, max_size=2)


@HOSTILE
@example(sender=HOMEOWNER, recipient=BUSINESS_NUMBER, body="Kitchen\x00", extra={}, signed=True)
@given(sender=callers | hostile_text, recipient=st.just(BUSINESS_NUMBER) | hostile_text,
       body=hostile_text, extra=junk, signed=st.booleans())
async def test_a_hostile_webhook_is_refused_unread_or_stored_before_its_answer(
        daemon, backend, sender, recipient, body, extra, signed):
    path = "/twilio/inbound"
    form = {**extra, "From": sender, "To": recipient, "Body": body,
            "MessageSid": f"SM{next(webhook_ids):032d}", "AccountSid": SID}
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signed:
        headers["X-Twilio-Signature"] = FakeTwilio(SID, TWILIO_TOKEN).sign(PUBLIC + path, form)
    before = await counts(daemon)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{WEBHOOK_PORT}{path}",
                                data=urlencode(form).encode(), headers=headers) as answer:
            status = answer.status
    after = await counts(daemon)
    # Signed, it may still be refused (a From or To that is not in Twilio's format).
    assert status in ((200, 400, 403) if signed else (403,)), status
    if status != 200:
        assert after == before
        return
    kept = await daemon.store._all(
        "SELECT body FROM messages WHERE gateway_id = ? UNION ALL"
        " SELECT body FROM unroutable_texts WHERE gateway_id = ?",
        (form["MessageSid"], form["MessageSid"]))
    assert [row["body"] for row in kept] == [stored(body, backend)]


def reply(header: str, body: str, reply_to: str) -> bytes:
    """The owner's reply as a mail client would send it: 8-bit UTF-8, the subject hostile (bar
    CR and LF, which end a header: a bare one is refused before the store, test_reply_mail.py)."""
    subject = header.replace("\r", " ").replace("\n", " ")
    return (f"From: Dana Reyes <{OWNER}>\r\nTo: {reply_to}\r\nSubject: Re: {subject}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n" + body).encode("utf-8")


def send(reply_to: str, raw: bytes) -> tuple[int, bytes]:
    """The SMTP answer to DATA."""
    with smtplib.SMTP("127.0.0.1", REPLY_PORT, timeout=30) as client:
        client.ehlo()
        client.mail(OWNER)
        assert client.rcpt(reply_to)[0] == 250
        try:
            return client.data(raw)
        except smtplib.SMTPDataError as refused:
            return refused.smtp_code, refused.smtp_error


@HOSTILE
@given(header=hostile_text, body=st.text(max_size=400) | hostile_text,
       raw=st.booleans(), junk_bytes=st.binary(max_size=300))
async def test_a_hostile_reply_mail_gets_an_smtp_verdict_and_is_kept_when_taken(
        daemon, header, body, raw, junk_bytes):
    message = (reply(header, body, daemon.reply_to) if not raw else
               f"From: {OWNER}\r\nTo: {daemon.reply_to}\r\n\r\n".encode() + junk_bytes)
    before = await counts(daemon)
    code, said = await asyncio.to_thread(send, daemon.reply_to, message)
    after = await counts(daemon)
    # A verdict: never the 451 of a reply it failed to read, nor the 500 of an exception.
    assert code == 250 or 550 <= code < 560, (code, said)
    if code != 250 or b"automatic reply" in said:  # refused, or a responder's mail dropped
        assert after == before
        return
    # Taken: texted to the homeowner (its outbox row), acted on (an outcome), or the owner
    # told why not (a notice): committed before the 250, never an answer that lost it.
    assert after != before, (said, before, after)


WRITES = (("reply", "text"), ("contact", "name"), ("outcome", "external_ref"),
          ("assignment", "owner"))


@HOSTILE
@given(which=st.sampled_from(WRITES), text=hostile_text, raw=st.none() | pathological)
async def test_a_hostile_api_write_is_refused_whole_or_stored_as_sent(
        daemon, backend, which, text, raw):
    (action, field), conversation = which, daemon.conversation
    body = {field: text, **({"stage": "booked"} if action == "outcome" else {})}
    before = await counts(daemon)
    async with aiohttp.ClientSession() as session:
        async with session.post(
                f"http://127.0.0.1:{API_PORT}/api/v1/conversations/{conversation}/{action}",
                data=json.dumps(body).encode() if raw is None else raw,
                headers={"Authorization": f"Bearer {daemon.api_token}",
                         "Content-Type": "application/json"}) as answer:
            status, answered = answer.status, await answer.json()
    after = await counts(daemon)
    assert status < 500, (status, answered)
    if status >= 400:
        assert after == before, answered
        return
    if raw is not None:
        return
    if action == "reply":
        row = await daemon.store._one("SELECT body FROM messages JOIN outbox"
                                      " ON outbox.message_id = messages.id WHERE outbox.id = ?",
                                      (answered["outbox_id"],))
        assert row["body"] == stored(text, backend)


async def test_a_nul_in_a_text_is_stored_on_either_backend(store, store_location):
    """PostgreSQL's text type cannot hold NUL: the store keeps the text with U+FFFD in its
    place (SQLite keeps it as it is), where the insert would otherwise fail and lose it."""
    backend = "postgresql" if isinstance(store_location, str) else "sqlite"
    inbound = await store.record_inbound(HOMEOWNER, BUSINESS_NUMBER, "Kitchen\x00 Tuesday",
                                         "log", "nul-1", "dana")
    await store.set_contact(inbound.conversation_id, "Ann\x00", None, "api:crm")
    [row] = await store._all("SELECT body FROM messages WHERE gateway_id = ?", ("nul-1",))
    assert row["body"] == stored("Kitchen\x00 Tuesday", backend)
    assert (await store.conversation(inbound.conversation_id))["contact_name"] == stored(
        "Ann\x00", backend)
