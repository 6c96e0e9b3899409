"""An owner's photo texted to the homeowner as MMS (issue #18, part 3), by email reply.

The reply goes through textback's own SMTP listener (aiosmtpd) from a real
SMTP client; the provider is the Twilio or Telnyx contract stand-in, which
takes MediaUrl / media_urls as their documented send APIs do and then fetches
each URL with a real HTTP GET from textback's web listener on loopback, as
the provider would through web.public_url. A link whose signature or expiry
is wrong is refused. Attachments are checked as inbound media is (SVG, HTML
dressed as a photo, over the provider's size limit): what is refused is named
to the owner, and the words still go. On a gateway without MMS the words go
and the owner is told the photo did not.
"""

from __future__ import annotations

import asyncio
import base64
import io
import smtplib
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlsplit

import aiohttp
import pytest
from PIL import Image

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, base_config, write_config
from lab.harness import SMTP_SINK_PORT, eventually, in_process
from sms_gateway.base import InboundText
from sms_gateway.log import LogGateway
from textback.config import load
from textback.core import media
from textback.core.replies import attachments_of
from textback.daemon import Daemon
from textback.gateways import build_gateway
from textback.mediafiles import MediaStore, prepare_outbound
from textback.store import NewMedia, Store
from textback.web import medialinks
from tests.providers.common import serving
from tests.providers.generic import Recorder
from tests.providers.media import heic, jpeg, mp4, png, png_bomb
from tests.providers.telnyx import FakeTelnyx
from tests.providers.twilio import FakeTwilio

REPLY_PORT = 15036
WEB_PORT = 18196
WEBHOOK_PORT = 15186
PUBLIC = f"http://127.0.0.1:{WEB_PORT}"  # what the stand-ins fetch from: textback's web listener
DOMAIN = "reply.acme.example"
SVG = (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script>'
       b'</svg>')
HTML_AS_JPEG = b"<html><body><script>alert(1)</script></body></html>"


def twilio_gateway(tmp_path: Path, twilio: FakeTwilio, api: str) -> dict:
    (tmp_path / "twilio.token").write_text(twilio.auth_token)
    return {"type": "twilio",
            "twilio": {"account_sid": twilio.account_sid, "auth_token": {"file": "twilio.token"},
                       "api_base_url": api},
            "callbacks": {"listen_port": WEBHOOK_PORT,
                          "public_base_url": "https://textback.example.com/hooks"}}


def telnyx_gateway(tmp_path: Path, telnyx: FakeTelnyx, api: str) -> dict:
    (tmp_path / "telnyx.key").write_text(telnyx.api_key)
    return {"type": "telnyx",
            "telnyx": {"api_key": {"file": "telnyx.key"}, "public_key": telnyx.public_key,
                       "api_base_url": api},
            "callbacks": {"listen_port": WEBHOOK_PORT,
                          "public_base_url": "https://textback.example.com/hooks"}}


def config_for(tmp_path: Path, gateway: dict | None, web: bool = True) -> Path:
    overrides: dict = {
        "ami.port": 15099, "smtp.port": SMTP_SINK_PORT,
        "owners": [{"id": "dana", "name": "Dana Reyes", "email": "dana@acme.example"}],
        "reply_mail": {"domain": DOMAIN, "listen_port": REPLY_PORT},
    }
    if gateway is not None:
        overrides["gateway"] = gateway
    if web:
        overrides["web"] = {"port": WEB_PORT, "public_url": PUBLIC}
    return write_config(tmp_path, base_config(tmp_path, **overrides))


def reply(to: str, words: str, *files: tuple[str, str, bytes]) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Dana Reyes <dana@acme.example>"
    message["To"] = to
    message["Subject"] = "Re: Text from (212) 555-0123"
    message.set_content(words)
    for name, content_type, data in files:
        maintype, subtype = content_type.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message


def send(message: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", REPLY_PORT, timeout=20) as client:
        client.send_message(message)


async def reply_address(daemon: Daemon, sink, gateway: str) -> str:
    await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, "Kitchen remodel?"), gateway)
    [alert] = await asyncio.to_thread(sink.wait_for, 1, 10)
    return alert.message["Reply-To"]


async def notices(sink, count: int) -> list[EmailMessage]:
    """The emails after the alert, parsed as the owner's mail client would."""
    received = await asyncio.to_thread(sink.wait_for, count + 1, 15)
    return [BytesParser(policy=policy.default).parsebytes(r.message.as_bytes())
            for r in received[1:]]


