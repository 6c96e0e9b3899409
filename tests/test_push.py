"""Web Push to owners' devices: a real daemon and its web listener, a real HTTP client that
subscribes with the CSRF token, and a loopback push service (tests/push_service.py) that checks
the VAPID token and decrypts every payload with the keys this test made for the subscription."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from lab.harness import eventually
from textback.config import load
from textback.core import push
from textback.pushkeys import application_server_key, load_or_create
from tests.push_service import PushService
from tests.web_helpers import (OWNERS, PASSWORDS, client, homeowner_writes, set_passwords,
                               web_config, web_daemon)

PUSH = {"insecure_loopback_for_tests": True}


def push_config(tmp_path, **overrides):
    return web_config(tmp_path, **{"push": PUSH, "owners": OWNERS, **overrides})


async def received(service: PushService, count: int, timeout: float = 10.0) -> list:
    async def arrived():
        return len(service.received) >= count
    await eventually(arrived, timeout, f"{count} push(es) at the push service")
    return list(service.received)


async def settled(daemon, states: list[str]) -> list[dict]:
    """The push rows once their states are `states` (the service answers before the worker
    writes down its answer) and the worker has looked at each (a row is `pending` from the
    start: one it has held says why)."""
    async def there():
        rows = await daemon.store.pushes()
        return ([p["state"] for p in rows] == states
                and all(p["state"] != "pending" or p["last_error"] for p in rows))
    await eventually(there, 10, f"pushes {states}")
    return await daemon.store.pushes()


async def subscribed(browser, owner: str, service: PushService):
    """Sign `browser` in as `owner` and subscribe one device of theirs, as push.js does."""
    assert (await browser.sign_in(owner, PASSWORDS[owner]))[0] == 303
    device = service.subscribe()
    csrf = await browser.csrf("/settings")
    status, text, _ = await browser.post("/push/subscribe", {"csrf": csrf, **device.form()},
                                         headers={"User-Agent": f"{owner}'s phone"})
    assert status == 200, text
    return device


# -- the pure part ------------------------------------------------------------------------------

def test_a_notification_shows_the_caller_and_first_words_as_one_plain_line():
    note = push.compose("reply", "(212) 555-0123", "Bob\u202e <b>Smith</b>\r\nX-Injected: 1",
                        "We need a kitchen quote,\r\ncan you come Tuesday? " + "blah " * 40, 12,
                        "https://inbox.example/link/abc")
    assert note.title == "Bob <b>Smith</b> X-Injected: 1, (212) 555-0123 replied"
    assert "\n" not in note.title + note.body and "\u202e" not in note.title
    assert note.body.startswith("We need a kitchen quote, can you come Tuesday?")
    assert note.body.endswith("…") and len(note.body) <= push.FIRST_WORDS_CHARS
    assert (note.thread, note.tag) == ("/c/12", "c12")
    assert len(note.payload()) < push.MAX_PAYLOAD_BYTES


def test_the_intake_labels_lead_the_body_when_there_are_any():
    note = push.compose("reply", "(212) 555-0123", "", "We need a kitchen quote", 12, None,
                        labels="Kitchen · ~$75k · 11215 (in area)")
    assert note.body == "Kitchen · ~$75k · 11215 (in area) — We need a kitchen quote"
    hostile = push.compose("reply", "(212) 555-0123", "", "Hi", 12, None,
                           labels="Bath\u202e\r\nX: 1 · " + "Tue " * 40)
    assert "\n" not in hostile.body and "\u202e" not in hostile.body
    assert hostile.body.endswith("… — Hi")
    assert len(hostile.body) <= push.MAX_LABELS_CHARS + len(" — Hi")
    assert push.compose("reply", "(212) 555-0123", "", "Hi", 12, None, labels="").body == "Hi"
    # The caller's bare area code is in the title's number already; a ZIP's place is not.
    assert push.compose("reply", "(212) 555-0123", "", "Hi", 12, None,
                        labels="area 212").body == "Hi"
    assert push.compose("reply", "(212) 555-0123", "", "Hi", 12, None,
                        labels="Bath · area 212 · Tue").body == "Bath · Tue — Hi"


def test_who_hears_of_a_reply_and_of_an_assignment():
    from textback.config import OwnerConfig
    owners = [OwnerConfig(id="dana", name="D", email="d@x.example"),
              OwnerConfig(id="sam", name="S", email="s@x.example")]
    assert push.reply_recipients("sam", owners) == ["sam"]
    assert push.reply_recipients(None, owners) == ["dana", "sam"]
    assert push.assignment_recipient("sam", "dana", "assigned by dana (web)", owners) == "sam"
    assert push.assignment_recipient("sam", "dana", "claimed by sam (web)", owners) is None
    assert push.assignment_recipient("sam", "sam", "assigned by dana (web)", owners) is None


def test_only_https_push_hosts_by_name_and_a_mailto_contact():
    assert push.endpoint_problem("https://fcm.googleapis.com/fcm/send/abc") is None
    assert push.endpoint_problem("https://web.push.apple.com/QGx") is None
    for bad in ("http://fcm.googleapis.com/x", "https://10.0.0.5/x", "https://[::1]/x",
                "https://localhost/x", "https://user:pw@push.example.com/x",
                "https://push.example.com:8443/x", "javascript:alert(1)", "https://169.254.169.254/"):
        assert push.endpoint_problem(bad) is not None, bad
    assert push.endpoint_problem("http://127.0.0.1:18095/x") is not None
    assert push.endpoint_problem("http://127.0.0.1:18095/x", loopback_http_allowed=True) is None
    assert push.contact_problem("mailto:it@acme.example") is None
    for bad in ("it@acme.example", "https://acme.example", "mailto:", "mailto:a@b.example,c@d.example"):
        assert push.contact_problem(bad) is not None, bad
    assert [push.outcome(s) for s in (201, 404, 410, 429, 503, 400, 403, 413)] == \
        ["sent", "gone", "gone", "retry", "retry", "failed", "failed", "failed"]


def test_the_contact_must_be_a_mailto(tmp_path):
    with pytest.raises(Exception, match="mailto"):
        load(push_config(tmp_path, **{"push": {"contact": "https://acme.example/contact"}}))
    loaded = load(push_config(tmp_path, admin_email="it@acme.example"))
    assert loaded.config.push_contact() == "mailto:it@acme.example"


def test_the_vapid_key_is_made_once_kept_0600_and_read_back(tmp_path):
    path = tmp_path / "state" / "vapid-private.pem"
    first = load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_or_create(path)
    assert application_server_key(first) == application_server_key(again)
    assert len(push.origin("https://fcm.googleapis.com/fcm/send/x")) > 0


# -- the daemon, its web listener and the push service -------------------------------------------

async def test_a_reply_is_pushed_encrypted_signed_and_opens_its_thread(tmp_path):
    path = push_config(tmp_path)
    await set_passwords(path)
    async with PushService() as service, web_daemon(path) as daemon, client() as browser:
        device = await subscribed(browser, "dana", service)
        await homeowner_writes(daemon, "We need a kitchen quote, can you come by Tuesday?")
        [got] = await received(service, 1)
        assert got.token == device.token
        assert got.claims["aud"] == service.origin
        assert got.claims["sub"] == "mailto:dana@example.com"
        assert got.claims["k"] == application_server_key(load_or_create(tmp_path / "vapid-private.pem"))
        assert got.headers["Urgency"] == "high" and int(got.headers["TTL"]) > 0
        [row] = await daemon.store.inbox()
        payload = got.payload
        assert payload["kind"] == "reply"
        assert payload["title"] == "(212) 555-0123 replied"
        # The intake facts read from the reply lead the body, as they lead the alert email
        # (less the caller's area code, which the title's number says).
        assert row["intake_labels"] == "Kitchen · Tue · area 212"
        assert payload["body"] == "Kitchen · Tue — We need a kitchen quote, can you come by Tuesday?"
        assert payload["thread"] == f"/c/{row['id']}"
        # The link signs Dana in once and opens the thread, in a browser with no session.
        assert payload["link"].startswith("http://127.0.0.1:18088/link/")
        async with client() as phone:
            link_path = payload["link"].removeprefix("http://127.0.0.1:18088")
            status, html, _ = await phone.get(link_path)
            assert status == 200
            from tests.web_helpers import form_value
            status, _, response = await phone.post("/link", {
                "csrf": form_value(html, "csrf"), "token": form_value(html, "token")})
            assert (status, response.headers["Location"]) == (303, f"/c/{row['id']}")
        assert service.refused == []
        await settled(daemon, ["sent"])
        metrics = daemon.metrics.pushes.labels("sent")._value.get()
        assert metrics == 1


async def test_unassigned_replies_go_to_every_owner_claimed_ones_to_their_owner(tmp_path):
    path = push_config(tmp_path)
    await set_passwords(path)
    async with PushService() as service, web_daemon(path) as daemon, \
            client() as dana_browser, client() as sam_browser:
        dana = await subscribed(dana_browser, "dana", service)
        sam = await subscribed(sam_browser, "sam", service)
        await homeowner_writes(daemon, "First question")
        got = await received(service, 2)
        assert {g.token for g in got} == {dana.token, sam.token}
        [row] = await daemon.store.inbox()
        # Dana gives it to Sam: Sam hears of it; then Sam's conversation's replies go to Sam only.
        await daemon.store.assign(row["id"], "sam", "assigned by dana (web)")
        got = await received(service, 3)
        assert got[2].token == sam.token and got[2].payload["kind"] == "assigned"
        assert got[2].payload["title"] == "Assigned to you: (212) 555-0123"
        assert got[2].payload["body"] == "First question"
        await homeowner_writes(daemon, "Second question")
        got = await received(service, 4)
        assert got[3].token == sam.token and got[3].payload["body"] == "Second question"
        await asyncio.sleep(1.5)
        assert len(service.received) == 4


async def test_an_escalation_is_pushed_to_the_backup_owner(tmp_path):
    path = push_config(tmp_path, escalation={"backup_owner": "sam", "after_minutes": 15})
    await set_passwords(path)
    async with PushService() as service, web_daemon(path) as daemon, client() as browser:
        sam = await subscribed(browser, "sam", service)
        await homeowner_writes(daemon, "Hello? Anyone there?")
        await received(service, 1)  # unassigned: Sam hears of the reply too
        await daemon.mail.escalate(time.time() + 16 * 60)
        got = await received(service, 2)
        assert got[1].token == sam.token and got[1].payload["kind"] == "escalation"
        assert got[1].payload["title"].startswith("Unanswered")
        assert got[1].payload["body"] == "Hello? Anyone there?"


async def test_a_410_removes_the_subscription_and_a_503_is_retried(tmp_path):
    path = push_config(tmp_path)
    await set_passwords(path)
    async with PushService() as service, web_daemon(path) as daemon, client() as browser:
        device = await subscribed(browser, "dana", service)
        service.answers[device.token] = [503]
        started = time.monotonic()
        await homeowner_writes(daemon, "Are you there?")
        [got] = await received(service, 1, timeout=15)
        assert time.monotonic() - started >= 3.5  # the retry waited its backoff
        [row] = await settled(daemon, ["sent"])
        assert row["attempts"] == 2
        assert daemon.metrics.pushes.labels("retry")._value.get() == 1
        service.answers[device.token] = [410]
        await homeowner_writes(daemon, "Hello?")

        async def removed():
            return await daemon.store.push_devices("dana") == []
        await eventually(removed, 10, "the subscription removed")
        assert daemon.metrics.pushes.labels("gone")._value.get() == 1
        assert len(service.received) == 1


async def test_a_push_not_taken_by_its_deadline_expires(tmp_path):
    path = push_config(tmp_path, push={**PUSH, "deadline_minutes": 0.05})
    await set_passwords(path)
    async with PushService() as service, web_daemon(path) as daemon, client() as browser:
        device = await subscribed(browser, "dana", service)
        service.answers[device.token] = [503] * 10

        async def ended():
            return [p["state"] for p in await daemon.store.pushes()] == ["expired"]
        await homeowner_writes(daemon, "Anyone?")
        await eventually(ended, 10, "the push expired")
        assert daemon.metrics.pushes.labels("expired")._value.get() == 1
        [shown] = await daemon.store.push_devices("dana")
        assert "deadline" in shown["last_error"]


async def test_subscribing_needs_the_csrf_token_and_a_push_service_endpoint(tmp_path):
    path = push_config(tmp_path)
    await set_passwords(path)
    async with PushService() as service, web_daemon(path) as daemon, client() as browser:
        assert (await browser.sign_in("dana", PASSWORDS["dana"]))[0] == 303
        device = service.subscribe()
        status, _, _ = await browser.post("/push/subscribe", {"csrf": "forged", **device.form()})
        assert status == 403
        csrf = await browser.csrf("/settings")
        for endpoint in ("https://10.1.2.3/push/x", "http://push.example.com/x",
                         "https://192.168.1.20/x", "file:///etc/passwd"):
            status, text, _ = await browser.post("/push/subscribe", {
                "csrf": csrf, **device.form(), "endpoint": endpoint})
            assert status == 400, (endpoint, text)
        status, _, _ = await browser.post("/push/subscribe", {
            "csrf": csrf, **device.form(), "p256dh": "bm90LWEta2V5"})
        assert status == 400
        assert await daemon.store.push_devices("dana") == []


async def test_devices_are_listed_and_removed_and_push_can_be_turned_off(tmp_path):
    path = push_config(tmp_path)
    await set_passwords(path)
    async with PushService() as service, web_daemon(path) as daemon, client() as browser:
        await subscribed(browser, "dana", service)
        status, html, _ = await browser.get("/settings")
        assert "dana&#39;s phone" in html and "Notifications on my devices" in html
        csrf = await browser.csrf("/settings")
        status, _, response = await browser.post("/settings/alerts", {"csrf": csrf, "email": "on"})
        assert (status, response.headers["Location"]) == (303, "/settings?said=channels_saved")
        assert await daemon.store.alert_channels("dana") == ["email"]
        await homeowner_writes(daemon, "Nobody is told by push now")
        await asyncio.sleep(2)
        assert service.received == []
        [device] = await daemon.store.push_devices("dana")
        # Sam cannot remove Dana's device; Dana can.
        async with client() as sam:
            assert (await sam.sign_in("sam", PASSWORDS["sam"]))[0] == 303
            sam_csrf = await sam.csrf("/settings")
            status, _, _ = await sam.post(f"/settings/devices/{device['id']}/remove", {"csrf": sam_csrf})
            assert status == 404
        status, _, _ = await browser.post(f"/settings/devices/{device['id']}/remove", {"csrf": csrf})
        assert status == 303
        assert await daemon.store.push_devices("dana") == []


async def test_the_settings_take_any_mix_of_channels_but_never_none(tmp_path):
    path = push_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path) as daemon, client() as browser:
        await browser.sign_in("dana", PASSWORDS["dana"])
        status, html, _ = await browser.get("/settings")
        assert 'name="email" value="on" checked' in html  # the config's default: email, push
        assert "No device has notifications on" in html  # push is chosen, no device yet
        assert 'name="sms"' not in html  # no mobile number in the config: not offered
        csrf = await browser.csrf("/settings")
        for form in ({}, {"sms": "on"}):  # nothing, or only texts to a mobile there is none of
            status, _, response = await browser.post("/settings/alerts", {"csrf": csrf, **form})
            assert (status, response.headers["Location"]) == (
                303, "/settings?said=channels_none#alerts")
        assert await daemon.store.alert_channels("dana") is None  # nothing was saved
        status, html, _ = await browser.get("/settings?said=channels_none")
        assert "Not saved: choose at least one way to be told" in html
        status, _, response = await browser.post("/settings/alerts", {"csrf": csrf, "push": "on"})
        assert response.headers["Location"] == "/settings?said=channels_saved"
        assert await daemon.store.alert_channels("dana") == ["push"]
        status, html, _ = await browser.get("/settings")
        assert 'name="email" value="on">' in html and "No device has notifications on" in html
        await browser.post("/settings/alerts", {"csrf": csrf, "email": "on"})
        status, html, _ = await browser.get("/settings")
        assert "No device has notifications on" not in html  # push is off: nothing to warn of


async def test_an_owner_who_chose_no_alert_email_gets_none_and_the_lead_still_escalates(tmp_path):
    path = push_config(tmp_path, escalation={"backup_owner": "sam", "after_minutes": 15})
    await set_passwords(path)
    async with PushService() as service, web_daemon(path) as daemon, client() as browser:
        await subscribed(browser, "dana", service)
        csrf = await browser.csrf("/settings")
        await browser.post("/settings/alerts", {"csrf": csrf, "push": "on"})
        assert await daemon.store.alert_channels("dana") == ["push"]
        await homeowner_writes(daemon, "Is anyone there?")
        [got] = await received(service, 1)
        assert got.payload["body"] == "Is anyone there?"

        async def skipped() -> bool:
            rows = await daemon.store._all("SELECT state FROM alerts")
            return [r["state"] for r in rows] == ["skipped"]
        await eventually(skipped, 10, "the alert ended as skipped")
        [alert] = await daemon.store._all("SELECT * FROM alerts")
        assert alert["owner_id"] == "dana" and alert["sent_at"] is None
        assert alert["last_error"] == "not emailed: dana chose no alert emails"
        # Still a lead waiting: unread and unanswered in the inbox, and escalated by email.
        conversation = await daemon.store.conversation(alert["conversation_id"])
        assert (conversation["unread"], conversation["unanswered"]) == (1, 1)
        status, page, _ = await browser.get(f"/c/{conversation['id']}")
        assert status == 200 and "not emailed to Dana (their choice)" in page
        await daemon.mail.escalate(time.time() + 16 * 60)
        escalations = await daemon.store._all("SELECT owner_id, level FROM escalations")
        assert [(e["owner_id"], e["level"]) for e in escalations] == [("sam", 1)]
        notices = await daemon.store._all("SELECT address, subject FROM notices")
        assert [(n["address"], n["subject"][:11]) for n in notices] == [
            ("sam@example.com", "Unanswered:")]


def quiet_now() -> str:
    """Quiet hours from an hour ago to an hour from now, business time (America/New_York)."""
    local = datetime.now(ZoneInfo("America/New_York"))
    return f"{local - timedelta(hours=1):%H:%M}-{local + timedelta(hours=1):%H:%M}"


@pytest.mark.parametrize("deadline_minutes, state", [(180, "pending"), (30, "expired")])
async def test_the_owners_quiet_hours_hold_a_push_or_drop_it_past_its_deadline(
        tmp_path, deadline_minutes, state):
    owners = [{**OWNERS[0], "alerts": {"quiet_hours": quiet_now()}}, OWNERS[1]]
    path = push_config(tmp_path, owners=owners,
                       push={**PUSH, "deadline_minutes": deadline_minutes})
    await set_passwords(path)
    async with PushService() as service, web_daemon(path) as daemon, client() as browser:
        await subscribed(browser, "dana", service)
        await homeowner_writes(daemon, "Late question")
        [row] = await settled(daemon, [state])
        assert row["last_error"].startswith(f"{'held: ' if state == 'pending' else ''}"
                                            "dana's quiet hours for alerts (")
        if state == "pending":  # it goes when the window ends, an hour from now
            assert 3500 < row["retry_at"] - time.time() < 3700
        await asyncio.sleep(1)
        assert service.received == []


async def test_the_owner_sets_quiet_hours_on_the_settings_page(tmp_path):
    path = push_config(tmp_path, push={**PUSH, "deadline_minutes": 180})
    await set_passwords(path)
    async with PushService() as service, web_daemon(path) as daemon, client() as browser:
        await subscribed(browser, "dana", service)
        status, html, _ = await browser.get("/settings")
        assert 'name="quiet_hours" value=""' in html  # none in the config
        csrf = await browser.csrf("/settings")
        status, _, response = await browser.post("/settings/alerts", {
            "csrf": csrf, "push": "on", "quiet_hours": "late<script>"})
        assert response.headers["Location"] == "/settings?said=quiet_hours_bad#alerts"
        assert await daemon.store.alert_quiet_hours("dana") is None  # nothing was saved
        status, _, response = await browser.post("/settings/alerts", {
            "csrf": csrf, "push": "on", "quiet_hours": f" {quiet_now()} "})
        assert response.headers["Location"] == "/settings?said=channels_saved"
        assert await daemon.store.alert_quiet_hours("dana") == quiet_now()
        status, html, _ = await browser.get("/settings")
        assert f'name="quiet_hours" value="{quiet_now()}"' in html
        await homeowner_writes(daemon, "Late question")
        [row] = await settled(daemon, ["pending"])
        assert row["last_error"].startswith("held: dana's quiet hours for alerts (")
        await browser.post("/settings/alerts", {"csrf": csrf, "push": "on", "quiet_hours": ""})
        assert await daemon.store.alert_quiet_hours("dana") == ""  # none, whatever the config says
        await homeowner_writes(daemon, "Second question")
        await received(service, 1)


async def test_a_push_a_crash_left_in_sending_is_sent_again_and_queued_once(tmp_path):
    from textback.store import QueuedPush, Store
    store = await Store.open(tmp_path / "textback.db")
    try:
        await store.start_push_cursors()
        device = await store.save_push_subscription("dana", "https://fcm.googleapis.com/fcm/send/a",
                                                    "key", "auth", "phone")
        push_row = QueuedPush(device, "reply", "evt_1", '{"tag":"c1"}', time.time(), time.time() + 60)
        assert await store.queue_pushes([push_row], 5, 0) == 1
        assert await store.queue_pushes([push_row], 5, 0) == 0  # the same change, once per device
        assert await store.push_cursors() == (5, 0)
        [push_id] = await store.due_pushes(time.time())
        assert (await store.claim_push(push_id, time.time()))["endpoint"].endswith("/send/a")
        assert await store.claim_push(push_id, time.time()) is None  # claimed: nobody else sends it
        assert await store.recover_interrupted_pushes() == 1
        claimed = await store.claim_push(push_id, time.time())
        assert claimed["attempts"] == 2
        # The same browser signed in as Sam: the device is Sam's now, never both owners'.
        await store.save_push_subscription("sam", "https://fcm.googleapis.com/fcm/send/a", "k2", "a2", "phone")
        assert await store.push_devices("dana") == []
        assert [d["id"] for d in await store.push_devices("sam")] == [device]
    finally:
        await store.close()


async def test_a_stored_endpoint_on_a_private_address_is_never_posted_to(tmp_path):
    """A subscription that reached the store some other way (an older release, a hand edit) is
    checked again when sent: only HTTPS to a push-service name, never a private address."""
    from textback.ops.metrics import Metrics
    from textback.store import QueuedPush, Store
    from textback.workers.push import PushWorker
    config = load(web_config(tmp_path, owners=OWNERS)).config
    store = await Store.open(tmp_path / "textback.db")
    try:
        metrics = Metrics({})
        worker = PushWorker(config, store, metrics, load_or_create(tmp_path / "vapid.pem"),
                            lambda owner, conversation: asyncio.sleep(0, "link"), asyncio.Event())
        for endpoint in ("https://10.0.0.7/push/x", "http://127.0.0.1:18095/wpush/v2/x",
                         "https://[fd00:ec2::254]/x"):
            device = await store.save_push_subscription("dana", endpoint, "key", "auth", "phone")
            await store.queue_pushes([QueuedPush(device, "reply", endpoint, '{"tag":"c1"}',
                                                 time.time(), time.time() + 60)], 0, 0)
        for push_id in await store.due_pushes(time.time()):
            await worker.deliver(push_id)
        ended = await store.pushes()
        assert [p["state"] for p in ended] == ["failed"] * 3
        assert all(p["last_error"].startswith("endpoint refused") for p in ended)
        assert metrics.pushes.labels("failed")._value.get() == 3
    finally:
        await store.close()
