"""The inbox as an installable app, and its Web Push: the manifest, icons, service worker and
offline shell; a device's subscription (CSRF-checked POSTs from the signed-in inbox); the
owner's devices and alert channels on the settings page.

Served on the `web:` listener when push is on (`Config.pushes`). The pages and POSTs that need
a session go through the inbox's own session and CSRF wrapper; the manifest, icons, worker
script and offline page hold nothing of anyone's and are public, as browsers fetch them
without credentials.
"""

from __future__ import annotations

import base64
import binascii
import html
import io
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from aiohttp import web
from PIL import Image, ImageDraw

from textback import pushkeys
from textback.config import ALERT_CHANNELS
from textback.core import views
from textback.core.alerts import one_line
from textback.core.push import endpoint_problem
from textback.core.relay import parse_window
from textback.web.inbox import INBOX, MAX_USER_AGENT_CHARS, bad_request
from textback.web.request_keys import FORM, USER

if TYPE_CHECKING:
    from textback.web.context import HttpContext
    from textback.web.inbox import Inbox

timeline = logging.getLogger("textback.timeline")

STATIC = Path(__file__).parent / "static"
ICON_SIZES = (192, 512)
THEME = "#1d232a"
ACCENT = "#0b5cad"
MAX_DEVICES = 20  # per owner: a phone, a tablet, a few browsers


def push_routes(context: "HttpContext") -> Callable[[web.Application], None]:
    """The RouteProvider of the app shell and push subscriptions (listed after the inbox's)."""
    def provide(app: web.Application) -> None:
        PushRoom(context, app[INBOX], app)
    return provide


def icon_png(size: int, maskable: bool = False) -> bytes:
    """The app's icon, drawn here rather than shipped: a speech bubble on the header's dark
    blue-grey. A maskable icon keeps its drawing inside the middle 80% (the safe zone)."""
    image = Image.new("RGB", (size, size), THEME)
    draw = ImageDraw.Draw(image)
    inset = size * (0.22 if maskable else 0.16)
    box = (inset, inset, size - inset, size - inset * 1.35)
    draw.rounded_rectangle(box, radius=size * 0.12, fill=ACCENT)
    tail = [(size * 0.34, box[3] - 1), (size * 0.30, size - inset * 0.95), (size * 0.50, box[3] - 1)]
    draw.polygon(tail, fill=ACCENT)
    for i in range(3):  # the three dots of a text being written
        cx, cy, r = size * (0.37 + 0.13 * i), (box[1] + box[3]) / 2, size * 0.045
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill="#ffffff")
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def manifest(business: str) -> dict:
    """The web app manifest: installable (name, icons, display standalone), scoped to the site."""
    return {
        "name": f"{business} inbox", "short_name": "Inbox", "id": "/", "start_url": "/",
        "scope": "/", "display": "standalone", "background_color": "#f3f4f6",
        "theme_color": THEME, "description": "Missed calls and homeowners' texts, answered.",
        "icons": [{"src": f"/icons/icon-{s}.png", "sizes": f"{s}x{s}", "type": "image/png",
                   "purpose": "any"} for s in ICON_SIZES]
        + [{"src": "/icons/maskable-512.png", "sizes": "512x512", "type": "image/png",
            "purpose": "maskable"}],
    }


