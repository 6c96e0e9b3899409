"""The shared inbox end to end on the lab PBX, in a real browser (Chromium via Playwright).

A missed call and a SIP MESSAGE reply appear live; the owner signs in with the alert email's
link and answers from the browser, and the carrier gets the text from the dialled DID;
assignment, the won amount on the scorecard, hostile caller input, and the sign-in checks.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

import pytest

from lab import flows
from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from lab.harness import eventually
from tests.browser import chromium, page_of, screenshot, sign_in
from tests.web_helpers import BASE, OWNERS, PASSWORDS, WEB_PORT, link_in

pytestmark = pytest.mark.lab

HOSTILE_NAME = "<script>window.__xss=1</script>"
HOSTILE_TEXT = 'Hi <img src=x onerror="window.__xss=2"> <script>window.__xss=3</script> call me'
NO_SCRIPT_RAN = "() => window.__xss === undefined && !document.querySelector('#rows img, .timeline img')"


@pytest.fixture
def inbox(tmp_path, lab_daemon, smtp_sink):
    """textback on the lab PBX with the web inbox on, and both owners' passwords set."""
    daemon = lab_daemon(**{"text.delay_seconds": 0, "owners": OWNERS,
                           "web": {"port": WEB_PORT, "public_url": BASE}})
    for owner, password in PASSWORDS.items():
        subprocess.run([sys.executable, "-m", "textback", "passwd", "-c", str(daemon.config_path),
                        owner], input=password + "\n", text=True, check=True, timeout=60)
    return daemon


async def miss(lab_pbx, caller: str, name: str = "") -> None:
    """The homeowner calls the lab DID and nobody answers (in a thread: SIPp runs meanwhile)."""
    def call():
        ringing = lab_pbx.phone("office1", "noanswer")
        header = f'"{name}" <sip:{caller}@127.0.0.3>' if name else None
        flows._play(lab_pbx.call(caller, BUSINESS_NUMBER, from_header=header), ringing)
    await asyncio.to_thread(call)


async def mails(smtp_sink, count: int, timeout: float = 20.0) -> list:
    async def arrived():
        return len(smtp_sink.received) >= count
    await eventually(arrived, timeout, f"{count} email(s)")
    return list(smtp_sink.received)


async def texts_to(sink, start: str, timeout: float = 15.0) -> list[dict]:
    async def arrived():
        return [m for m in sink.messages() if m["body"].startswith(start)]
    return await eventually(arrived, timeout, f"a text starting {start!r} at the carrier")


async def test_live_inbox_and_thread_then_an_emailed_link_and_a_reply_from_the_browser(
        lab_pbx, inbox, sink, smtp_sink):
    async with chromium() as browser, page_of(browser) as office, page_of(browser) as phone:
        await sign_in(office, BASE, "dana", PASSWORDS["dana"])
        await office.goto(f"{BASE}/?view=mine")
        assert "Nothing here" in await office.inner_text("#rows")
        # 1. a missed call appears in the open inbox without a reload, with its reason
        await miss(lab_pbx, HOMEOWNER, HOSTILE_NAME)
        row = office.locator(".row", has_text="(212) 555-0123")
        await row.wait_for(timeout=15000)
        assert "missed call: nobody picked up" in await row.inner_text()
        # 6. the caller's name is shown as text; no script ran
        assert HOSTILE_NAME in await row.inner_text()
        assert await office.evaluate(NO_SCRIPT_RAN)
        await texts_to(sink, "Hi, this is Acme Remodeling")
        # 2. the homeowner's SIP MESSAGE reply appears live in the open thread
        await row.locator("a").click()
        await office.wait_for_selector(".timeline")
        assert await asyncio.to_thread(lab_pbx.send_sms, HOMEOWNER, BUSINESS_NUMBER, HOSTILE_TEXT) < 300
        await office.locator(".timeline .text_in", has_text="call me").wait_for(timeout=15000)
        assert HOSTILE_TEXT in await office.inner_text(".timeline")
        assert await office.evaluate(NO_SCRIPT_RAN)
        # 3. the alert email's link signs the owner in on another device, at the thread
        [alert] = await mails(smtp_sink, 1)
        link = link_in(alert.message.get_body(("plain",)).get_content())
        await phone.goto(BASE + link)
        await phone.click("#use-link")
        await phone.wait_for_selector("form.reply")
        assert re.search(r"/c/\d+$", phone.url)
        await phone.fill("#reply-body", "Tuesday at 10 works. See you then!")
        await phone.click("form.reply button[type=submit]")
        [text] = await texts_to(sink, "Tuesday at 10")
        assert HOMEOWNER in text["to"] and BUSINESS_NUMBER in text["from"]
        await office.locator(".timeline", has_text="Dana replied").wait_for(timeout=10000)
        await screenshot(office, "lab-thread-desktop")
        # 7. the link works once
        async with page_of(browser) as stranger:
            await stranger.goto(BASE + link)
            assert stranger.url.endswith("/signin?why=used")
            assert "already used" in await stranger.inner_text("#why")


