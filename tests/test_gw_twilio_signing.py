"""Twilio's two ways of signing a webhook, through the real webhook server and the daemon.

Built from Twilio's documentation (twilio.com/docs/usage/webhooks/webhook-settings and
webhook-shared-keys; twilio-node examples/WebhookSignatureValidation.md), independently of
sms_gateway.twilio:

- without X-Twilio-Webhooks-Signature-Settings, X-Twilio-Signature is base64(HMAC-SHA1(
  AuthToken, URL + sorted POST keys and values));
- a Webhook Setting signs with its SharedKey instead, by the algorithm it names, and says
  so: `X-Twilio-Webhooks-Signature-Settings: key=<SharedKey id>,algorithm=HMAC_SHA256`; the
  signed string is unchanged;
- a JSON webhook is signed over its URL alone, which carries `bodySHA256`, the hex SHA-256
  of the raw body.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
import uuid

import aiohttp
import pytest
from pydantic import SecretStr, ValidationError

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, base_config, write_config
from lab.harness import eventually
from sms_gateway.base import InboundText
from sms_gateway.settings import TwilioSettings
from sms_gateway.twilio import TwilioGateway
from sms_gateway.callbacks import DeliveryStatus, CallbackServer
from tests.providers.common import Sinks
from textback.config import load
from textback.daemon import Daemon

SID = "AC" + "1" * 32
TOKEN = "twilio-auth-token-for-tests"
KEY_ID = "webhooks_shared_key_01jfq2x7k9m3n5p8r1t4v6w8y0"
SHARED = "shared-key-secret-0123456789abcdef0123456789abcdef"
PUBLIC = "https://textback.example.com/hooks"
SETTINGS = "X-Twilio-Webhooks-Signature-Settings"
DIGESTS = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}
WEBHOOK_PORT = 15182  # the daemon's own webhook server


def twilio_signature(secret: str, algorithm: str, url: str, params: dict[str, str]) -> str:
    data = url + "".join(key + params[key] for key in sorted(params))
    return base64.b64encode(hmac.new(secret.encode(), data.encode(), DIGESTS[algorithm]).digest()
                            ).decode()


def inbound(body: str = "Yes, kitchen remodel") -> dict[str, str]:
    sid = "SM" + uuid.uuid4().hex
    return {"MessageSid": sid, "SmsSid": sid, "AccountSid": SID, "From": HOMEOWNER,
            "To": BUSINESS_NUMBER, "Body": body, "NumMedia": "0", "ApiVersion": "2010-04-01"}


async def post(local: str, path: str, *, form: dict[str, str] | None = None,
               json_body: bytes | None = None, query: str = "", secret: str = SHARED,
               algorithm: str = "HMAC_SHA256", settings: str | None = f"key={KEY_ID},"
               "algorithm=HMAC_SHA256", signed_params: dict[str, str] | None = None) -> int:
    """One webhook as Twilio sends it; `settings` None: signed the old way (no header)."""
    url = f"{PUBLIC}{path}{query}"
    params = {} if json_body is not None else (signed_params if signed_params is not None
                                               else form or {})
    headers = {"X-Twilio-Signature": twilio_signature(secret, algorithm, url, params)}
    if settings is not None:
        headers[SETTINGS] = settings
    async with aiohttp.ClientSession() as session:
        if json_body is not None:
            headers["Content-Type"] = "application/json"
            request = session.post(f"{local}{path}{query}", data=json_body, headers=headers)
        else:
            request = session.post(f"{local}{path}{query}", data=form, headers=headers)
        async with request as response:
            return response.status


def gateway(**settings) -> TwilioGateway:
    shared = {"shared_key": {"env": "UNUSED"}, "shared_key_id": KEY_ID} if settings.pop(
        "shared", True) else {}
    config = TwilioSettings(account_sid=SID, auth_token={"env": "UNUSED"},
                            **shared, **settings)
    secrets = {"auth_token": SecretStr(TOKEN)}
    if shared:
        secrets["shared_key"] = SecretStr(SHARED)
    return TwilioGateway(config, secrets, public_base_url=PUBLIC)


class Served:
    """The real webhook server on loopback, with what it delivered and what it reported."""

    def __init__(self, gw: TwilioGateway):
        self.sinks = Sinks()
        self.not_configured: list[tuple[str, str]] = []
        self.server = CallbackServer([gw], self.sinks.deliver, self.sinks.report, port=0,
                                     public_base_url=PUBLIC,
                                     on_not_configured=lambda *told: self.not_configured.append(told))

    async def __aenter__(self) -> "Served":
        await self.server.start()
        self.local = f"http://127.0.0.1:{self.server.port}"
        return self

    async def __aexit__(self, *exc) -> None:
        await self.server.stop()


async def test_a_shared_key_with_hmac_sha256_is_accepted_and_the_auth_token_still_is():
    async with Served(gateway()) as served:
        text = inbound()
        assert await post(served.local, "/twilio/inbound", form=text) == 200
        status = {"MessageSid": "SM" + "9" * 32, "MessageStatus": "delivered", "AccountSid": SID}
        assert await post(served.local, "/twilio/status", form=status) == 200
        # Numbers not under a Webhook Rule are still signed with the AuthToken and HMAC-SHA1.
        old = inbound("Tuesday?")
        assert await post(served.local, "/twilio/inbound", form=old, secret=TOKEN,
                          algorithm="HMAC_SHA1", settings=None) == 200
    assert [t for t, _ in served.sinks.texts] == [
        InboundText(HOMEOWNER, BUSINESS_NUMBER, "Yes, kitchen remodel", text["MessageSid"]),
        InboundText(HOMEOWNER, BUSINESS_NUMBER, "Tuesday?", old["MessageSid"])]
    assert [s for s, _ in served.sinks.statuses] == [DeliveryStatus("SM" + "9" * 32, "delivered")]
    assert served.not_configured == []


async def test_a_shared_key_set_to_hmac_sha1_is_accepted_when_configured_so():
    async with Served(gateway(shared_key_algorithm="HMAC_SHA1")) as served:
        assert await post(served.local, "/twilio/inbound", form=inbound(), algorithm="HMAC_SHA1",
                          settings=f"key={KEY_ID},algorithm=HMAC_SHA1") == 200
    assert len(served.sinks.texts) == 1


async def test_forgeries_under_the_shared_key_header_are_refused_quietly():
    """A wrong signature is a forgery (a warning), not a configuration to fix."""
    async with Served(gateway()) as served:
        text = inbound()
        signed_with_token = await post(served.local, "/twilio/inbound", form=text, secret=TOKEN)
        tampered = await post(served.local, "/twilio/inbound", form=dict(text, Body="Send $500"),
                              signed_params=text)
        unsigned = await post(served.local, "/twilio/inbound", form=text, secret="")
    assert (signed_with_token, tampered, unsigned) == (403, 403, 403)
    assert served.sinks.texts == [] and served.not_configured == []


@pytest.mark.parametrize("settings, shared, why", [
    ("key=webhooks_shared_key_other,algorithm=HMAC_SHA256", True,
     "signed with SharedKey 'webhooks_shared_key_other', not the configured "
     f"twilio.shared_key_id '{KEY_ID}'"),
    (f"key={KEY_ID},algorithm=HMAC_SHA1", True,
     "signed with 'HMAC_SHA1', not the configured twilio.shared_key_algorithm HMAC_SHA256"),
    (f"key={KEY_ID},algorithm=HMAC_SHA512", True,
     "signed with 'HMAC_SHA512', not the configured twilio.shared_key_algorithm HMAC_SHA256"),
    (f"key={KEY_ID},algorithm=HMAC_SHA256", False,
     f"signed with SharedKey '{KEY_ID}', and no twilio.shared_key is configured"),
    ("HMAC_SHA256", True, "X-Twilio-Webhooks-Signature-Settings is unreadable"),
    ("key=\x9bx,algorithm=HMAC_SHA256", True, "signed with SharedKey '?x'"),
], ids=["other-key", "other-algorithm", "unknown-algorithm", "no-shared-key", "malformed",
        "control-characters"])
async def test_a_key_or_algorithm_not_configured_is_refused_with_an_error_and_reported(
        settings, shared, why, caplog):
    caplog.set_level(logging.WARNING, "textback.callbacks")
    async with Served(gateway(shared=shared)) as served:
        status = await post(served.local, "/twilio/inbound", form=inbound(), settings=settings)
    assert status == 403 and served.sinks.texts == []
    [(gateway_name, told)] = served.not_configured
    assert gateway_name == "twilio" and why in told
    [line] = [r for r in caplog.records if "refused webhook" in r.getMessage()]
    assert line.levelno == logging.ERROR and why in line.getMessage()
    assert SHARED not in caplog.text and TOKEN not in caplog.text


async def test_a_json_webhook_is_checked_against_its_body_sha256():
    async with Served(gateway()) as served:
        text = inbound("JSON hello")
        body = json.dumps(text).encode()
        digest = hashlib.sha256(body).hexdigest()
        good = await post(served.local, "/twilio/inbound", json_body=body,
                          query=f"?bodySHA256={digest}")
        swapped = json.dumps(dict(text, Body="not what Twilio sent")).encode()
        tampered = await post(served.local, "/twilio/inbound", json_body=swapped,
                              query=f"?bodySHA256={digest}")
        old_way = await post(served.local, "/twilio/inbound", json_body=body,
                             query=f"?bodySHA256={digest}", secret=TOKEN, algorithm="HMAC_SHA1",
                             settings=None)
    assert (good, tampered, old_way) == (200, 403, 200)
    assert [t.body for t, _ in served.sinks.texts] == ["JSON hello", "JSON hello"]


def test_a_shared_key_needs_its_id_and_the_id_its_key():
    with pytest.raises(ValidationError, match="shared_key and shared_key_id go together"):
        TwilioSettings(account_sid=SID, auth_token={"env": "T"}, shared_key={"env": "K"})
    with pytest.raises(ValidationError, match="shared_key and shared_key_id go together"):
        TwilioSettings(account_sid=SID, auth_token={"env": "T"}, shared_key_id=KEY_ID)



async def test_the_daemon_opens_an_incident_and_recovers_once_twilio_signs_as_configured(
        tmp_path, smtp_sink, monkeypatch, caplog):
    monkeypatch.setenv("TEXTBACK_TEST_TWILIO_SHARED_KEY", SHARED)
    (tmp_path / "twilio.token").write_text(TOKEN)
    config = base_config(tmp_path, **{
        "ami.port": 15099, "smtp.port": 15025, "admin_email": "it@acme.example",
        "gateway": {"type": "twilio",
                    "twilio": {"account_sid": SID, "auth_token": {"file": "twilio.token"},
                               "api_base_url": "http://127.0.0.1:9",
                               "shared_key": {"env": "TEXTBACK_TEST_TWILIO_SHARED_KEY"},
                               "shared_key_id": KEY_ID},
                    "callbacks": {"listen_port": WEBHOOK_PORT, "public_base_url": PUBLIC}},
    })
    daemon = Daemon(load(write_config(tmp_path, config)))
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    local = f"http://127.0.0.1:{WEBHOOK_PORT}"
    try:
        await eventually(lambda: asyncio.sleep(0, daemon.gateway is not None), 5, "start")
        await asyncio.sleep(0.2)
        rotated = "key=webhooks_shared_key_rotated,algorithm=HMAC_SHA256"
        assert await post(local, "/twilio/inbound", form=inbound(), settings=rotated) == 403
        await daemon.incidents.check_incidents(time.time())
        [incident] = await daemon.store.open_incidents()
        assert incident["kind"] == "webhook_signing"
        assert "'webhooks_shared_key_rotated', not the configured" in incident["summary"]
        assert await post(local, "/twilio/inbound", form=inbound("Still there?")) == 200
        await daemon.incidents.check_incidents(time.time())
        assert await daemon.store.open_incidents() == []
        mails = await asyncio.to_thread(smtp_sink.wait_for, 3, 10)  # the alert, and the admin's two
        subjects = sorted(" ".join(str(m.message["Subject"]).split()) for m in mails
                          if m.recipients == ["it@acme.example"])
        assert subjects == [
            "textback incident: webhooks are signed with a key textback does not have",
            "textback recovered: webhooks are signed with a key textback does not have"]
        assert SHARED not in caplog.text
    finally:
        stop.set()
        await running
