"""Revoke-all: an opt-out through any channel stops every kind of text from every business
number at once, and the channel is in the consent ledger."""

from __future__ import annotations

import csv
import io
import time

from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from sms_gateway.log import LogGateway
from textback.store import CallRow, PlannedText
from tests.web_helpers import PASSWORDS, client, one_reply_signed_in

SECOND_NUMBER = "+12125550109"


async def send_due(daemon) -> None:
    for item in await daemon.store.due(time.time() + 3600):
        if await daemon.store.claim_all([item]):
            await daemon.outbox.send(item)


async def test_every_kind_of_text_from_every_number_stops_after_one_opt_out(offline_daemon):
    daemon = await offline_daemon(**{"numbers": [{"number": BUSINESS_NUMBER, "owner": "dana"},
                                                 {"number": SECOND_NUMBER, "owner": "dana"}]},
                                  send_with=LogGateway())
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
        csrf = await browser.csrf(f"/c/{cid}")
        status, _, response = await browser.post(f"/c/{cid}/donottext", {"csrf": csrf})
        assert (status, response.headers["Location"]) == (303, f"/c/{cid}?said=optout_added")
        assert await daemon.store.is_suppressed(HOMEOWNER)
        html = (await browser.get(f"/c/{cid}"))[1]
        assert "opted out (STOP)" in html and "Do not text" not in html
        status, _, response = await browser.post(f"/c/{cid}/reply", {
            "csrf": await browser.csrf(f"/c/{cid}"), "body": "Just checking"})
        assert response.headers["Location"].endswith("said=opted_out")
        record = await daemon.store.consent_record(HOMEOWNER)
        assert [(r["fact"], r["channel"], r["body"]) for r in record] == [
            ("opted_out", "web:sam", ""), ("text_refused", "web:sam", "Just checking")]
        assert record[0]["business_number"] == BUSINESS_NUMBER

        # The export is the admin's: an owner gets 403, the admin a CSV of the record.
        assert (await browser.get("/admin/consent.csv?number=2125550123"))[0] == 403
        async with client() as admin:
            assert (await admin.sign_in("dana", PASSWORDS["dana"]))[0] == 303
            assert 'action="/admin/consent.csv"' in (await admin.get("/admin"))[1]
            status, body, response = await admin.get("/admin/consent.csv?number=(212)%20555-0123")
            assert status == 200 and response.content_type == "text/csv"
            assert "attachment" in response.headers["Content-Disposition"]
            table = list(csv.DictReader(io.StringIO(body)))
            assert [(r["fact"], r["channel"], r["number"]) for r in table] == [
                ("opted_out", "web:sam", HOMEOWNER), ("text_refused", "web:sam", HOMEOWNER)]
            assert (await admin.get("/admin/consent.csv?number=nobody"))[0] == 400
