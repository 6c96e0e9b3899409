"""The inbox as an app in a real browser (Debian's Chromium through Playwright): Chromium reads
the manifest without errors and finds the app installable, the service worker registers and
serves the offline page, a push delivered through the DevTools protocol
(`ServiceWorker.deliverPushMessage`) shows its notification, and the notification's tap opens
the thread (signed in, or through its single-use link); an iPhone's Safari is told to add the
app to the Home Screen."""

from __future__ import annotations

import asyncio
import io
import json
from contextlib import asynccontextmanager

from PIL import Image

from playwright.async_api import async_playwright

from tests.browser import CHROMIUM, FLAGS, PHONE, chromium, screenshot, sign_in
from tests.web_helpers import BASE, OWNERS, PASSWORDS, homeowner_writes, set_passwords, web_config, web_daemon

IPHONE_SAFARI = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")


def push_config(tmp_path):
    return web_config(tmp_path, owners=OWNERS, push={"insecure_loopback_for_tests": True})


@asynccontextmanager
async def app_page(browser, **context_options):
    """A fresh context allowed to show notifications, and a page; script errors fail the test."""
    context = await browser.new_context(viewport=PHONE, **context_options)
    await context.grant_permissions(["notifications"], origin=BASE)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        yield context, page
    finally:
        await context.close()
    assert not errors, f"script errors in the page: {errors}"


@asynccontextmanager
async def persistent_page(profile):
    """Debian's Chromium with a profile on disk (not incognito), and a page."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS, viewport=PHONE)
        try:
            yield context.pages[0] if context.pages else await context.new_page()
        finally:
            await context.close()


async def registration_id(cdp) -> str:
    """The service worker registration's id, as the DevTools protocol reports it."""
    found: asyncio.Future = asyncio.get_running_loop().create_future()

    def seen(event):
        for registration in event["registrations"]:
            if registration["scopeURL"] == f"{BASE}/" and not registration["isDeleted"] \
                    and not found.done():
                found.set_result(registration["registrationId"])
    cdp.on("ServiceWorker.workerRegistrationUpdated", seen)
    await cdp.send("ServiceWorker.enable")
    return await asyncio.wait_for(found, 10)


async def worker_ready(page) -> str:
    return await page.evaluate("""async () => {
      const registration = await navigator.serviceWorker.ready;
      return registration.scope;
    }""")


async def test_the_manifest_is_valid_the_app_installable_and_offline_shows_the_shell(tmp_path):
    path = push_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path), chromium() as browser, app_page(browser) as (context, page):
        await sign_in(page, BASE, "dana", PASSWORDS["dana"])
        await page.wait_for_url(f"{BASE}/")
        assert await worker_ready(page) == f"{BASE}/"
        cdp = await context.new_cdp_session(page)
        manifest = await cdp.send("Page.getAppManifest")
        assert manifest["url"] == f"{BASE}/manifest.webmanifest"
        assert manifest["errors"] == [], manifest["errors"]
        data = json.loads(manifest["data"])
        assert (data["display"], data["start_url"], data["scope"]) == ("standalone", "/", "/")
        # Chromium's own installability check, in a profile that is not incognito (Playwright's
        # contexts are, and there Chromium installs nothing).
        async with persistent_page(tmp_path / "profile") as installed:
            await sign_in(installed, BASE, "dana", PASSWORDS["dana"])
            await installed.wait_for_url(f"{BASE}/")
            await worker_ready(installed)
            session = await installed.context.new_cdp_session(installed)
            installable = await session.send("Page.getInstallabilityErrors")
            assert installable["installabilityErrors"] == [], installable
        for icon in data["icons"]:
            response = await page.request.get(BASE + icon["src"])
            size = Image.open(io.BytesIO(await response.body())).size
            assert f"{size[0]}x{size[1]}" == icon["sizes"] and response.headers["content-type"] == "image/png"
        worker = await page.request.get(f"{BASE}/sw.js")
        assert worker.headers["service-worker-allowed"] == "/"
        assert "script-src 'self'" in worker.headers["content-security-policy"]
        # No connection: the worker answers a page with the offline shell it cached.
        await context.set_offline(True)
        await page.goto(f"{BASE}/?view=all")
        assert "No connection" in await page.inner_text("h1")
        await screenshot(page, "push-offline")
        await context.set_offline(False)


