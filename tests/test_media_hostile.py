"""Media through Telnyx, honest and hostile, with the real daemon and a loopback media host.

Telnyx's webhook lists media[] with url, content_type and size; textback
fetches each from Telnyx's media host only. The honest items (a JPEG, an
MP4) are kept and shown. The hostile ones never crash the daemon and are
never shown inline: a file whose bytes are not its declared type, one
larger than the cap, a redirect to a private address, an SVG with a
script, a PNG decompression bomb, a URL on another host (never requested),
and a host that trickles bytes (cut off by the time limit). The owner gets
one notice naming what could not be kept, and the daemon goes on working.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid

from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from tests.media_helpers import latest_inbound_id, running_daemon, serving_on, settled
from tests.providers.media import (SVG_WITH_SCRIPT, Item, MediaHost, jpeg, mp4, png_bomb)
from tests.providers.telnyx import FakeTelnyx

WEBHOOK_PORT = 15184
MEDIA_HOST, OTHER_HOST = "127.0.0.3", "127.0.0.4"
PRIVATE = "192.168.77.7"  # listed as a media host, so only the address check can refuse it
CAP = 1024 * 1024


def received_with_media(telnyx: FakeTelnyx, text: str, media: list[dict]) -> bytes:
    return telnyx.event("message.received", {
        "id": str(uuid.uuid4()), "record_type": "message", "direction": "inbound", "type": "MMS",
        "from": {"phone_number": HOMEOWNER, "carrier": "T-Mobile USA", "line_type": "Wireless"},
        "to": [{"phone_number": BUSINESS_NUMBER, "status": "webhook_delivered"}],
        "text": text, "media": media, "encoding": "GSM-7", "parts": 1, "errors": []})


async def test_honest_media_is_kept_and_hostile_media_is_never_shown(tmp_path, smtp_sink):
    photo, video, bomb = jpeg(), mp4(), png_bomb()
    host = MediaHost({
        "/m/photo.jpg": Item(photo, "image/jpeg"),
        "/m/clip.mp4": Item(video, "video/mp4"),
        "/m/not-a-photo.jpg": Item(b"<html><script>alert(1)</script></html>" * 4, "image/jpeg"),
        "/m/huge.jpg": Item(b"\xff\xd8\xff" + b"\0" * (CAP + 10), "image/jpeg"),
        "/m/drawing.svg": Item(SVG_WITH_SCRIPT, "image/svg+xml"),
        "/m/bomb.png": Item(bomb, "image/png"),
        "/m/slow.jpg": Item(photo[:400], "image/jpeg", trickle_seconds=0.05),  # 20 s of bytes
    })
    other = MediaHost({"/m/photo.jpg": Item(photo, "image/jpeg")})
    telnyx = FakeTelnyx("telnyx-key-for-the-media-test")
    (tmp_path / "telnyx.key").write_text(telnyx.api_key)
    async with serving_on(host.app(), MEDIA_HOST) as base, \
            serving_on(other.app(), OTHER_HOST) as other_base:
        host.items["/m/to-private"] = Item(b"", "", redirect_to=f"https://{PRIVATE}/m/photo.jpg")
        async with running_daemon(tmp_path, **{
            "gateway": {"type": "telnyx",
                        "telnyx": {"api_key": {"file": "telnyx.key"},
                                   "public_key": telnyx.public_key,
                                   "media_hosts": [MEDIA_HOST, PRIVATE]},
                        "callbacks": {"listen_port": WEBHOOK_PORT,
                                     "public_base_url": "https://textback.example.com/hooks"}},
            "media": {"insecure_loopback_for_tests": True, "max_item_bytes": CAP,
                      "max_message_bytes": 8 * CAP, "timeout_seconds": 3.0,
                      # 3.6 s: less than the first retry's delay, so the slow host gets one try
                      "deadline_hours": 0.001},
        }) as daemon:
            listed = [(f"{base}/m/photo.jpg", "image/jpeg", len(photo)),
                      (f"{base}/m/clip.mp4", "video/mp4", len(video)),
                      (f"{base}/m/not-a-photo.jpg", "image/jpeg", 152),
                      (f"{base}/m/huge.jpg", "image/jpeg", None),
                      (f"{base}/m/to-private", "image/jpeg", None),
                      (f"{base}/m/drawing.svg", "image/svg+xml", len(SVG_WITH_SCRIPT)),
                      (f"{base}/m/bomb.png", "image/png", len(bomb)),
                      (f"{other_base}/m/photo.jpg", "image/jpeg", len(photo)),
                      (f"{base}/m/slow.jpg", "image/jpeg", None)]
            body = received_with_media(telnyx, "Here is the room", [
                {"url": url, "content_type": kind, **({"size": size} if size else {})}
                for url, kind, size in listed])
            local = f"http://127.0.0.1:{WEBHOOK_PORT}/telnyx"
            began = time.monotonic()
            assert await telnyx.call(local, body) == 200
            message_id = await latest_inbound_id(daemon)
            rows = await settled(daemon, message_id, timeout=20)
            settled_after = time.monotonic() - began
            mails = await asyncio.to_thread(smtp_sink.wait_for, 2, 15)
            # The daemon still takes texts after all of that.
            later = telnyx.received(HOMEOWNER, BUSINESS_NUMBER, "Still there?", str(uuid.uuid4()))
            assert await telnyx.call(local, later) == 200
            await asyncio.to_thread(smtp_sink.wait_for, 3, 15)
            assert sum(daemon.workers.restarts.values()) == 0

    by_path = {r["url"].rsplit("/", 1)[1]: r for r in rows if r["url"].startswith(base)}
    kept_shown = {name for name, r in by_path.items() if r["state"] == "kept" and r["shown"]}
    assert kept_shown == {"photo.jpg", "clip.mp4"}
    assert by_path["clip.mp4"]["content_type"] == "video/mp4"
    assert by_path["clip.mp4"]["sha256"] == hashlib.sha256(video).hexdigest()

    def kept_as_attachment(name: str, why: str) -> None:
        row = by_path[name]
        assert (row["state"], row["shown"], row["content_type"]) == (
            "kept", 0, "application/octet-stream"), row
        assert why in row["note"], row["note"]

    kept_as_attachment("not-a-photo.jpg", "declared image/jpeg but the file is not")
    kept_as_attachment("drawing.svg", "image/svg+xml is never shown")
    kept_as_attachment("bomb.png", "decompression bomb")

    def failed(name: str, why: str) -> None:
        row = by_path[name]
        assert row["state"] == "failed" and row["sha256"] is None, row
        assert why in row["note"], row["note"]

    failed("huge.jpg", f"more than the cap of {CAP} bytes")
    failed("to-private", f"{PRIVATE} is a private, loopback or reserved address")
    failed("slow.jpg", "not fetched within")
    [elsewhere] = [r for r in rows if r["url"].startswith(other_base)]
    assert elsewhere["state"] == "failed"
    assert f"{OTHER_HOST} is not one of the telnyx media hosts" in elsewhere["note"]
    assert other.requests == []  # another host is never asked
    assert settled_after < 12  # the 20-second trickle was cut off by the 3-second limit

    alert, notice = sorted(mails[:2], key=lambda m: "could not be kept" in m.message["Subject"])
    assert alert.message["Subject"].startswith("Text from (212) 555-0123: Here is the room")
    notice_text = notice.message.get_content()
    assert "9 photo(s) or file(s)" in notice_text and "4 could not be kept" in notice_text
    for why in ("more than the cap", "private, loopback or reserved", "not one of the telnyx media hosts",
                "not fetched within"):
        assert why in notice_text


async def test_a_host_that_is_down_for_a_moment_is_asked_again_before_the_deadline(tmp_path,
                                                                                  smtp_sink):
    photo = jpeg()
    host = MediaHost({"/m/photo.jpg": Item(photo, "image/jpeg", unavailable_first=1)})
    telnyx = FakeTelnyx("telnyx-key-for-the-media-test")
    (tmp_path / "telnyx.key").write_text(telnyx.api_key)
    async with serving_on(host.app(), MEDIA_HOST) as base:
        async with running_daemon(tmp_path, **{
            "gateway": {"type": "telnyx",
                        "telnyx": {"api_key": {"file": "telnyx.key"},
                                   "public_key": telnyx.public_key, "media_hosts": [MEDIA_HOST]},
                        "callbacks": {"listen_port": WEBHOOK_PORT,
                                     "public_base_url": "https://textback.example.com/hooks"}},
            "media": {"insecure_loopback_for_tests": True},
        }) as daemon:
            body = received_with_media(telnyx, "", [
                {"url": f"{base}/m/photo.jpg", "content_type": "image/jpeg"}])
            assert await telnyx.call(f"http://127.0.0.1:{WEBHOOK_PORT}/telnyx", body) == 200
            [row] = await settled(daemon, await latest_inbound_id(daemon), timeout=20)
            [alert] = await asyncio.to_thread(smtp_sink.wait_for, 1, 15)
    assert (row["state"], row["attempts"], row["sha256"]) == (
        "kept", 2, hashlib.sha256(photo).hexdigest())
    assert [path for _, path, _ in host.requests] == ["/m/photo.jpg"] * 2
    assert [p.get_filename() for p in alert.message.iter_attachments()] == ["photo-1.jpg"]