async def sent_reply(daemon: Daemon) -> dict:
    async def found():
        row = await daemon.store._one(
            "SELECT id, status, body FROM messages WHERE direction = 'out' AND status = 'sent'"
            " ORDER BY id DESC LIMIT 1")
        return dict(row) if row else None
    return await eventually(found, 15, "the owner's reply to be sent")


async def test_a_photo_in_an_email_reply_goes_as_mms_through_a_signed_link_and_hostile_files_do_not(
        tmp_path, smtp_sink):
    twilio = FakeTwilio("AC" + "5" * 32, "twilio-token")
    photo = jpeg(800, 600)
    too_big = mp4() + b"\0" * 5_100_000  # a real MP4 head, over Twilio's 5 MB with the photo
    async with serving(twilio.app()) as api:
        daemon = Daemon(load(config_for(tmp_path, twilio_gateway(tmp_path, twilio, api))))
        async with in_process(daemon), aiohttp.ClientSession() as http:
            to = await reply_address(daemon, smtp_sink, "twilio")
            await asyncio.to_thread(send, reply(
                to, "Here is the tile we talked about.",
                ("tile.jpg", "image/jpeg", photo), ("logo.svg", "image/svg+xml", SVG),
                ("invoice.jpg", "image/jpeg", HTML_AS_JPEG), ("walkthrough.mp4", "video/mp4", too_big)))
            message = await sent_reply(daemon)
            [told] = await notices(smtp_sink, 1)
            rows = (await daemon.store.media_of([message["id"]]))[message["id"]]
            [accepted] = twilio.accepted
            [link] = accepted["MediaUrl"]
            # the link as the provider got it, then changed: a forged signature, an expired
            # link, and a valid signature for a file that does not exist
            key = await daemon.store.web_key(medialinks.MEDIA_LINK_KEY)
            query = parse_qs(urlsplit(link).query)
            forged = link.replace(f"sig={query['sig'][0]}", "sig=" + "0" * 64)
            expired = medialinks.media_link(key, PUBLIC, rows[0]["id"], int(time.time()) - 1)
            missing = medialinks.media_link(key, PUBLIC, 999_999, int(time.time()) + 600)
            answers = []
            for url in (forged, expired, missing):
                async with http.get(url) as resp:
                    answers.append(resp.status)
            async with http.get(link) as resp:
                served_headers = resp.headers

    assert message["body"] == "Here is the tile we talked about."
    assert accepted["Body"] == "Here is the tile we talked about."
    assert link.startswith(f"{PUBLIC}/media/{rows[0]['id']}?expires=")
    expires = int(query["expires"][0])
    # a short-lived link: an hour past the reply's deadline (text.max_age_minutes, 60)
    assert time.time() + 3600 < expires <= time.time() + 2 * 3600
    [(fetched_url, status, content_type, data)] = twilio.fetched
    assert (fetched_url, status, content_type, data) == (link, 200, "image/jpeg", photo)
    assert served_headers["X-Content-Type-Options"] == "nosniff"
    assert served_headers["Content-Disposition"].startswith("inline; filename=")
    assert answers == [403, 403, 404]
    [row] = rows  # only the photo was kept with the reply, in its commit
    assert (row["state"], row["content_type"], row["size"], row["url"]) == (
        "kept", "image/jpeg", len(photo), "")
    assert told["Subject"] == "Sent to +12125550123 without some files"
    body = told.get_content()
    assert "logo.svg: not sent: image/svg+xml is never shown" in body
    assert "invoice.jpg: not sent: declared image/jpeg but the file is not a type" in body
    assert "walkthrough.mp4: 5.1 MB would make the MMS more than 5.0 MB" in body
    assert "<script>" not in body