async def test_a_push_shows_a_notification_whose_tap_opens_the_thread(tmp_path):
    path = push_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path) as daemon, chromium() as browser, \
            app_page(browser) as (context, page):
        await homeowner_writes(daemon, "Kitchen quote please")
        [row] = await daemon.store.inbox()
        await sign_in(page, BASE, "dana", PASSWORDS["dana"])
        await page.wait_for_url(f"{BASE}/")
        await worker_ready(page)
        cdp = await context.new_cdp_session(page)
        registration = await registration_id(cdp)
        payload = {"v": 1, "kind": "reply", "title": "(212) 555-0123 replied",
                   "body": "<b>Kitchen</b> quote please", "thread": f"/c/{row['id']}",
                   "link": f"{BASE}/link/not-a-real-token", "tag": f"c{row['id']}"}
        await cdp.send("ServiceWorker.deliverPushMessage", {
            "origin": BASE, "registrationId": registration, "data": json.dumps(payload)})
        shown = await page.wait_for_function("""async () => {
          const registration = await navigator.serviceWorker.ready;
          const shown = await registration.getNotifications();
          return shown.length ? shown.map((n) => ({title: n.title, body: n.body, tag: n.tag,
                                                   data: n.data})) : null;
        }""", polling=200, timeout=10000)
        [note] = await shown.json_value()
        assert (note["title"], note["body"], note["tag"]) == (
            "(212) 555-0123 replied", "<b>Kitchen</b> quote please", f"c{row['id']}")
        # The tap: this browser is signed in, so it opens the thread itself.
        [worker] = context.service_workers
        target = await worker.evaluate("async (data) => self.targetOf(data)", note["data"])
        assert target == f"{BASE}/c/{row['id']}"
        await page.goto(target)
        assert "Kitchen quote please" in await page.inner_text(".timeline")
        # A path elsewhere, or a link to another site, is never opened.
        assert await worker.evaluate("async () => self.targetOf({thread: 'https://evil.example/x',"
                                     " link: 'https://evil.example/link/x'})") == f"{BASE}/"


async def test_a_tap_on_a_phone_with_no_session_signs_in_through_the_pushed_link(tmp_path):
    from tests.push_service import PushService
    from tests.web_helpers import client
    path = push_config(tmp_path)
    await set_passwords(path)
    async with PushService() as service, web_daemon(path) as daemon, chromium() as browser, \
            client() as http, app_page(browser) as (context, page):
        assert (await http.sign_in("dana", PASSWORDS["dana"]))[0] == 303
        device = service.subscribe()
        csrf = await http.csrf("/settings")
        assert (await http.post("/push/subscribe", {"csrf": csrf, **device.form()}))[0] == 200
        await homeowner_writes(daemon, "Can you come Tuesday?")
        for _ in range(100):
            if service.received:
                break
            await asyncio.sleep(0.1)
        pushed = service.received[0].payload  # decrypted by the stand-in push service
        [row] = await daemon.store.inbox()
        await page.goto(f"{BASE}/offline")  # any page of the site, so that the worker registers
        await page.evaluate("navigator.serviceWorker.register('/sw.js')")
        await worker_ready(page)
        [worker] = context.service_workers
        target = await worker.evaluate("async (data) => self.targetOf(data)", pushed)
        assert target == pushed["link"]
        await page.goto(target)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{BASE}/c/{row['id']}")
        assert "Can you come Tuesday?" in await page.inner_text(".timeline")


async def test_iphone_safari_outside_the_home_screen_is_told_to_add_it(tmp_path):
    path = push_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path), chromium() as browser, \
            app_page(browser, user_agent=IPHONE_SAFARI) as (context, page):
        await sign_in(page, BASE, "dana", PASSWORDS["dana"])
        await page.wait_for_selector("#push-offer:not([hidden])", timeout=10000)
        text = await page.inner_text("#push-why")
        assert "Add to Home Screen" in text and "iOS 16.4" in text
        assert await page.is_hidden("#push-on")
        await screenshot(page, "push-ios-offer")


async def test_chromium_is_offered_notifications_on_this_device(tmp_path):
    path = push_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path), chromium() as browser, app_page(browser) as (context, page):
        await sign_in(page, BASE, "dana", PASSWORDS["dana"])
        await page.wait_for_selector("#push-on:not([hidden])", timeout=10000)
        assert "when a homeowner replies" in await page.inner_text("#push-why")
