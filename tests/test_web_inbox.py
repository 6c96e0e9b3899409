"""The inbox and thread pages without JavaScript: every action a form, a POST and a redirect."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from lab.configs import BUSINESS_NUMBER
from textback.store import CallRow, PlannedText
from tests.web_helpers import (BASE, PASSWORDS, client, form_value, homeowner_writes,
                               one_reply_signed_in, run_cli, set_passwords, web_config, web_daemon)

HOSTILE = '<script>alert(1)</script><img src=x onerror=alert(2)>'


async def signed_in(browser, owner="sam"):
    status, where = await browser.sign_in(owner, PASSWORDS[owner])
    assert (status, where) == (303, "/")


async def act(browser, conversation_id: int, action: str, **fields) -> tuple[int, str]:
    """Submit one of the thread page's forms as the page (just loaded) would."""
    status, html, _ = await browser.get(f"/c/{conversation_id}")
    assert status == 200, html
    stamp = {name: form_value(html, name) for name in ("csrf", "version", "seen")}
    status, body, response = await browser.post(f"/c/{conversation_id}/{action}",
                                                {**stamp, **fields})
    return status, response.headers.get("Location", body)


async def test_the_inbox_lists_waiting_replies_first_with_who_where_and_how_long(tmp_path):
    path = web_config(tmp_path, numbers=[{"number": BUSINESS_NUMBER, "owner": "dana",
                                          "label": "Kitchen line"}])
    await set_passwords(path)
    async with web_daemon(path) as daemon, client() as browser:
        now = time.time()
        await daemon.store.record_call(CallRow(
            "1.1", BUSINESS_NUMBER, "+12125550166", "+12125550166", "Quiet Caller", now - 30, None,
            now - 20, "missed", "no_answer", "missed_call_text"), PlannedText("dana", "Sorry", now))
        await homeowner_writes(daemon, "Please call about the deck")
        await signed_in(browser, "dana")
        status, html, _ = await browser.get("/?view=all")
        assert status == 200
        assert html.index("(212) 555-0123") < html.index("(212) 555-0166")
        assert "Please call about the deck" in html and "Kitchen line" in html
        assert "waiting 0 min" in html and "Dana Reyes" in html and "Quiet Caller" in html
        assert "<title>(2) All" in html  # both unread: a missed call and a reply
        for bad in ("/?view=nope", "/?limit=x"):
            assert (await browser.get(bad))[0] == 400
        assert (await browser.get("/c/999"))[0] == 404
        assert (await browser.get("/c/abc"))[0] == 404
        assert (await browser.get("/?q=deck"))[1].count('data-id=') == 1


async def test_reply_from_the_thread_goes_through_the_outbox_and_records_its_author(tmp_path):
    async with one_reply_signed_in(tmp_path, "When can you come?") as (daemon, browser, cid):
        row = {"id": cid}
        assert await act(browser, row["id"], "reply", body="Tuesday at 9?") == \
            (303, f"/c/{row['id']}?said=queued")
        status, html, _ = await browser.get(f"/c/{row['id']}?said=queued")
        assert "Queued" in html and "Sam replied" in html and "Tuesday at 9?" in html
        [reply] = [m for m in (await daemon.store.thread(row["id"]))["messages"] if m["kind"] == "owner"]
        assert reply["author"] == "sam"
        assert (await daemon.store.inbox())[0]["unanswered"] is False
        assert (await act(browser, row["id"], "reply", body="x" * 500))[1].endswith("said=too_long")
        assert (await act(browser, row["id"], "reply", body="   "))[1].endswith("said=empty")
        await daemon.store.suppress("+12125550123", "sms")
        assert (await act(browser, row["id"], "reply", body="Hello?"))[1].endswith("said=opted_out")
        owner_texts = [m for m in (await daemon.store.thread(row["id"]))["messages"]
                       if m["kind"] == "owner"]
        assert len(owner_texts) == 1


