"""Revoke-all: an opt-out through any channel stops every kind of text from every business
number at once, and the channel is in the consent ledger."""

from __future__ import annotations

import asyncio
import csv
import io
import time

import pytest
from click.testing import CliRunner

from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from sms_gateway.base import InboundText, OutgoingText
from sms_gateway.log import LogGateway
from textback.cli import main
from textback.core.replies import Verdict
from textback.core.tracker import CallFinished
from textback.store import CallRow, PlannedText
from textback.workers.selftest import TEXT_PREFIX, StepFailed, _Run
from tests.store_helpers import on_postgres
from tests.web_helpers import PASSWORDS, client, one_reply_signed_in

SECOND_NUMBER = "+12125550109"
OWNER_MOBILE = "+19175550188"


def missed_from(caller_id: str, linkedid: str, did: str) -> CallFinished:
    now = time.time()
    return CallFinished(linkedid, did, caller_id, "", "PJSIP/carrier-1", now - 20, now, "missed",
                        "no_answer")


async def send_due(daemon) -> None:
    for item in await daemon.store.due(time.time() + 3600):
        if await daemon.store.claim_all([item]):
            await daemon.outbox.send(item)


async def test_every_kind_of_text_from_every_number_stops_after_one_opt_out(offline_daemon,
                                                                            backend_storage):
    daemon = await offline_daemon(**{"numbers": [{"number": BUSINESS_NUMBER, "owner": "dana"},
                                                 {"number": SECOND_NUMBER, "owner": "dana"}]},
                                  **backend_storage, send_with=LogGateway())
    assert on_postgres(daemon.store) is bool(backend_storage)
    now = time.time()
    # Queued before the opt-out, on both business numbers, of every kind a path can write.
    await daemon.store.record_call(
        CallRow("5.1", BUSINESS_NUMBER, HOMEOWNER, HOMEOWNER, "", now, None, now, "missed",
                "no_answer", "missed_call_text"), PlannedText("dana", "Sorry we missed you", now))
    conversation = (await daemon.store.conversation_for(HOMEOWNER, BUSINESS_NUMBER))["id"]
    await daemon.store.queue_reply(conversation, BUSINESS_NUMBER, HOMEOWNER, "Tuesday?", "owner",
                                   author="dana", channel="web:dana")
    await daemon.store.queue_reply(conversation, BUSINESS_NUMBER, HOMEOWNER, "Help text", "help",
                                   channel="sms")
    await daemon.store.queue_test_text(HOMEOWNER, SECOND_NUMBER, "dana", "Test text")
    await daemon.store.record_selftest_call(
        CallRow("5.2", SECOND_NUMBER, "selftest", None, "", now, None, now, "missed",
                "no_answer", "missed_call_text"), HOMEOWNER, PlannedText("", "Self-test", now))
    assert await daemon.store.suppress(HOMEOWNER, "cli")
    await send_due(daemon)
    rows = await daemon.store._all(
        "SELECT m.kind, m.status, o.sender FROM messages m JOIN outbox o ON o.message_id = m.id")
    assert {(r["kind"], r["sender"]) for r in rows} == {
        ("auto", BUSINESS_NUMBER), ("owner", BUSINESS_NUMBER), ("help", BUSINESS_NUMBER),
        ("test", SECOND_NUMBER), ("selftest", SECOND_NUMBER)}
    assert {r["status"] for r in rows} == {"blocked"}
    refused = [(r["kind"], r["fact"]) for r in await daemon.store.consent_record(HOMEOWNER)
               if r["fact"] in ("opted_out", "text_refused")]
    assert refused[0] == ("", "opted_out")
    assert sorted(refused[1:]) == [(kind, "text_refused") for kind in
                                   ("auto", "help", "owner", "selftest", "test")]


