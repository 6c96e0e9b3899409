"""Photos outside the inbox: signed, expiring links in reply.received, the JSON API and CRM notes.

The webhook body is validated against the schema published in
docs/webhooks.md; the API answer against the OpenAPI document. Each link
serves its one file without a session until it expires; a link whose
signature or expiry was changed is refused.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import jsonschema
from click.testing import CliRunner

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, base_config, write_config
from lab.harness import SMTP_SINK_PORT, eventually, in_process
from sms_gateway.base import InboundMedia, InboundText
from textback.api.openapi import document
from textback.cli import main
from textback.config import load
from textback.crm.notes import note_text
from textback.daemon import Daemon
from textback.store import Store
from textback.web import medialinks
from tests.hooks_receiver import Receiver, endpoint, new_secret, schemas
from tests.providers.common import serving
from tests.providers.media import jpeg

PORT = 18189
LOCAL = f"http://127.0.0.1:{PORT}"
PUBLIC = "https://textback.acme.example"
DOC = Path(__file__).resolve().parent.parent / "docs" / "webhooks.md"


def local(url: str) -> str:
    assert url.startswith(PUBLIC + "/media/")
    return LOCAL + url.removeprefix(PUBLIC)


async def test_photo_links_in_the_webhook_the_api_and_the_crm_note(tmp_path, smtp_sink):
    crm = Receiver(new_secret())
    photo = jpeg()
    async with serving(crm.app()) as crm_url:
        config = base_config(tmp_path, **{
            "smtp.port": SMTP_SINK_PORT, "web": {"port": PORT, "public_url": PUBLIC},
            "webhooks": {"endpoints": [endpoint(tmp_path, "crm", f"{crm_url}/hook", crm.secret)]}})
        path = write_config(tmp_path, config)
        made = await asyncio.to_thread(CliRunner().invoke, main, [
            "token", "create", "--name", "dash", "--scope", "read", "-c", str(path)])
        token = made.stdout.splitlines()[0]
        daemon = Daemon(load(path))
        async with in_process(daemon), aiohttp.ClientSession() as http:
            await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, "", "sms-1", media=(
                InboundMedia("", "image/jpeg", len(photo), photo),)), "log")
            [event] = await eventually(lambda: asyncio.sleep(0, crm.of_type("reply.received")),
                                       10, "reply.received")
            conversation = event["data"]["conversation_id"]
            async with http.get(f"{LOCAL}/api/v1/conversations/{conversation}",
                                headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200
                thread = await resp.json()
            [item] = event["data"]["media"]
            async with http.get(local(item["url"])) as resp:
                served = (resp.status, resp.headers.get("Content-Type"), await resp.read(),
                          resp.headers.get("Content-Security-Policy"),
                          resp.headers.get("X-Content-Type-Options"))
            tampered = local(item["url"]).replace("sig=", "sig=0")[:-1]
            key = await daemon.store.web_key(medialinks.MEDIA_LINK_KEY)
            expired = medialinks.media_link(key, LOCAL, item["id"], 1_000_000)
            refused = []
            for url in (tampered, expired):
                async with http.get(url) as resp:
                    refused.append(resp.status)
            [message] = [m for m in thread["messages"] if m["direction"] == "in"]
            async with http.get(local(message["media"][0]["url"])) as resp:
                api_link = resp.status
            history = (await daemon.store.conversation_history(conversation))["messages"]
            media = await daemon.store.media_of(m["id"] for m in history)

    jsonschema.Draft202012Validator(schemas(DOC)["reply.received"]).validate(event)
    assert event["data"]["body"] == ""
    assert (item["content_type"], item["size"]) == ("image/jpeg", len(photo))
    assert served == (200, "image/jpeg", photo, "sandbox; default-src 'none'", "nosniff")
    assert refused == [403, 403]
    openapi = document()
    jsonschema.Draft202012Validator(
        {**openapi["components"]["schemas"]["Thread"], "components": openapi["components"]}
    ).validate(thread)
    [listed] = message["media"]
    assert (listed["content_type"], listed["size"], listed["state"], listed["shown"]) == (
        "image/jpeg", len(photo), "kept", True)
    assert listed["url_expires_at"] is not None and api_link == 200

    note = note_text(event, [m | {"media": media[m["id"]]} for m in history])
    assert f"They sent a photo (links work for a few days):\n  image/jpeg: {item['url']}" in note
    assert "Caller: A photo" in note


async def test_inbound_texts_read_the_media_link_key_from_the_store_once(tmp_path):
    """The key that signs media links is read by the first inbound text, not by every one; the
    links made after still verify under the store's key."""
    config = base_config(tmp_path, **{"web": {"port": PORT, "public_url": PUBLIC}})
    daemon = Daemon(load(write_config(tmp_path, config)))
    daemon.attach(await Store.open(daemon.config.storage.path))
    read_key, reads = daemon.store.web_key, []

    async def counted_read(name: str) -> bytes:
        reads.append(name)
        return await read_key(name)

    daemon.store.web_key = counted_read
    photo = jpeg()
    try:
        for n in range(3):
            await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, f"photo {n}",
                                                  f"sms-{n}", media=(InboundMedia(
                                                      "", "image/jpeg", len(photo), photo),)),
                                      "log")
        link = (await daemon.media_linker())(7, 1_000)
        key = await read_key(medialinks.MEDIA_LINK_KEY)
    finally:
        await daemon.store.close()

    assert reads == [medialinks.MEDIA_LINK_KEY]
    expires, sig = link.removeprefix(f"{PUBLIC}/media/7?expires=").split("&sig=")
    assert medialinks.valid(key, 7, expires, sig, now=0)
