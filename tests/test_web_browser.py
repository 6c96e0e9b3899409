"""The inbox in a real browser (Chromium): live updates, the segment counter, hostile text shown as
text with no script run, back after sign-out, the settings page. (Phone-sized pages, axe-core and the screenshots: test_web_phone_a11y.py.)"""

from __future__ import annotations

import time

from lab.configs import BUSINESS_NUMBER
from textback.store import CallRow, PlannedText
from tests.browser import LAYOUT_PROBLEMS, PHONE, chromium, page_of, screenshot, sign_in
from tests.web_helpers import BASE, PASSWORDS, homeowner_writes, set_passwords, web_config, web_daemon

SCRIPT_NAME = '<script>window.__xss = "name"</script>'
IMG_TEXT = 'Hi <img src=x onerror="window.__xss = \'text\'"> <script>window.__xss = "text"</script>'


async def seed(daemon) -> None:
    now = time.time()
    await daemon.store.record_call(CallRow(
        "1.1", BUSINESS_NUMBER, "+12125550166", "+12125550166", SCRIPT_NAME, now - 90, None,
        now - 80, "missed", "no_answer", "missed_call_text"),
        PlannedText("dana", "Hi, this is Acme Remodeling. Sorry we missed your call!", now))
    await homeowner_writes(daemon, IMG_TEXT, sender="+12125550166")
    await homeowner_writes(daemon, "We'd like a quote for a new kitchen, budget around $75k. "
                                   "Tuesday morning works.", sender="+12125550123")


async def test_hostile_names_and_texts_show_as_text_and_run_no_script(tmp_path):
    path = web_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path) as daemon, chromium() as browser, page_of(browser) as page:
        await seed(daemon)
        await sign_in(page, BASE, "dana", PASSWORDS["dana"])
        await page.goto(f"{BASE}/?view=all")
        assert SCRIPT_NAME in await page.inner_text("#rows")
        row = page.locator(".row", has_text="(212) 555-0166")
        await row.locator("a").click()
        await page.wait_for_selector(".timeline")
        timeline = await page.inner_text(".timeline")
        assert IMG_TEXT in timeline
        assert await page.evaluate("() => window.__xss === undefined")
        assert await page.evaluate("() => document.querySelectorAll('.timeline img, .timeline script,"
                                   " #rows script').length") == 0


async def test_a_new_reply_appears_live_and_the_title_counts_unread(tmp_path):
    path = web_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path) as daemon, chromium() as browser, page_of(browser) as page:
        await sign_in(page, BASE, "dana", PASSWORDS["dana"])
        await page.goto(f"{BASE}/?view=all")
        assert "Nothing here" in await page.inner_text("#rows")
        await homeowner_writes(daemon, "Are you open Saturday?")
        await page.wait_for_selector("text=Are you open Saturday?", timeout=10000)
        await page.wait_for_function("() => document.title === '(1) All · Acme Remodeling'",
                                     timeout=5000)
        await page.locator(".row a").first.click()
        await page.wait_for_selector(".timeline")
        await homeowner_writes(daemon, "Or Sunday?")
        await page.wait_for_selector(".timeline >> text=Or Sunday?", timeout=10000)
        # The live counter: characters, encoding and segments as the owner types.
        await page.fill("#reply-body", "Saturday 9am works")
        assert await page.inner_text("#segments") == "18 characters · GSM-7 · 1 segment"
        await page.fill("#reply-body", "Saturday’s fine " + "x" * 60)
        assert await page.inner_text("#segments") == "76 characters · UCS-2 · 2 segments"
        await page.fill("#reply-body", "Saturday 9am works")
        await page.click("form.reply button[type=submit]")
        await page.wait_for_selector("#said")
        assert "Queued" in await page.inner_text("#said")
        assert await page.title() == "(212) 555-0123 · Acme Remodeling"  # no unread count


async def test_back_after_signing_out_does_not_show_the_last_thread(tmp_path):
    path = web_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path) as daemon, chromium() as browser, page_of(browser) as page:
        await homeowner_writes(daemon, "Gate code is 4417, the dog is friendly")
        [row] = await daemon.store.inbox()
        await sign_in(page, BASE, "dana", PASSWORDS["dana"])
        await page.goto(f"{BASE}/c/{row['id']}")
        await page.wait_for_selector(".timeline >> text=Gate code is 4417")
        await page.click("form.signout button[type=submit]")
        await page.wait_for_url(f"{BASE}/signin?why=signed_out")
        await page.go_back()
        await page.wait_for_load_state()
        assert "Gate code" not in await page.content()
        assert page.url.startswith(f"{BASE}/signin?next=")
        await screenshot(page, "back-after-sign-out")


async def test_the_settings_page_fits_a_phone_and_ends_the_other_sessions(tmp_path):
    path = web_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path) as daemon, chromium() as browser, \
            page_of(browser) as desk, page_of(browser, PHONE) as phone:
        await sign_in(desk, BASE, "dana", PASSWORDS["dana"])
        await sign_in(phone, BASE, "dana@example.com", PASSWORDS["dana"])
        await phone.goto(f"{BASE}/settings")
        assert await phone.locator(".sessions li").count() == 2
        assert await phone.evaluate(LAYOUT_PROBLEMS) == []
        await screenshot(phone, "settings-phone")
        await phone.click("text=Sign out everywhere else")
        await phone.wait_for_selector("#said")
        assert await phone.locator(".sessions li").count() == 1
        await desk.goto(f"{BASE}/")
        assert desk.url.startswith(f"{BASE}/signin?next=")
        assert "signed out from another browser" in await desk.inner_text("#why")
        assert len(await daemon.store.live_sessions("dana")) == 1
        # On a phone the header has room for the links alone: sign-out is here.
        assert not await phone.is_visible("header form.signout button")
        await phone.click("#signout-here button")
        await phone.wait_for_url(f"{BASE}/signin?why=signed_out")
        assert await daemon.store.live_sessions("dana") == []