async def test_assignment_the_won_amount_on_the_scorecard_and_the_sign_in_checks(
        lab_pbx, inbox, sink, smtp_sink):
    async with chromium() as browser, page_of(browser) as dana, page_of(browser) as sam:
        await miss(lab_pbx, HOMEOWNER)
        await texts_to(sink, "Hi, this is Acme Remodeling")
        # 7. a wrong password is refused
        await sign_in(sam, BASE, "sam", "not the password")
        assert "Wrong account or password" in await sam.inner_text("#why")
        await sign_in(sam, BASE, "sam", PASSWORDS["sam"])
        await sam.goto(f"{BASE}/?view=mine")
        assert "Nothing here" in await sam.inner_text("#rows")
        # 4. assigning to the second owner puts the conversation under their Mine
        await sign_in(dana, BASE, "dana@example.com", PASSWORDS["dana"])
        await dana.goto(f"{BASE}/?view=all")
        await dana.locator(".row a", has_text="(212) 555-0123").click()
        await dana.select_option("select[name=owner]", "sam")
        await dana.click("text=Assign >> nth=-1")
        await dana.wait_for_selector("#said")
        await sam.locator(".row", has_text="(212) 555-0123").wait_for(timeout=10000)
        # 5. won with $82,000 shows on the scorecard chart and in the CSV
        await sam.locator(".row a").first.click()
        await sam.fill("input[name=amount]", "$82,000")
        await sam.click("form:has(input[name=amount]) button")
        await sam.wait_for_selector("text=Sam marked it won ($82,000)")
        thread = sam.url.split("?")[0]
        await sam.goto(f"{BASE}/scorecard")
        assert "won $82,000" in await sam.inner_html("svg.chart")
        await screenshot(sam, "lab-scorecard-desktop")
        csv = await sam.request.get(f"{BASE}/scorecard.csv")
        assert csv.ok and "82000.0" in await csv.text()
        # 7. a POST with a wrong CSRF token gets 403 and sends nothing
        await sam.goto(thread)
        await sam.evaluate("() => document.querySelector('form.reply input[name=csrf]').value = 'forged'")
        await sam.fill("#reply-body", "This must not go out")
        async with sam.expect_response(lambda r: r.request.method == "POST") as answer:
            await sam.click("form.reply button[type=submit]")
        assert (await answer.value).status == 403
        await asyncio.sleep(1)
        assert not [m for m in sink.messages() if "must not" in m["body"]]
        # 7. an owner who is not an admin gets 403 on the opt-out page
        response = await sam.goto(f"{BASE}/admin")
        assert response.status == 403
        response = await dana.goto(f"{BASE}/admin")
        assert response.status == 200 and "Opt-outs" in await dana.inner_text("main")