async def test_a_photo_only_reply_by_telnyx_sends_a_jpeg_of_an_iphone_heic(tmp_path, smtp_sink):
    telnyx = FakeTelnyx("KEY-outbound")
    photo = heic(1600, 1200)
    async with serving(telnyx.app()) as api:
        daemon = Daemon(load(config_for(tmp_path, telnyx_gateway(tmp_path, telnyx, api))))
        async with in_process(daemon):
            to = await reply_address(daemon, smtp_sink, "telnyx")
            await asyncio.to_thread(send, reply(to, "", ("IMG_0042.HEIC", "image/heic", photo)))
            message = await sent_reply(daemon)
            [row] = (await daemon.store.media_of([message["id"]]))[message["id"]]
            kept = daemon.media_files.read(row["sha256"])
            [listed] = [r for r in await daemon.store.timeline(HOMEOWNER) if r["kind"] == "text_out"]
            await asyncio.sleep(0.3)

    [accepted] = telnyx.accepted
    assert "text" not in accepted and message["body"] == ""
    [link] = accepted["media_urls"]
    assert link.endswith("&v=jpeg")
    [(_, status, content_type, data)] = telnyx.fetched
    assert (status, content_type) == (200, "image/jpeg")
    assert media.sniff(data[:64]) == "image/jpeg" and len(data) <= 1_000_000
    assert kept == photo  # the original is kept; the provider gets the rendition
    assert [(m["declared_type"], m["state"], m["shown"]) for m in listed["media"]] == [
        ("image/heic", "kept", 1)]  # `textback thread` lists the owner's photo
    assert len(smtp_sink.received) == 1  # the alert only: nothing to tell the owner


async def test_on_a_gateway_without_mms_the_words_go_and_the_owner_is_told(tmp_path, smtp_sink):
    daemon = Daemon(load(config_for(tmp_path, None)))  # the log gateway: words only
    async with in_process(daemon):
        to = await reply_address(daemon, smtp_sink, "log")
        await asyncio.to_thread(send, reply(to, "Tuesday at 10?", ("tile.jpg", "image/jpeg", jpeg())))
        message = await sent_reply(daemon)
        [told] = await notices(smtp_sink, 1)
        rows = (await daemon.store.media_of([message["id"]]))[message["id"]]

    assert message["body"] == "Tuesday at 10?" and rows == []
    assert told["Subject"] == "Sent to +12125550123 without some files"
    assert told.get_content() == ("Your reply to +12125550123 was texted, but not these files:\n"
                                  "    tile.jpg: not sent: the log gateway texts words only\n")


async def test_without_a_web_listener_the_provider_has_nowhere_to_fetch_from(tmp_path, smtp_sink):
    twilio = FakeTwilio("AC" + "6" * 32, "twilio-token")
    async with serving(twilio.app()) as api:
        daemon = Daemon(load(config_for(tmp_path, twilio_gateway(tmp_path, twilio, api), web=False)))
        async with in_process(daemon):
            to = await reply_address(daemon, smtp_sink, "twilio")
            await asyncio.to_thread(send, reply(to, "See attached", ("a.jpg", "image/jpeg", jpeg())))
            await sent_reply(daemon)
            [told] = await notices(smtp_sink, 1)

    [accepted] = twilio.accepted
    assert "MediaUrl" not in accepted and twilio.fetched == []
    assert "a.jpg: not sent: no `web:` listener (web.public_url) serves photos" in told.get_content()


@pytest.mark.parametrize("gateway", ["twilio", "telnyx"])
async def test_the_stand_ins_refuse_what_the_providers_document_as_refused(gateway):
    """More than 10 media URLs, a URL that is not http(s), neither words nor media."""
    fake = FakeTwilio("AC" + "7" * 32, "t") if gateway == "twilio" else FakeTelnyx("k")
    async with serving(fake.app()) as api, aiohttp.ClientSession() as http:
        answers = []
        for urls, words in ((["https://a.example/1"] * 11, "x"), (["ftp://a.example/1"], "x"),
                            ([], "")):
            if gateway == "twilio":
                form = [("To", HOMEOWNER), ("From", BUSINESS_NUMBER), ("Body", words),
                        *(("MediaUrl", url) for url in urls)]
                async with http.post(f"{api}/2010-04-01/Accounts/{fake.account_sid}/Messages.json",
                                     data=form, headers={"Authorization": "Basic " + base64.b64encode(
                                         f"{fake.account_sid}:t".encode()).decode()}) as r:
                    answers.append((r.status, (await r.json())["code"]))
            else:
                async with http.post(f"{api}/v2/messages", headers={"Authorization": "Bearer k"},
                                     json={"from": BUSINESS_NUMBER, "to": HOMEOWNER, "text": words,
                                           "media_urls": urls}) as r:
                    answers.append((r.status, (await r.json())["errors"][0]["code"]))
    if gateway == "twilio":
        assert answers == [(400, 21623), (400, 21620), (400, 21619)]
    else:
        assert answers == [(400, "40305")] * 3
    assert fake.accepted == []


