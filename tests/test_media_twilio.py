"""Photos through Twilio, end to end: a loopback Twilio API and media host, the real daemon.

A homeowner texts two photos (a JPEG and an iPhone HEIC) and no words. The
signed webhook is answered only once the text and both media rows are
committed; the media worker then fetches each from Twilio's API host with the
account's Basic auth, follows Twilio's redirect to its media host (no
credentials there), checks the bytes, keeps them under their SHA-256 and
makes a JPEG of the HEIC photo. The owner's alert says "sent 2 photos", never
a blank line; with delete_at_provider, Twilio's copies are deleted.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid

from click.testing import CliRunner
from PIL import Image

from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from textback.cli import main
from tests.media_helpers import latest_inbound_id, running_daemon, serving_on, settled
from tests.providers.media import Item, MediaHost, TwilioMediaApi, heic, jpeg
from tests.providers.twilio import FakeTwilio

SID = "AC" + "5" * 32
TOKEN = "twilio-token-for-the-media-test"
PUBLIC = "https://textback.example.com/hooks"
WEBHOOK_PORT = 15183
API_HOST, MEDIA_HOST = "127.0.0.1", "127.0.0.3"


def media_params(twilio: FakeTwilio, body: str, urls: list[tuple[str, str]]) -> dict[str, str]:
    params = twilio.inbound_params(HOMEOWNER, BUSINESS_NUMBER, body)
    message_sid = "MM" + uuid.uuid4().hex
    params.update({"MessageSid": message_sid, "SmsSid": message_sid,
                   "SmsMessageSid": message_sid, "NumMedia": str(len(urls))})
    for n, (url, content_type) in enumerate(urls):
        params[f"MediaUrl{n}"] = url
        params[f"MediaContentType{n}"] = content_type
    return params


async def test_two_photos_and_no_words_reach_the_store_the_disk_and_the_alert(tmp_path,
                                                                               smtp_sink):
    photo, iphone = jpeg(), heic()
    host = MediaHost({"/v1/photo": Item(photo, "image/jpeg"),
                      "/v1/iphone": Item(iphone, "image/heic")})
    twilio = FakeTwilio(SID, TOKEN)
    (tmp_path / "twilio.token").write_text(TOKEN)
    async with serving_on(host.app(), MEDIA_HOST) as media_base:
        api = TwilioMediaApi(SID, TOKEN, media_base, {"ME1": "/v1/photo", "ME2": "/v1/iphone"})
        async with serving_on(api.app(), API_HOST) as api_base:
            async with running_daemon(tmp_path, **{
                "gateway": {"type": "twilio",
                            "twilio": {"account_sid": SID, "auth_token": {"file": "twilio.token"},
                                       "api_base_url": api_base,
                                       "media_hosts": [API_HOST, MEDIA_HOST]},
                            "callbacks": {"listen_port": WEBHOOK_PORT, "public_base_url": PUBLIC}},
                "media": {"insecure_loopback_for_tests": True, "delete_at_provider": True},
            }) as daemon:
                message_sid = "MM" + uuid.uuid4().hex
                params = media_params(twilio, "", [
                    (api.url(api_base, message_sid, "ME1"), "image/jpeg"),
                    (api.url(api_base, message_sid, "ME2"), "image/heic")])
                local = f"http://127.0.0.1:{WEBHOOK_PORT}"
                assert await twilio.call(f"{local}/twilio/inbound", f"{PUBLIC}/twilio/inbound",
                                         params) == 200
                # Committed before the 200: the text and both rows, as Twilio declared them.
                message_id = await latest_inbound_id(daemon)
                rows = (await daemon.store.media_of([message_id]))[message_id]
                assert [(r["declared_type"], r["url"]) for r in rows] == [
                    ("image/jpeg", params["MediaUrl0"]), ("image/heic", params["MediaUrl1"])]

                first, second = await settled(daemon, message_id)
                [alert] = await asyncio.to_thread(smtp_sink.wait_for, 1, 15)
                await asyncio.sleep(0.3)
                deleted = list(api.deleted)
                inbox = await daemon.store.inbox_page("all", 0)

    assert (first["state"], first["shown"], first["content_type"]) == ("kept", 1, "image/jpeg")
    assert first["sha256"] == hashlib.sha256(photo).hexdigest() and first["size"] == len(photo)
    stored = daemon.media_files.path(first["sha256"])
    assert stored.read_bytes() == photo
    assert stored.relative_to(tmp_path / "media").parts[:2] == (first["sha256"][:2],
                                                                first["sha256"][2:4])
    assert (second["state"], second["shown"], second["content_type"]) == ("kept", 1, "image/heic")
    assert daemon.media_files.read(second["sha256"]) == iphone  # the original is kept
    with Image.open(io.BytesIO(daemon.media_files.read(second["rendition_sha256"]))) as made:
        assert made.format == "JPEG" and made.size == (400, 300)

    # Twilio's API host got the account's credentials; its media host got none.
    assert [(m, ok) for m, _, ok in api.requests if m == "GET"] == [("GET", True)] * 2
    assert [(m, auth) for m, _, auth in host.requests] == [("GET", "")] * 2
    assert sorted(deleted) == ["ME1", "ME2"]  # delete_at_provider: Twilio's copies are gone

    text = alert.message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "\n    Sent 2 photos\n" in text
    assert "Sent 2 photos" in alert.message["Subject"]
    assert "\n    \n" not in text  # never a blank quoted line
    html = alert.message.get_body(("html",)).get_content()
    assert "Sent 2 photos</blockquote>" in html
    # The alert waited for the photos and carries both, the HEIC one as a JPEG.
    assert "2 photo(s) attached." in text
    attached = list(alert.message.iter_attachments())
    assert [(p.get_content_type(), p.get_filename()) for p in attached] == [
        ("image/jpeg", "photo-1.jpg"), ("image/jpeg", "photo-2.jpg")]
    for part, size in zip(attached, [(640, 480), (400, 300)]):
        with Image.open(io.BytesIO(part.get_content())) as picture:
            assert (picture.format, picture.size) == ("JPEG", size)
    assert inbox[0]["last_body"] == "2 photos"


async def test_words_and_a_photo_over_the_attachment_cap_and_a_text_of_nothing(tmp_path,
                                                                             smtp_sink):
    host = MediaHost({"/v1/kitchen": Item(jpeg(), "image/jpeg")})
    twilio = FakeTwilio(SID, TOKEN)
    (tmp_path / "twilio.token").write_text(TOKEN)
    async with serving_on(host.app(), MEDIA_HOST) as media_base:
        api = TwilioMediaApi(SID, TOKEN, media_base, {"ME1": "/v1/kitchen"})
        async with serving_on(api.app(), API_HOST) as api_base:
            async with running_daemon(tmp_path, **{
                "gateway": {"type": "twilio",
                            "twilio": {"account_sid": SID, "auth_token": {"file": "twilio.token"},
                                       "api_base_url": api_base,
                                       "media_hosts": [API_HOST, MEDIA_HOST]},
                            "callbacks": {"listen_port": WEBHOOK_PORT, "public_base_url": PUBLIC}},
                "media": {"insecure_loopback_for_tests": True, "alert_attachment_bytes": 1000},
            }) as daemon:
                local = f"http://127.0.0.1:{WEBHOOK_PORT}"
                with_words = media_params(twilio, "This is the kitchen", [
                    (api.url(api_base, "MM" + "1" * 32, "ME1"), "image/jpeg")])
                assert await twilio.call(f"{local}/twilio/inbound", f"{PUBLIC}/twilio/inbound",
                                         with_words) == 200
                [row] = await settled(daemon, await latest_inbound_id(daemon))
                [words_alert] = await asyncio.to_thread(smtp_sink.wait_for, 1, 15)
                nothing = twilio.inbound_params(HOMEOWNER, BUSINESS_NUMBER, "")
                assert await twilio.call(f"{local}/twilio/inbound", f"{PUBLIC}/twilio/inbound",
                                         nothing) == 200
                _, empty_alert = await asyncio.to_thread(smtp_sink.wait_for, 2, 15)
                inbox = await daemon.store.inbox_page("all", 0)
                deleted = list(api.deleted)

    assert row["state"] == "kept" and deleted == []  # delete_at_provider is off by default
    shown = await asyncio.to_thread(CliRunner().invoke, main, [
        "thread", "-c", str(tmp_path / "config.yaml"), HOMEOWNER])
    assert shown.exit_code == 0, shown.output
    assert "[received] This is the kitchen" in shown.stdout
    assert f"+ image/jpeg, {row['size'] / 1024:.0f} KB: shown" in shown.stdout
    assert "[received] (empty text)" in shown.stdout
    text = words_alert.message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "    This is the kitchen\n    (sent a photo)\n" in text
    # Over the attachment cap: nothing attached, and the email says where the photo is.
    assert list(words_alert.message.iter_attachments()) == []
    assert "A photo is not attached (too large for one email, or not a photo): see the thread. " \
           "(`textback thread` lists them)" in text
    empty = empty_alert.message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert "\n    (empty text)\n" in empty and "(empty text)" in empty_alert.message["Subject"]
    assert inbox[0]["last_body"] == "(empty text)"