def valid_key(value: str, length: int) -> bool:
    """A subscription key as the browser gives it: base64url of exactly `length` bytes."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return False
    return len(raw) == length and len(value) < 200


class PushRoom:
    def __init__(self, context: "HttpContext", inbox: "Inbox", app: web.Application):
        self.context = context
        self.config = context.config
        self.store = context.store
        self.inbox = inbox
        self.key = pushkeys.application_server_key(
            pushkeys.load_or_create(self.config.push_key_file()))
        self.icons = {f"icon-{s}.png": icon_png(s) for s in ICON_SIZES}
        self.icons["maskable-512.png"] = icon_png(512, maskable=True)
        self.manifest = json.dumps(manifest(self.config.business.name))
        r = app.router
        r.add_get("/manifest.webmanifest", self.manifest_file)
        r.add_get("/sw.js", self.worker_script)
        r.add_get("/offline", self.offline_page)
        r.add_get(r"/icons/{name:(icon-\d+|maskable-512)\.png}", self.icon)
        r.add_get("/push/key", inbox.page(self.public_key, api=True))
        r.add_post("/push/subscribe", inbox.page(self.subscribe, api=True))
        r.add_post("/push/unsubscribe", inbox.page(self.unsubscribe, api=True))
        r.add_post(r"/settings/devices/{id:\d{1,12}}/remove", inbox.page(self.remove_device))
        r.add_post("/settings/alerts", inbox.page(self.set_channels))
        inbox.settings_parts.append(self.settings_part)

    # -- the app shell: public, no one's data ------------------------------------------------

    async def manifest_file(self, request: web.Request) -> web.Response:
        return web.Response(text=self.manifest, content_type="application/manifest+json",
                            headers={"Cache-Control": "no-cache"})

    async def worker_script(self, request: web.Request) -> web.Response:
        """The service worker, from the site's root so that its scope is the whole inbox. Never
        cached by HTTP: a new version reaches every phone at its next visit."""
        return web.Response(body=(STATIC / "sw.js").read_bytes(),
                            content_type="application/javascript",
                            headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"})

    async def offline_page(self, request: web.Request) -> web.StreamResponse:
        """What the installed app shows when the phone has no connection (the worker caches it)."""
        return web.Response(text=OFFLINE_PAGE.replace("{business}", html.escape(self.config.business.name)),
                            content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def icon(self, request: web.Request) -> web.Response:
        return web.Response(body=self.icons[request.match_info["name"]], content_type="image/png",
                            headers={"Cache-Control": "public, max-age=86400"})

    # -- a device's subscription -------------------------------------------------------------

    async def public_key(self, request: web.Request) -> web.Response:
        """The VAPID public key the browser subscribes with, and whether this browser's
        subscription (its endpoint, as a query) is known for the signed-in owner."""
        endpoint = request.query.get("endpoint", "")
        mine = endpoint and any(d["endpoint"] == endpoint
                                for d in await self.store.push_devices(request[USER].id))
        return web.json_response({"key": self.key, "subscribed": bool(mine)})

    async def subscribe(self, request: web.Request) -> web.Response:
        form = request[FORM]
        endpoint = str(form.get("endpoint", ""))
        p256dh, auth = str(form.get("p256dh", "")), str(form.get("auth", ""))
        problem = endpoint_problem(endpoint, self.config.push.insecure_loopback_for_tests)
        if problem:
            raise bad_request(problem)
        if not valid_key(p256dh, 65) or not valid_key(auth, 16):
            raise bad_request("the subscription's keys are not a P-256 key and a 16-byte secret")
        user = request[USER]
        devices = await self.store.push_devices(user.id)
        if len(devices) >= MAX_DEVICES and not any(d["endpoint"] == endpoint for d in devices):
            raise bad_request(f"at most {MAX_DEVICES} devices; remove one on the settings page")
        device = one_line(request.headers.get("User-Agent", "") or "(unknown browser)",
                          MAX_USER_AGENT_CHARS)
        await self.store.save_push_subscription(user.id, endpoint, p256dh, auth, device)
        timeline.info("web: %s turned on notifications on a device", user.id)
        return web.json_response({"subscribed": True})

    async def unsubscribe(self, request: web.Request) -> web.Response:
        endpoint = str(request[FORM].get("endpoint", ""))
        removed = await self.store.remove_push_device(request[USER].id, endpoint=endpoint)
        return web.json_response({"removed": removed})

    # -- the settings page: devices and alert channels -------------------------------------------

    async def settings_part(self, request: web.Request) -> dict:
        user = request[USER]
        chosen = await self.store.alert_channels(user.id)
        devices = [{"id": d["id"], "device": d["device"],
                    "added": views.when(d["created_at"], self.config.business.timezone),
                    "last_sent": views.when(d["last_sent_at"], self.config.business.timezone),
                    "last_error": d["last_error"]}
                   for d in await self.store.push_devices(user.id)]
        offered = [c for c in ALERT_CHANNELS if c != "sms" or user.alerts.sms is not None]
        in_effect = user.alerts.chosen(chosen)
        quiet = user.alerts.quiet_window(await self.store.alert_quiet_hours(user.id))
        return {"push": {"devices": devices, "channels": offered, "chosen": sorted(in_effect),
                         "from_config": chosen is None, "quiet_hours": str(quiet) if quiet else "",
                         "no_device": "push" in in_effect and not devices}}

    async def remove_device(self, request: web.Request) -> web.StreamResponse:
        user = request[USER]
        if not await self.store.remove_push_device(user.id, device_id=int(request.match_info["id"])):
            raise web.HTTPNotFound(text="No such device.")
        timeline.info("web: %s removed a device from notifications", user.id)
        raise web.HTTPSeeOther("/settings?said=device_removed")

    async def set_channels(self, request: web.Request) -> web.StreamResponse:
        """Any mix of email, push and sms, at least one that can reach the owner: sms counts
        only with a mobile number in the config. Push with no device yet is allowed (the page
        warns of it): the owner may be about to turn notifications on."""
        user = request[USER]
        chosen = [c for c in ALERT_CHANNELS if request[FORM].get(c) == "on"
                  and (c != "sms" or user.alerts.sms is not None)]
        if not chosen:
            raise web.HTTPSeeOther("/settings?said=channels_none#alerts")
        quiet = str(request[FORM].get("quiet_hours", "")).strip()
        if quiet:
            try:
                quiet = str(parse_window(quiet))
            except ValueError:
                raise web.HTTPSeeOther("/settings?said=quiet_hours_bad#alerts") from None
        await self.store.set_alert_channels(user.id, chosen, quiet)
        timeline.info("web: %s's alert channels are now: %s", user.id, ", ".join(chosen))
        raise web.HTTPSeeOther("/settings?said=channels_saved")


# The offline shell: no session, no data, nothing inline (the CSP forbids it); the stylesheet
# is cached by the worker with it.
OFFLINE_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Offline · {business}</title>
<link rel="stylesheet" href="/static/app.css">
<link rel="manifest" href="/manifest.webmanifest">
</head>
<body>
<main>
<section class="card">
<h1>No connection</h1>
<p>The {business} inbox needs a connection to show your conversations. It opens again by
itself once this phone is back online; a text that arrived meanwhile waits for you there.</p>
<p><a class="button" href="/">Try again</a></p>
</section>
</main>
</body>
</html>
"""
