"""Intake facts in the web inbox: the row's labels, the filter by project type and service
area, the thread's panel (which value was read, which a person set) and its form (CSRF,
escaped); over HTTP, then in Debian's Chromium."""

from __future__ import annotations

import html

from tests.browser import chromium, page_of, sign_in
from tests.test_web_inbox import act, signed_in
from tests.web_helpers import (BASE, PASSWORDS, client, homeowner_writes, set_passwords,
                               web_config, web_daemon)

AREA = {"service_area": {"zip_prefixes": ["112"]}}
KITCHEN = "We'd like a new kitchen, budget around $75k. We're in 11215. Tuesday works."
HOSTILE = 'deck at 12 <script>window.__xss=1</script> Main St please'


async def seed(daemon) -> None:
    await homeowner_writes(daemon, KITCHEN, sender="+12125550123")
    await homeowner_writes(daemon, "Bathroom, under 20k, zip 90210", sender="+12125550124")
    await homeowner_writes(daemon, HOSTILE, sender="+12125550125")


async def test_rows_carry_their_labels_and_the_inbox_filters_on_them(tmp_path):
    path = web_config(tmp_path, **AREA)
    await set_passwords(path)
    async with web_daemon(path) as daemon, client() as browser:
        await seed(daemon)
        await signed_in(browser, "dana")
        status, page, _ = await browser.get("/?view=all")
        assert status == 200
        assert "Kitchen · ~$75k · 11215 (in area) · " in html.unescape(page)
        assert "Bath · under $20k · 90210 (out of area)" in html.unescape(page)
        assert "<script>window.__xss" not in page
        _, kitchen, _ = await browser.get("/?view=all&project=kitchen")
        assert kitchen.count("data-id=") == 1 and "(212) 555-0123" in kitchen
        _, out, _ = await browser.get("/?view=all&area=out")
        assert out.count("data-id=") == 1 and "(212) 555-0124" in out
        _, both, _ = await browser.get("/?view=all&project=kitchen&area=out")
        assert both.count("data-id=") == 0
        assert (await browser.get("/?project=<b>"))[0] == 400
        assert (await browser.get("/?area=maybe"))[0] == 400


async def test_the_panel_says_whose_each_value_is_and_the_form_needs_its_csrf(tmp_path):
    path = web_config(tmp_path, **AREA)
    await set_passwords(path)
    async with web_daemon(path) as daemon, client() as browser:
        await seed(daemon)
        await signed_in(browser, "sam")
        conversation = (await daemon.store.conversation_for("+12125550123"))["id"]
        status, page, _ = await browser.get(f"/c/{conversation}")
        assert "read from their text: around $75k" in html.unescape(page)
        refused, _, _ = await browser.post(f"/c/{conversation}/intake",
                                           {"field": "budget", "value": "90k"})
        assert refused == 403
        assert (await daemon.store.intake(conversation)).value("budget") == "~75000"
        status, where = await act(browser, conversation, "intake", field="budget", value="90k")
        assert (status, where) == (303, f"/c/{conversation}?said=intake")
        _, page, _ = await browser.get(where)
        text = html.unescape(page)
        assert "<b>$90k</b> <span class=\"whose\">set by a person</span>" in text
        assert "Budget: $90k (set by Sam, from “90k”)" in text
        assert "Budget: ~$75k (read by textback, from “We'd like a new kitchen" in text
        status, body = await act(browser, conversation, "intake", field="budget", value="lots")
        assert status == 400 and "not an amount" in body
        status, _ = await act(browser, conversation, "intake", field="color", value="red")
        assert status == 400
        hostile = (await daemon.store.conversation_for("+12125550125"))["id"]
        _, page, _ = await browser.get(f"/c/{hostile}")
        assert "<script>window.__xss" not in page and "&lt;script&gt;" in page


async def test_in_a_browser_the_labels_filter_and_panel_work_and_run_no_script(tmp_path):
    path = web_config(tmp_path, **AREA)
    await set_passwords(path)
    async with web_daemon(path) as daemon, chromium() as browser, page_of(browser) as page:
        await seed(daemon)
        await sign_in(page, BASE, "dana", PASSWORDS["dana"])
        await page.goto(f"{BASE}/?view=all")
        row = page.locator(".row", has_text="(212) 555-0123")
        assert (await row.locator(".intake-labels").inner_text()).startswith(
            "Kitchen · ~$75k · 11215 (in area) · ")
        await page.select_option("#filter-project", "bath")
        await page.click("form.filter button[type=submit]")
        await page.wait_for_url("**/?view=all&project=bath&area=")
        assert await page.locator(".row").count() == 1
        assert "Bath · under $20k" in await page.inner_text("#rows")
        await page.goto(f"{BASE}/?view=all")
        await row.locator("a").click()
        await page.wait_for_selector("#intake")
        assert "read from their text: around $75k" in await page.inner_text(
            "#intake dd[data-field=budget]")
        await page.select_option("#intake-field", "project")
        await page.fill("#intake-value", "kitchen, bath")
        await page.click("form[data-form=intake] button[type=submit]")
        await page.wait_for_selector("#said")
        assert "your value wins" in await page.inner_text("#said")
        assert await page.inner_text("#intake dd[data-field=project]") == \
            "Kitchen + Bath set by a person"
        # A new text changes the panel live, without a reload; the person's value stands.
        await homeowner_writes(daemon, "Actually we're at 12 Elm St, 11217. And just the bath.",
                               sender="+12125550123")
        await page.wait_for_selector("#intake dd[data-field=location] >> text=11217",
                                     timeout=10000)
        assert await page.inner_text("#intake dd[data-field=project]") == \
            "Kitchen + Bath set by a person"
        await page.goto(f"{BASE}/?view=all")
        assert (await page.locator(".row", has_text="(212) 555-0125").inner_text()).count(
            "<script>") == 1
        assert await page.evaluate("() => window.__xss === undefined")