async def test_claim_assign_snooze_done_outcomes_and_notes(tmp_path):
    async with one_reply_signed_in(tmp_path, "Bathroom quote please") as (daemon, browser, cid):
        assert "Nothing here" in (await browser.get("/?view=mine"))[1]
        await act(browser, cid, "claim")
        assert "Bathroom quote please" in (await browser.get("/?view=mine"))[1]
        assert "Nothing here" in (await browser.get("/?view=unassigned"))[1]
        await act(browser, cid, "assign", owner="dana")
        assert (await daemon.store.conversation(cid))["owner_id"] == "dana"
        assert (await act(browser, cid, "assign", owner="mallory"))[0] == 400
        await act(browser, cid, "snooze", hours="3")
        assert "Bathroom quote please" in (await browser.get("/?view=snoozed"))[1]
        assert (await act(browser, cid, "snooze", hours="-1"))[0] == 400
        assert (await act(browser, cid, "snooze", until="not a date"))[0] == 400
        await act(browser, cid, "note", body=f"Gate code 1234 {HOSTILE}")
        await act(browser, cid, "outcome", stage="booked")
        assert (await act(browser, cid, "outcome", stage="won", amount="lots"))[0] == 400
        assert (await act(browser, cid, "outcome", stage="sold"))[0] == 400
        await act(browser, cid, "outcome", stage="won", amount="$82,000")
        await act(browser, cid, "contact", name=HOSTILE, **{"class": "lead"})
        status, html, _ = await browser.get(f"/c/{cid}")
        assert status == 200
        assert "Internal note by Sam Ortiz" in html and "Gate code 1234" in html
        assert "Sam marked it won ($82,000)" in html and "Sam marked it booked" in html
        assert "Sam gave it to Dana Reyes" in html and "Sam took it" in html
        assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "Bathroom quote please" in (await browser.get("/?view=done"))[1]
        [(stage, value)] = [(o["stage"], o["value"]) for o in
                            (await daemon.store.thread(cid))["outcomes"] if o["stage"] == "won"]
        assert value == 82000
        [texts] = [[m for m in (await daemon.store.thread(cid))["messages"]]]
        assert all("Gate code" not in m["body"] for m in texts)  # a note is never texted
        assert (await act(browser, cid, "explode"))[0] == 404
        await act(browser, cid, "done")
        await homeowner_writes(daemon, "One more question")
        assert "One more question" in (await browser.get("/?view=waiting"))[1]


async def read_events(browser, headers: dict, wanted: int, timeout: float = 5.0) -> list[dict]:
    """Read the event stream until `wanted` change events arrived; each as {id, data}."""
    import json

    events: list[dict] = []
    async with browser.session.get(f"{BASE}/events", headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        event: dict = {}
        async with asyncio.timeout(timeout):
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("id: "):
                    event["id"] = int(line[4:])
                elif line.startswith("data: "):
                    event["data"] = json.loads(line[6:])
                elif not line and event:
                    events.append(event)
                    event = {}
                    if len(events) >= wanted:
                        return events
    return events


async def test_the_event_stream_catches_up_after_a_drop_from_last_event_id(tmp_path):
    path = web_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path) as daemon, client() as browser:
        await signed_in(browser)
        await homeowner_writes(daemon, "first", sender="+12125550131")
        [first] = await read_events(browser, {"Last-Event-ID": "0"}, 1)
        assert first["data"]["unread"] == 1
        # While no stream is open, two more conversations change.
        await homeowner_writes(daemon, "second", sender="+12125550132")
        await homeowner_writes(daemon, "third", sender="+12125550133")
        events = await read_events(browser, {"Last-Event-ID": str(first["id"])}, 1)
        changed = [c for e in events for c in e["data"]["conversations"]]
        ids = {r["caller"]: r["id"] for r in await daemon.store.inbox()}
        assert changed == [ids["+12125550132"], ids["+12125550133"]]
        assert events[-1]["data"]["unread"] == 3
        async with client() as stranger:
            assert (await stranger.get("/events"))[0] == 401


def missed_from(caller: str, linkedid: str):
    from textback.core.tracker import CallFinished

    now = time.time()
    return CallFinished(linkedid, BUSINESS_NUMBER, caller, "", "PJSIP/carrier-1", now - 20, now,
                        "missed", "no_answer")


