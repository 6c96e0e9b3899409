"""What each gateway reads of a text's media, and what textback.core.media makes of types and bytes.

Through the real webhook server: Twilio's NumMedia/MediaUrlN/MediaContentTypeN,
Telnyx's media[] (url, content_type, size), the generic gateway's configured
field names (a JSON list, or numbered form fields). A webhook that announces
media it does not carry is unreadable (400: the provider sends it again).
The SIP MESSAGE UserEvent: a text/plain body in its charset, any other body
kept as the text's one media item.
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from pydantic import SecretStr, ValidationError

from sms_gateway.asterisk import parse_user_event
from sms_gateway.base import InboundMedia
from sms_gateway.http import HttpGateway
from sms_gateway.media import MediaAccess, MediaFetcher, Refused
from sms_gateway.settings import HttpSettings, TelnyxSettings, TwilioSettings
from sms_gateway.telnyx import TelnyxGateway
from sms_gateway.twilio import TwilioGateway
from textback import mediafiles
from textback.core import media
from tests.providers.common import callback_server
from tests.providers.generic import call
from tests.providers.media import SVG_WITH_SCRIPT, heic, jpeg, mp4, png, png_bomb
from tests.providers.telnyx import FakeTelnyx
from tests.providers.twilio import FakeTwilio

SID = "AC" + "7" * 32
TOKEN = "twilio-token-for-capture"
PUBLIC = "https://textback.example.com/hooks"
BUSINESS, CALLER = "+12125550100", "+12125550123"
TWILIO_MEDIA = "https://api.twilio.com/2010-04-01/Accounts/" + SID + "/Messages/MM1/Media/ME"


async def test_twilio_media_fields_become_media_items():
    twilio = FakeTwilio(SID, TOKEN)
    gw = TwilioGateway(TwilioSettings(account_sid=SID, auth_token={"env": "UNUSED"}),
                       {"auth_token": SecretStr(TOKEN)}, PUBLIC)
    params = twilio.inbound_params(CALLER, BUSINESS, "")
    params.update({"NumMedia": "2", "MediaUrl0": TWILIO_MEDIA + "1", "MediaContentType0": "image/jpeg",
                   "MediaUrl1": TWILIO_MEDIA + "2", "MediaContentType1": "video/mp4"})
    broken = twilio.inbound_params(CALLER, BUSINESS, "")
    broken.update({"NumMedia": "2", "MediaUrl0": TWILIO_MEDIA + "1",
                   "MediaContentType0": "image/jpeg"})
    async with callback_server([gw], PUBLIC) as (local, sinks):
        ok = await twilio.call(f"{local}/twilio/inbound", f"{PUBLIC}/twilio/inbound", params)
        missing = await twilio.call(f"{local}/twilio/inbound", f"{PUBLIC}/twilio/inbound", broken)
    assert (ok, missing) == (200, 400)
    [(text, gateway)] = sinks.texts
    assert gateway == "twilio" and text.body == ""
    assert text.media == (InboundMedia(TWILIO_MEDIA + "1", "image/jpeg"),
                          InboundMedia(TWILIO_MEDIA + "2", "video/mp4"))
    access = gw.media_access()
    assert access.hosts == ("api.twilio.com", "mms.twiliocdn.com", "media.twiliocdn.com")
    assert access.auth_hosts == ("api.twilio.com",) and access.deletable
    assert access.auth["Authorization"].startswith("Basic ")


async def test_telnyx_media_list_becomes_media_items():
    telnyx = FakeTelnyx("key")
    gw = TelnyxGateway(TelnyxSettings(api_key={"env": "UNUSED"}, public_key=telnyx.public_key),
                       {"api_key": SecretStr("key")})
    body = json.loads(telnyx.received(CALLER, BUSINESS, "see photos", str(uuid.uuid4())))
    body["data"]["payload"]["media"] = [
        {"url": "https://media.telnyx.com/a.jpg", "content_type": "image/jpeg", "size": 12345,
         "hash_sha256": "00" * 32},
        {"url": "https://media.telnyx.com/b.3gp", "content_type": "video/3gpp"}]
    async with callback_server([gw], PUBLIC) as (local, sinks):
        assert await telnyx.call(f"{local}/telnyx", json.dumps(body).encode()) == 200
    [(text, _)] = sinks.texts
    assert text.body == "see photos" and text.media == (
        InboundMedia("https://media.telnyx.com/a.jpg", "image/jpeg", 12345),
        InboundMedia("https://media.telnyx.com/b.3gp", "video/3gpp", None))
    assert gw.media_access().hosts == ("media.telnyx.com",) and not gw.media_access().auth


def generic(media_fields: dict) -> HttpGateway:
    settings = HttpSettings.model_validate({
        "url": "https://api.example.net/send", "inbound": {
            "token": {"env": "UNUSED"}, "sender": "from", "recipient": "to", "text": "text",
            "media": media_fields}})
    return HttpGateway(settings, {"inbound.token": SecretStr("tok")})


async def test_the_generic_gateway_reads_media_by_the_configured_field_names():
    listed = generic({"list_path": "data.files", "url": "link", "type": "mime", "size": "bytes",
                      "hosts": ["files.example.net"]})
    numbered = generic({"url": "MediaUrl{n}", "type": "MediaType{n}", "hosts": ["mms.example.net"]})
    async with callback_server([listed], PUBLIC) as (local, sinks):
        status, _ = await call(f"{local}/http/inbound?token=tok", "POST", json={
            "from": CALLER, "to": BUSINESS, "text": "",
            "data": {"files": [{"link": "https://files.example.net/1", "mime": "image/png",
                                "bytes": 99}]}})
        assert status == 200
    async with callback_server([numbered], PUBLIC) as (local, numbered_sinks):
        status, _ = await call(f"{local}/http/inbound?token=tok", "POST", data={
            "from": CALLER, "to": BUSINESS, "text": "hi",
            "MediaUrl0": "https://mms.example.net/a", "MediaType0": "image/jpeg",
            "MediaUrl1": "https://mms.example.net/b", "MediaType1": "image/gif"})
        assert status == 200
    assert sinks.texts[0][0].media == (InboundMedia("https://files.example.net/1", "image/png", 99),)
    assert numbered_sinks.texts[0][0].media == (
        InboundMedia("https://mms.example.net/a", "image/jpeg"),
        InboundMedia("https://mms.example.net/b", "image/gif"))
    assert listed.media_access().hosts == ("files.example.net",)
    with pytest.raises(ValidationError, match="numbered field names"):
        generic({"url": "media_url", "type": "media_type", "hosts": ["x.example"]})
    with pytest.raises(ValidationError, match="not a host name"):
        generic({"list_path": "m", "hosts": ["https://x.example/"]})


def user_event(body: bytes, content_type: str | None) -> dict:
    def b64(value: bytes) -> str:
        return base64.b64encode(value).decode()
    event = {"Event": "UserEvent", "UserEvent": "TextbackSmsIn", "From": b64(b"<sip:+12125550123@c>"),
             "To": b64(b"+12125550100"), "Body": b64(body), "CallID": b64(b"abc@carrier"),
             "CSeq": b64(b"1 MESSAGE")}
    if content_type is not None:
        event["ContentType"] = b64(content_type.encode())
    return event


def test_a_sip_message_is_read_by_its_content_type():
    latin = parse_user_event(user_event("Crème brûlée".encode("latin-1"),
                                        "text/plain;charset=ISO-8859-1"))
    assert latin.body == "Crème brûlée" and latin.media == ()
    older = parse_user_event(user_event("Crème".encode(), None))  # an older dialplan
    assert older.body == "Crème" and older.media == ()
    photo = jpeg()
    picture = parse_user_event(user_event(photo, "image/jpeg"))
    assert picture.body == "" and picture.media == (InboundMedia("", "image/jpeg", len(photo), photo),)
    card = parse_user_event(user_event(b"BEGIN:VCARD\r\nFN:Dana\r\nEND:VCARD\r\n", "text/x-vcard"))
    assert card.body == "" and card.media[0].declared_type == "text/x-vcard"


def test_bytes_are_checked_against_their_declared_type():
    assert mediafiles.inspect(jpeg(), "image/jpg").shown
    assert mediafiles.inspect(png(), "image/png").shown
    assert mediafiles.inspect(heic(), "image/heic").shown
    assert mediafiles.inspect(mp4(), "video/mp4").shown
    assert mediafiles.inspect(b"%PDF-1.7\n%...", "application/pdf").shown
    assert mediafiles.inspect(b"BEGIN:VCARD\r\nEND:VCARD", "text/vcard").shown
    for data, declared, why in (
            (png(), "image/jpeg", "declared image/jpeg but the file is image/png"),
            (SVG_WITH_SCRIPT, "image/svg+xml", "never shown"),
            (b"<html>hi</html>", "text/html", "never shown"),
            (b"PK\x03\x04zip", "application/zip", "not a type textback shows"),
            (png_bomb(), "image/png", "decompression bomb"),
            (b"\xff\xd8\xff\xe0 truncated", "image/jpeg", "not a readable image")):
        checked = mediafiles.inspect(data, declared)
        assert not checked.shown and checked.content_type == "application/octet-stream", declared
        assert why in checked.note, checked.note


def test_how_a_text_with_media_reads():
    photo, video = media.Shown("image"), media.Shown("video")
    assert media.summary("", [photo, photo]) == "2 photos"
    assert media.summary("", [photo]) == "A photo"
    assert media.summary("", [photo, video, media.Shown(None)]) == \
        "A photo, a video and an attachment"
    assert media.summary("  ", []) == "(empty text)"
    assert media.summary("Hi", [photo]) == "Hi"
    assert media.sent_line([photo, media.Shown("image", failed=True)]) == \
        "sent 2 photos (1 could not be fetched)"
    assert media.sent_line([]) == ""


async def test_the_fetcher_refuses_before_it_asks():
    fetcher = MediaFetcher(MediaAccess("twilio", ("api.twilio.com",)), 5.0)
    for url, why in (("http://api.twilio.com/x", "not HTTPS"),
                     ("https://evil.example/x", "not one of the twilio media hosts"),
                     ("https://169.254.169.254/latest", "not one of the twilio media hosts")):
        with pytest.raises(Refused, match=why):
            await fetcher.fetch(url, 1000)
    listed = MediaFetcher(MediaAccess("http", ("169.254.169.254", "10.0.0.8", "127.0.0.1")), 5.0)
    for url, why in (("https://169.254.169.254/x", "cloud metadata"),
                     ("https://10.0.0.8/x", "private, loopback or reserved"),
                     ("https://127.0.0.1/x", "private, loopback or reserved")):
        with pytest.raises(Refused, match=why):
            await listed.fetch(url, 1000)
    tests_only = MediaFetcher(MediaAccess("http", ("10.0.0.8",)), 5.0,
                              insecure_loopback_for_tests=True)
    with pytest.raises(Refused, match="plain HTTP is allowed for tests only"):
        await tests_only.fetch("http://10.0.0.8/x", 1000)
    await fetcher.close()