async def test_the_http_gateway_sends_photos_only_when_its_mms_is_configured(tmp_path, smtp_sink):
    """`http.mms` with numbered fields and an MMS method (VoIP.ms's sendMMS shape): the links
    go as media1.., the constants switch the method, and each link serves the photo."""
    provider = Recorder()
    photo = jpeg(320, 240)
    async with serving(provider.app()) as api:
        gateway = {"type": "http", "http": {
            "url": f"{api}/send", "body": "form", "constants": {"method": "sendSMS"},
            "mms": {"field": "media{n}", "style": "numbered", "max_items": 3,
                    "constants": {"method": "sendMMS"}}}}
        daemon = Daemon(load(config_for(tmp_path, gateway)))
        async with in_process(daemon), aiohttp.ClientSession() as http:
            to = await reply_address(daemon, smtp_sink, "http")
            await asyncio.to_thread(send, reply(to, "The sample", ("s.jpg", "image/jpeg", photo)))
            await sent_reply(daemon)
            [request] = provider.requests
            form = dict(parse_qsl(request["body"].decode()))
            async with http.get(form["media1"]) as resp:
                served = (resp.status, await resp.read())

    assert (form["method"], form["text"]) == ("sendMMS", "The sample")
    assert "media2" not in form and served == (200, photo)
    assert len(smtp_sink.received) == 1  # the alert only: everything went


async def _queued_with_a_photo(daemon: Daemon, words: str) -> None:
    """An owner's reply with a kept photo, as if accepted while the gateway still sent MMS."""
    record = await daemon.store.record_inbound(HOMEOWNER, BUSINESS_NUMBER, "Kitchen?", "log",
                                               "SM-1", "dana")
    digest = daemon.media_files.put(jpeg())
    await daemon.store.queue_owner_reply(
        record.conversation_id, BUSINESS_NUMBER, HOMEOWNER, words, "web:dana", media=[
            NewMedia("", "image/jpeg", sha256=digest, content_type="image/jpeg", shown=True,
                     size=1)])


async def _send_due(daemon: Daemon) -> dict:
    [item] = await daemon.store.claim_all(await daemon.store.due(time.time() + 1))
    await daemon.outbox.send(item)
    return dict(await daemon.store._one("SELECT status, error, body FROM messages"
                                        " WHERE id = ?", (item.message_id,)))


@pytest.mark.parametrize("words", ["Tuesday at 10?", ""])
async def test_a_reply_whose_gateway_lost_mms_before_sending_sends_the_words_and_tells_the_owner(
        tmp_path, words):
    """The gateway was changed to one without MMS between the reply and its sending: the outbox
    sends the words and emails the owner; a photo-only reply fails and is reported."""
    daemon = Daemon(load(config_for(tmp_path, None)))  # the log gateway
    daemon.attach(await Store.open(daemon.config.storage.path), LogGateway())
    try:
        await _queued_with_a_photo(daemon, words)
        sent = await _send_due(daemon)
        notices = [dict(r) for r in await daemon.store._all("SELECT subject, body FROM notices")]
    finally:
        await daemon.store.close()

    if words:
        assert (sent["status"], sent["body"]) == ("sent", words)
        [notice] = notices
        assert notice["subject"] == "Your photo to +12125550123 was not sent"
        assert "texted without its photos: the log gateway texts words only" in notice["body"]
    else:
        assert sent["status"] == "failed"
        assert sent["error"] == "its photos could not be sent: the log gateway texts words only"
        [notice] = notices
        assert "the log gateway texts words only" in notice["body"]


def test_pictures_inside_the_html_body_are_named_not_texted_and_attachments_are_files():
    """A signature's logo (inline, `<img src="cid:...">` in a multipart/related, as Outlook
    writes it) is part of the email's text, not something the owner chose to send; an
    attached photo is."""
    message = EmailMessage()
    message["From"] = "dana@acme.example"
    message.set_content("Here it is")
    message.add_alternative('<p>Here it is</p><img src="cid:logo@acme">', subtype="html")
    message.get_payload()[1].add_related(png(), maintype="image", subtype="png", cid="<logo@acme>",
                                         disposition="inline", filename="logo.png")
    message.add_attachment(jpeg(), maintype="image", subtype="jpeg", filename="tile.jpg")
    files, in_body = attachments_of(message)
    assert [(f.name, f.declared_type) for f in files] == [("tile.jpg", "image/jpeg")]
    assert files[0].data == jpeg() and in_body == ("logo.png",)