async def test_the_class_set_in_the_contact_panel_applies_from_the_next_call(tmp_path):
    path = web_config(tmp_path, **{"text.dedupe_hours": 0, "contacts": [
        {"number": "+12125550123", "name": "Jane", "class": "client"}]})
    await set_passwords(path)
    async with web_daemon(path) as daemon, client() as browser:
        first = await daemon.finish_call(missed_from("+12125550123", "c.1"))
        assert first.send  # a client from the config is texted
        [row] = await daemon.store.inbox()
        await signed_in(browser)
        assert 'selected>client<' in (await browser.get(f"/c/{row['id']}"))[1]
        await act(browser, row["id"], "contact", name="Jane's Plumbing", **{"class": "vendor"})
        second = await daemon.finish_call(missed_from("+12125550123", "c.2"))
        assert (second.send, second.reason) == (False, "caller_is_vendor")
        await act(browser, row["id"], "contact", name="Jane's Plumbing", **{"class": "lead"})
        third = await daemon.finish_call(missed_from("+12125550123", "c.3"))
        assert third.send and third.reason == "missed_call_text"  # an ordinary caller again
        assert (await act(browser, row["id"], "contact", name="x", **{"class": "boss"}))[0] == 400
        assert (await daemon.store.conversation(row["id"]))["contact_name"] == "Jane's Plumbing"


async def test_an_undelivered_text_shows_its_gateway_error_in_plain_words_as_textback_thread(tmp_path):
    path = web_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path) as daemon, client() as browser:
        now = time.time()
        call = CallRow("1.1", BUSINESS_NUMBER, "+12125550123", "+12125550123", "", now - 60, None,
                       now - 40, "missed", "no_answer", "missed_call_text")
        later = now + 3600  # not due yet: the daemon's outbox leaves it to this test
        await daemon.store.record_call(call, PlannedText("dana", "Sorry we missed you", later))
        (item,) = await daemon.store.due(later)
        await daemon.store.claim_all([item])
        await daemon.store.mark_all_sent([(item, "SM1")], "twilio")
        assert await daemon.store.update_delivery("twilio", "SM1", "undelivered", "30006")
        [row] = await daemon.store.inbox()
        await signed_in(browser, "dana")
        status, html, _ = await browser.get(f"/c/{row['id']}")
        cli = await asyncio.to_thread(run_cli, "thread", "+12125550123", "-c", str(path))
    assert status == 200 and cli.exit_code == 0, cli.output
    plain = "it is a landline, or their carrier cannot receive texts [provider error 30006]"
    assert f"({plain})" in cli.output
    assert f'<span class="detail">undelivered: {plain}</span>' in html


async def test_a_text_held_for_quiet_hours_shows_in_the_inbox_row_and_textback_inbox(tmp_path):
    path = web_config(tmp_path)
    await set_passwords(path)
    opens = datetime(2030, 1, 8, 8, 0, tzinfo=ZoneInfo("America/New_York")).timestamp()
    async with web_daemon(path) as daemon, client() as browser:
        now = time.time()
        call = CallRow("1.1", BUSINESS_NUMBER, "+13055550123", "+13055550123", "", now - 60, None,
                       now - 40, "missed", "no_answer", "missed_call_text")
        later = now + 3600  # not due yet: the daemon's outbox leaves it to this test
        await daemon.store.record_call(call, PlannedText("dana", "Sorry we missed you", later))
        (item,) = await daemon.store.due(later)
        await daemon.store.claim_all([item])
        assert await daemon.store.hold(item, opens, "until Tue 2030-01-08 08:00 EST, quiet hours")
        await signed_in(browser, "dana")
        status, html, _ = await browser.get("/?view=all")
        listed = await asyncio.to_thread(run_cli, "inbox", "--json", "-c", str(path))
        table = await asyncio.to_thread(run_cli, "inbox", "-c", str(path))
    assert status == 200 and listed.exit_code == 0 and table.exit_code == 0, listed.output
    assert ('<span class="held">text held until Tue 08 Jan 08:00 (their quiet hours)</span>'
            in html)
    [row] = json.loads(listed.output)
    assert row["held_until"] == opens
    assert "text held until 2030-01-08 08:00:00 (their quiet hours)" in table.output