async def test_do_not_text_in_the_inbox_and_the_admins_consent_export(tmp_path):
    async with one_reply_signed_in(tmp_path, "Call me about the deck", owner="sam") as (
            daemon, browser, cid):
        status, html, _ = await browser.get(f"/c/{cid}")
        assert "Do not text" in html
        status, _, response = await browser.post(f"/c/{cid}/reply", {
            "csrf": await browser.csrf(f"/c/{cid}"), "body": "Tuesday works"})
        assert response.headers["Location"].endswith("said=queued")
        csrf = await browser.csrf(f"/c/{cid}")
        status, _, response = await browser.post(f"/c/{cid}/donottext", {"csrf": csrf})
        assert (status, response.headers["Location"]) == (303, f"/c/{cid}?said=optout_added")
        assert await daemon.store.is_suppressed(HOMEOWNER)
        html = (await browser.get(f"/c/{cid}"))[1]
        assert "opted out (STOP)" in html and "Do not text" not in html
        status, _, response = await browser.post(f"/c/{cid}/reply", {
            "csrf": await browser.csrf(f"/c/{cid}"), "body": "Just checking"})
        assert response.headers["Location"].endswith("said=opted_out")
        record = [r for r in await daemon.store.consent_record(HOMEOWNER)
                  if r["channel"].startswith("web:")]  # the inbox's own
        assert [(r["fact"], r["channel"], r["body"]) for r in record] == [
            ("text_queued", "web:sam", "Tuesday works"), ("opted_out", "web:sam", ""),
            ("text_refused", "web:sam", "Just checking")]
        assert record[1]["business_number"] == BUSINESS_NUMBER

        # The export is the admin's: an owner gets 403, the admin a CSV of the record.
        assert (await browser.get("/admin/consent.csv?number=2125550123"))[0] == 403
        async with client() as admin:
            assert (await admin.sign_in("dana", PASSWORDS["dana"]))[0] == 303
            assert 'action="/admin/consent.csv"' in (await admin.get("/admin"))[1]
            status, body, response = await admin.get("/admin/consent.csv?number=(212)%20555-0123")
            assert status == 200 and response.content_type == "text/csv"
            assert "attachment" in response.headers["Content-Disposition"]
            table = list(csv.DictReader(io.StringIO(body)))
            assert [(r["fact"], r["channel"], r["number"]) for r in table
                    if r["channel"].startswith("web:")] == [
                ("text_queued", "web:sam", HOMEOWNER), ("opted_out", "web:sam", HOMEOWNER),
                ("text_refused", "web:sam", HOMEOWNER)]
            assert (await admin.get("/admin/consent.csv?number=nobody"))[0] == 400