async def test_a_retried_mms_sends_the_same_links_so_the_providers_idempotency_holds(tmp_path):
    """Telnyx took the MMS but the answer was a 503 (a proxy timing out): the retry carries the
    same Idempotency-Key and the same body (the same signed links), so Telnyx replays its
    first answer instead of refusing a changed request (422) or sending it twice."""
    telnyx = FakeTelnyx("KEY-retry", script=[("5xx", 503)], fail_after_processing=True)
    async with serving(telnyx.app()) as api:
        daemon = Daemon(load(config_for(tmp_path, telnyx_gateway(tmp_path, telnyx, api))))
        daemon.attach(await Store.open(daemon.config.storage.path),
                      build_gateway(daemon.config, None, daemon.secrets))
        try:
            record = await daemon.store.record_inbound(HOMEOWNER, BUSINESS_NUMBER, "Kitchen?",
                                                       "telnyx", "in-1", "dana")
            prepared = await daemon.outbound_media([media.Attachment("t.jpg", "image/jpeg",
                                                                     jpeg())])
            await daemon.store.queue_owner_reply(record.conversation_id, BUSINESS_NUMBER,
                                                 HOMEOWNER, "The tile", "web:dana",
                                                 media=prepared.rows())
            first = await _send_due(daemon)
            await daemon.store.bring_forward(time.time())
            await asyncio.sleep(1.1)  # a later second: a link made from the clock would differ
            second = await _send_due(daemon)
        finally:
            await daemon.gateway.close()
            await daemon.store.close()

    assert first["status"] == "queued" and second["status"] == "sent"
    assert telnyx.attempts == 2 and len(telnyx.accepted) == 1  # sent once, answered twice


def test_an_owners_files_are_checked_as_inbound_media_is_and_kept_within_the_limits(tmp_path):
    """A decompression bomb is refused before it is decoded, files past the provider's count
    are refused without being read, a large photo goes as a JPEG, and only what goes is stored."""
    files = MediaStore(tmp_path / "media")
    noisy = io.BytesIO()  # a photo's worth of detail: a JPEG well over 600 KB
    Image.effect_noise((2400, 1800), 80).convert("RGB").save(noisy, "JPEG", quality=95)
    big = noisy.getvalue()
    prepared = prepare_outbound(files, [
        media.Attachment("bomb.png", "image/png", png_bomb()),
        media.Attachment("big.jpg", "image/jpeg", big),
        media.Attachment("card.vcf", "text/vcard", b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Acme\r\nEND:VCARD\r\n"),
        media.Attachment("third.jpg", "image/jpeg", jpeg())], max_items=2, max_bytes=1_000_000)
    assert [(f.name, f.content_type) for f in prepared.files] == [
        ("big.jpg", "image/jpeg"), ("card.vcf", "text/vcard")]
    [photo, _] = prepared.files
    assert photo.rendition_sha256 and photo.sent_bytes < len(big) and photo.size == len(big)
    assert files.read(photo.sha256) == big  # the original kept; the rendition is what goes
    assert dict(prepared.refused)["third.jpg"] == "an MMS carries at most 2 files"
    assert "decompression bomb" in dict(prepared.refused)["bomb.png"]
    assert len(list((tmp_path / "media").glob("??/??/*"))) == 3  # big, its rendition, the card


async def test_a_reply_of_only_a_pasted_picture_is_not_sent_and_the_owner_is_told_how(
        tmp_path, smtp_sink):
    twilio = FakeTwilio("AC" + "4" * 32, "twilio-token")
    async with serving(twilio.app()) as api:
        daemon = Daemon(load(config_for(tmp_path, twilio_gateway(tmp_path, twilio, api))))
        async with in_process(daemon):
            to = await reply_address(daemon, smtp_sink, "twilio")
            message = reply(to, "")
            message.add_alternative('<img src="cid:paste-1">', subtype="html")
            message.get_payload()[1].add_related(jpeg(), maintype="image", subtype="jpeg",
                                                 cid="<paste-1>", disposition="inline",
                                                 filename="image0.jpeg")
            await asyncio.to_thread(send, message)
            [told] = await notices(smtp_sink, 1)

    assert told["Subject"] == "Not sent to +12125550123: nothing to send"
    assert told.get_content().startswith(
        "Your email reply to +12125550123 was not sent: it had only pictures inside the email's "
        "text.\n\nIts pictures:\n    image0.jpeg\n\nWrite your answer above the quoted message "
        "and reply again. A photo is texted only when attached as a file")
    assert twilio.accepted == []
