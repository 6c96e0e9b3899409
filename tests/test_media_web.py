"""Photos in the web inbox: thumbnails in a real browser at 390 px, and how each file is served.

A photo-only text reads "2 photos" in the inbox; its thread shows the
thumbnails (the JPEG rendition for a HEIC photo), each opening the full
picture, and a video that plays inline. Files go only to a signed-in user,
with Content-Disposition, nosniff and a sandboxing CSP; a file that is not
what it claimed is a download, never a page. Screenshots: test-artifacts/.
"""

from __future__ import annotations

import io

import aiohttp
from PIL import Image

from sms_gateway.base import InboundMedia, InboundText
from tests.browser import LAYOUT_PROBLEMS, PHONE, chromium, page_of, screenshot, sign_in
from tests.providers.media import SVG_WITH_SCRIPT, heic, jpeg, mp4
from tests.web_helpers import BASE, PASSWORDS, client, set_passwords, web_config, web_daemon

from lab.configs import BUSINESS_NUMBER, HOMEOWNER


async def texted_with_media(daemon, body: str, items: list[tuple[bytes, str]]) -> int:
    """A homeowner's text whose media came with it (kept at once, as from a SIP MESSAGE)."""
    await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, body, media=tuple(
        InboundMedia("", declared, len(data), data) for data, declared in items)), "log")
    row = await daemon.store._one("SELECT MAX(conversation_id) AS c FROM messages")
    return row["c"]


async def test_thumbnails_at_390px_open_full_size_and_video_plays_inline(tmp_path):
    path = web_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path) as daemon, chromium() as browser:
        conversation = await texted_with_media(daemon, "", [
            (jpeg(1600, 1200, "steelblue"), "image/jpeg"), (heic(1200, 900), "image/heic")])
        async with page_of(browser, PHONE) as page:
            await sign_in(page, BASE, "dana", PASSWORDS["dana"])
            await page.goto(f"{BASE}/?view=all")
            assert "2 photos" in await page.inner_text("#rows")
            await texted_with_media(daemon, "And a clip of the leak", [(mp4(), "video/mp4")])
            await page.goto(f"{BASE}/c/{conversation}")
            await page.wait_for_selector(".media-item.image img")
            # Every thumbnail decoded (the HEIC through its JPEG rendition) and fits the phone.
            await page.wait_for_function(
                "() => [...document.querySelectorAll('.media-item img')].every("
                "i => i.complete && i.naturalWidth > 0)", timeout=10000)
            sizes = await page.evaluate(
                "() => [...document.querySelectorAll('.media-item img')].map("
                "i => [i.naturalWidth, i.getBoundingClientRect().width])")
            assert [natural for natural, _ in sizes] == [1600, 1200]
            assert all(0 < shown <= 390 for _, shown in sizes)
            assert await page.evaluate(LAYOUT_PROBLEMS) == []
            assert "They sent 2 photos" in await page.inner_text(".timeline")
            assert await page.locator(".media-item.video video[controls]").count() == 1
            shot = await screenshot(page, "thread-media-phone")
            assert shot.stat().st_size > 5000
            href = await page.locator(".media-item.image a").nth(1).get_attribute("href")
            full = await page.context.request.get(BASE + href)
            assert full.headers["content-type"] == "image/jpeg"
            with Image.open(io.BytesIO(await full.body())) as picture:
                assert picture.size == (1200, 900)


async def test_files_go_only_to_signed_in_users_sandboxed_and_never_sniffed(tmp_path):
    path = web_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path) as daemon:
        conversation = await texted_with_media(daemon, "", [
            (jpeg(), "image/jpeg"), (SVG_WITH_SCRIPT, "image/svg+xml"),
            (b"<html><script>alert(1)</script></html>", "image/png")])
        other = await daemon.store._one("SELECT id FROM media ORDER BY id")
        async with aiohttp.ClientSession() as anonymous:
            async with anonymous.get(f"{BASE}/c/{conversation}/media/{other['id']}",
                                     allow_redirects=False) as resp:
                assert resp.status == 303 and "/signin" in resp.headers["Location"]
        async with client() as browser:
            await browser.sign_in("sam", PASSWORDS["sam"])
            answers = []
            for n in range(3):
                async with browser.session.get(f"{BASE}/c/{conversation}/media/{other['id'] + n}",
                                               allow_redirects=False) as resp:
                    answers.append((resp.status, resp.headers))
            async with browser.session.get(f"{BASE}/c/{conversation + 1}/media/{other['id']}",
                                           allow_redirects=False) as resp:
                wrong_thread = resp.status
    (photo, photo_headers), (svg, svg_headers), (fake, fake_headers) = answers
    assert (photo, svg, fake, wrong_thread) == (200, 200, 200, 404)
    assert photo_headers["Content-Type"] == "image/jpeg"
    assert photo_headers["Content-Disposition"] == f'inline; filename="photo-{other["id"]}.jpg"'
    for headers in (photo_headers, svg_headers, fake_headers):
        assert headers["Content-Security-Policy"] == "sandbox; default-src 'none'"
        assert headers["X-Content-Type-Options"] == "nosniff"
    for headers in (svg_headers, fake_headers):
        assert headers["Content-Type"] == "application/octet-stream"
        assert headers["Content-Disposition"].startswith("attachment; ")