class CarrierRecord(LogGateway):
    """The log gateway, keeping what it was handed: what a carrier would have received."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: list[OutgoingText] = []

    async def send(self, text: OutgoingText):
        self.handed.append(text)
        return await super().send(text)


@pytest.mark.parametrize("shape", [
    "tel:+1-212-555-0123",                                          # RFC 3966, with separators
    '"Jo Homeowner" <sip:2125550123@carrier.example;user=phone>;tag=9',  # SIP, national digits
    "+1 (212) 555-0123",                                            # as a person writes it
    "12125550123",                                                  # international, no '+'
])
async def test_an_opt_out_in_any_shape_stops_every_path(offline_daemon, backend_storage, tmp_path,
                                                        shape):
    """STOP from an address of any shape suppresses the one canonical number; then the missed-
    call text (caller ID in yet another shape, on the other business number), the owner's
    answers by SMS relay, email and CLI, a test text, a HELP answer and a self-test text all
    stay unsent, each refusal in the ledger, and each person who meant to text is told."""
    carrier = CarrierRecord()
    owners = [{"id": "dana", "name": "Dana Reyes", "email": "dana@example.com",
               "alerts": {"channels": ["email", "sms"], "sms": OWNER_MOBILE}},
              {"id": "sam", "name": "Sam Ortiz", "email": "sam@example.com"}]
    daemon = await offline_daemon(**{
        "numbers": [{"number": BUSINESS_NUMBER, "owner": "dana"},
                    {"number": SECOND_NUMBER, "owner": "dana"}],
        "owners": owners, "admin_email": "it@acme.example", "text.delay_seconds": 0,
        "selftest": {"recipient": "+1 212 555 0123"}},
        **backend_storage, send_with=carrier)
    # Before: the call, its text, the homeowner's question, its alert text to Dana's mobile, and
    # an answer from the CLI queued but not yet sent.
    await daemon.finish_call(missed_from(HOMEOWNER, "r.1", BUSINESS_NUMBER))
    await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, "Quote for a deck?", "m1"),
                              "asterisk")
    await send_due(daemon)
    assert [t.recipient for t in carrier.handed] == [HOMEOWNER, OWNER_MOBILE]

    async def cli(*args: str):
        return await asyncio.to_thread(CliRunner().invoke, main, args)

    path = str(tmp_path / "config.yaml")  # the daemon's own config: the CLI reaches its store
    early = await cli("reply", "-c", path, "(212) 555-0123", "Queued before the STOP")
    assert early.exit_code == 0, early.output

    await daemon.receive_text(InboundText(shape, f"<sip:{BUSINESS_NUMBER}@pbx>", "STOP", "m2"),
                              "asterisk")
    assert await daemon.store.is_suppressed(HOMEOWNER)
    await daemon.finish_call(missed_from("<sip:+12125550123@carrier.example>", "r.2", SECOND_NUMBER))
    await daemon.receive_text(InboundText("+1 212-555-0123", SECOND_NUMBER, "HELP", "m3"),
                              "asterisk")
    await daemon.receive_text(InboundText(OWNER_MOBILE, BUSINESS_NUMBER, "Tuesday at 10?", "m4"),
                              "asterisk")  # Dana answers from her phone (the SMS relay)
    conversation = await daemon.store.conversation_for(HOMEOWNER, BUSINESS_NUMBER)
    await daemon.owner_reply({"conversation_id": conversation["id"], "caller": HOMEOWNER,
                              "owner_id": "dana", "business_number": BUSINESS_NUMBER},
                             Verdict("text", text="By email"))
    by_cli = await cli("reply", "-c", path, "2125550123", "By the CLI")
    assert by_cli.exit_code == 1 and "opted out; nothing was sent" in by_cli.output
    test_text = await cli("test-text", "-c", path, "tel:+12125550123")
    assert test_text.exit_code == 1 and "opted out; nothing was sent" in test_text.output
    run = daemon.selftests._selftest_run = _Run(call_id="st.1")
    await daemon.selftests.call_finished(CallFinished(
        "st.1", BUSINESS_NUMBER, "+12125550123", "", "Local/x", time.time() - 20, time.time(),
        "missed", "no_answer", selftest=True))
    run.call, run.decision, run.outbox_id = await run.decided
    assert run.outbox_id is not None  # queued: the outbox refuses it as it sends
    await send_due(daemon)
    with pytest.raises(StepFailed, match="blocked.*recipient opted out"):
        await daemon.selftests._step_gateway(run)  # the installer reads why

    after_stop = [t for t in carrier.handed[2:] if t.recipient == HOMEOWNER]
    assert [t.body for t in after_stop] == [daemon.config.compliance.stop_confirmation.replace(
        "{business_name}", "Acme Remodeling")]
    record = await daemon.store.consent_record(HOMEOWNER)
    refused = sorted((r["kind"], r["channel"], r["body"][:12]) for r in record
                     if r["fact"] == "text_refused")
    assert refused == sorted([
        ("auto", "", ""),                                  # the second call's text, not queued
        ("help", "log", "Acme Remodel"),                   # HELP's answer, refused at sending
        ("owner", "cli", "By the CLI"),
        ("owner", "email:dana", "By email"),
        ("owner", "log", "Queued befor"),                  # queued before the STOP
        ("owner", "sms:dana", "Tuesday at 1"),             # the SMS relay
        ("selftest", "log", TEXT_PREFIX[:12]),
        ("test", "cli", "Acme Remodel")])
    [keyword] = [r for r in record if r["fact"] == "keyword" and r["kind"] == "STOP"]
    assert keyword["body"] == "STOP"
    assert [r["channel"] for r in record if r["fact"] == "opted_out"] == ["sms"]
    # Whoever meant to text is told: the CLI and the self-test above; Dana by text for her
    # answer from her phone, by email for her emailed one.
    notices = [t.body for t in carrier.handed if t.recipient == OWNER_MOBILE]
    assert any("they texted STOP" in body for body in notices)
    mailed = [row["subject"] for row in await daemon.store._all("SELECT subject FROM notices")]
    assert f"Not sent to {HOMEOWNER}: they opted out" in mailed
    assert [row["number"] for row in await daemon.store.suppressions()] == [HOMEOWNER]
