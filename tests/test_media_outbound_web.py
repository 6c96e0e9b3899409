"""An owner's photo from the web reply box, in Chromium, texted as MMS (issue #18, part 3).

The owner picks a drawing and an SVG in the reply box of a real browser and
sends it with words. The Twilio contract stand-in takes the MMS and fetches the
drawing through its signed link from textback's web listener; the SVG is
refused as inbound media would be, and the thread says so in a note. A body
over the upload cap is refused whole (413) and nothing is queued.
"""

from __future__ import annotations

import aiohttp

from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from lab.harness import eventually
from sms_gateway.base import InboundText
from tests.browser import PHONE, chromium, page_of, screenshot, sign_in
from tests.providers.common import serving
from tests.providers.media import SVG_WITH_SCRIPT, png
from tests.providers.twilio import FakeTwilio
from tests.web_helpers import BASE, PASSWORDS, client, form_value, set_passwords, web_config
from tests.web_helpers import web_daemon
from textback.web.inbox import UPLOAD_BYTES


def twilio_config(tmp_path, twilio: FakeTwilio, api: str):
    (tmp_path / "twilio.token").write_text(twilio.auth_token)
    return web_config(tmp_path, gateway={
        "type": "twilio",
        "twilio": {"account_sid": twilio.account_sid, "auth_token": {"file": "twilio.token"},
                   "api_base_url": api},
        "callbacks": {"listen_port": 15187, "public_base_url": "https://textback.example.com/hooks"}})


async def conversation_of(daemon) -> int:
    await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, "Can I see a sketch?",
                                          gateway_id="SM-in-1"), "twilio")
    row = await daemon.store._one("SELECT MAX(conversation_id) AS c FROM messages")
    return row["c"]


async def test_a_drawing_from_the_reply_box_reaches_the_homeowner_as_mms(tmp_path):
    twilio = FakeTwilio("AC" + "8" * 32, "twilio-token")
    drawing = png(300, 200)
    async with serving(twilio.app()) as api:
        path = twilio_config(tmp_path, twilio, api)
        await set_passwords(path)
        async with web_daemon(path) as daemon, chromium() as browser:
            conversation = await conversation_of(daemon)
            async with page_of(browser, PHONE) as page:
                await sign_in(page, BASE, "dana", PASSWORDS["dana"])
                await page.goto(f"{BASE}/c/{conversation}")
                await page.fill("#reply-body", "Here is the layout we discussed.")
                await page.set_input_files("#reply-photo", [
                    {"name": "layout.png", "mimeType": "image/png", "buffer": drawing},
                    {"name": "logo.svg", "mimeType": "image/svg+xml", "buffer": SVG_WITH_SCRIPT}])
                await page.click("#reply button[type=submit]")
                await page.wait_for_selector("#said")
                said = await page.inner_text("#said")
                await eventually(lambda: _now(bool(twilio.fetched)), 15, "the MMS fetch")
                await page.reload()
                await page.wait_for_selector(".timeline .media-item.image img")
                timeline = await page.inner_text(".timeline")
                await screenshot(page, "thread-owner-photo-phone")

    assert said == "Queued, without some of its files: the note in the thread says why."
    [accepted] = twilio.accepted
    assert accepted["Body"] == "Here is the layout we discussed." and len(accepted["MediaUrl"]) == 1
    [(url, status, content_type, data)] = twilio.fetched
    assert url.startswith(f"{BASE}/media/")
    assert (status, content_type, data) == (200, "image/png", drawing)  # the drawing, untouched
    assert "Texted without these files:" in timeline
    assert "logo.svg: not sent: image/svg+xml is never shown" in timeline
    assert "<script" not in timeline


async def _now(value):
    return value


async def test_an_upload_over_the_cap_is_refused_whole_and_nothing_is_queued(tmp_path):
    twilio = FakeTwilio("AC" + "9" * 32, "twilio-token")
    async with serving(twilio.app()) as api:
        path = twilio_config(tmp_path, twilio, api)
        await set_passwords(path)
        async with web_daemon(path) as daemon, client() as browser:
            conversation = await conversation_of(daemon)
            await browser.sign_in("dana", PASSWORDS["dana"])
            _, page, _ = await browser.get(f"/c/{conversation}")
            form = aiohttp.FormData()
            form.add_field("csrf", form_value(page, "csrf"))
            form.add_field("body", "Too much")
            form.add_field("photo", b"\xff\xd8\xff" + b"\0" * UPLOAD_BYTES, filename="big.jpg",
                           content_type="image/jpeg")
            async with browser.session.post(f"{BASE}/c/{conversation}/reply", data=form,
                                            allow_redirects=False) as resp:
                status = resp.status
            queued = await daemon.store._one(
                "SELECT COUNT(*) AS n FROM messages WHERE direction = 'out'")
            kept = await daemon.store._one("SELECT COUNT(*) AS n FROM media")

    assert status == 413
    assert queued["n"] == 0 and kept["n"] == 0 and twilio.accepted == []
