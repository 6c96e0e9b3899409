"""The `telnyx` gateway: Telnyx Messaging API v2.

Send: POST {api}/v2/messages, Bearer auth, JSON {from, to, text,
messaging_profile_id?, webhook_url?}; numbers in E.164 with '+'. When the
text carries an idempotency key it goes in the Idempotency-Key header, so a
retry after a 5xx that Telnyx did in fact process replays the first answer
instead of texting twice.

Webhook (/telnyx): every event is signed with Ed25519 over
"{telnyx-timestamp}|{raw body}" (header telnyx-signature-ed25519, base64),
checked with the account's public key; a timestamp outside the replay window
is refused. message.received becomes an InboundText; message.sent and
message.finalized become a DeliveryStatus. Events may repeat or come out of
order: the store keys on the message id.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any, Callable, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import SecretStr

from sms_gateway import json_limits
from sms_gateway.base import InboundMedia, InboundText, MmsLimits, OutgoingText, SendResult
from sms_gateway.http import Client, dig, failure
from sms_gateway.media import MediaAccess
from sms_gateway.settings import TelnyxSettings
from sms_gateway.callbacks import DeliveryState, DeliveryStatus, Endpoint, Event, Refused, CallbackRequest

OPTED_OUT = "40300"  # "Blocked due to STOP message"

STATUSES: dict[str, DeliveryState] = {
    "queued": "queued", "sending": "queued", "sent": "sent", "delivered": "delivered",
    "delivery_unconfirmed": "sent", "delivery_failed": "undelivered", "sending_failed": "failed",
}


MAX_MEDIA = 10


def _media(listed: Any) -> tuple[InboundMedia, ...]:
    """data.payload.media: [{url, content_type, size, hash_sha256}, ...]."""
    if listed in (None, []):
        return ()
    if not isinstance(listed, list) or len(listed) > MAX_MEDIA:
        raise ValueError(f"payload.media is not a list of at most {MAX_MEDIA} items")
    items = []
    for entry in listed:
        url = dig(entry, "url")
        if not isinstance(url, str) or not url:
            raise ValueError("a payload.media item has no url")
        size = dig(entry, "size")
        items.append(InboundMedia(url, str(dig(entry, "content_type") or ""),
                                  size if isinstance(size, int) and size >= 0 else None))
    return tuple(items)


class TelnyxGateway:
    name = "telnyx"
    # POST /v2/messages takes up to 10 `media_urls`, fetched by Telnyx at send time; without
    # the profile's mms_transcoding, the carriers' own limit applies: 1 MB is the smallest for
    # a long code (AT&T), per developers.telnyx.com's MMS media and transcoding guide.
    mms = MmsLimits(MAX_MEDIA, 1_000_000)

    def __init__(self, settings: TelnyxSettings, secrets: Mapping[str, SecretStr],
                 public_base_url: str | None = None,
                 clock: Callable[[], float] = time.time):
        self._s = settings
        self._api_key = secrets["api_key"]
        self._public_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(settings.public_key))
        self._webhook_url = (f"{public_base_url.rstrip('/')}/telnyx"
                             if public_base_url and settings.status_callback else None)
        self._clock = clock
        self._client = Client(settings.timeout_seconds)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key.get_secret_value()}",
                "Accept": "application/json"}

    async def send(self, text: OutgoingText) -> SendResult:
        body: dict[str, Any] = {"from": self._s.senders.get(text.sender, text.sender),
                                "to": text.recipient}
        if text.body or not text.media_urls:  # an MMS may be photos only
            body["text"] = text.body
        if text.media_urls:
            body["media_urls"] = list(text.media_urls)
        if self._s.messaging_profile_id:
            body["messaging_profile_id"] = self._s.messaging_profile_id
        if self._webhook_url:
            body["webhook_url"] = self._webhook_url
        headers = self._headers()
        key = getattr(text, "idempotency_key", None)
        if key:
            headers["Idempotency-Key"] = key
        reply = await self._client.request("POST", f"{self._s.api_base_url}/v2/messages",
                                           json=body, headers=headers)
        if isinstance(reply, SendResult):
            return reply
        data = reply.json()
        message_id = dig(data, "data.id")
        if 200 <= reply.status < 300:
            return (SendResult.accepted(str(message_id)) if message_id
                    else SendResult.unknown(f"HTTP {reply.status} without a message id"))
        code = str(dig(data, "errors.0.code") or "")
        if code == OPTED_OUT:
            return SendResult.permanent(f"recipient opted out (Telnyx {OPTED_OUT})")
        reason = f"Telnyx error {code}: {dig(data, 'errors.0.title') or ''}" if code else reply.text()
        return failure(reply, reason)

    async def check(self) -> str:
        reply = await self._client.request("GET", f"{self._s.api_base_url}/v2/balance",
                                           headers=self._headers())
        if isinstance(reply, SendResult):
            raise ConnectionError(reply.error)
        if reply.status != 200:
            raise PermissionError(f"Telnyx answered HTTP {reply.status}: check the API key")
        return "telnyx API key accepted"

    async def close(self) -> None:
        await self._client.close()

    def media_access(self) -> MediaAccess:
        """Telnyx's media host; its links need no credentials and cannot be deleted by API."""
        return MediaAccess(self.name, tuple(self._s.media_hosts))

    def callback_endpoints(self) -> list[Endpoint]:
        return [Endpoint("", self._read)]

    def _verified(self, request: CallbackRequest) -> Any:
        signature = request.headers.get("telnyx-signature-ed25519")
        timestamp = request.headers.get("telnyx-timestamp")
        if not signature or not timestamp:
            raise Refused("no telnyx-signature-ed25519 or telnyx-timestamp")
        if not (timestamp.isascii() and timestamp.isdigit()):
            raise Refused("telnyx-timestamp is not a number")
        if abs(self._clock() - int(timestamp)) > self._s.replay_window_seconds:
            raise Refused("telnyx-timestamp outside the replay window")
        try:
            self._public_key.verify(base64.b64decode(signature, validate=True),
                                    timestamp.encode("ascii") + b"|" + request.body)
        except (InvalidSignature, binascii.Error, ValueError):
            raise Refused("telnyx-signature-ed25519 does not match") from None
        return json_limits.loads(request.body)

    def _read(self, request: CallbackRequest) -> Event:
        event = self._verified(request)
        kind = dig(event, "data.event_type")
        payload = dig(event, "data.payload") or {}
        message_id = dig(payload, "id")
        if kind == "message.received":
            sender, recipient = dig(payload, "from.phone_number"), dig(payload, "to.0.phone_number")
            if not sender or not recipient or not message_id:
                raise ValueError("message.received without from, to or id")
            return InboundText(sender=str(sender), recipient=str(recipient),
                               body=str(dig(payload, "text") or ""), gateway_id=str(message_id),
                               media=_media(dig(payload, "media")))
        if kind in ("message.sent", "message.finalized") and message_id:
            status = STATUSES.get(str(dig(payload, "to.0.status")))
            if status is None:
                return None
            code = dig(payload, "errors.0.code")
            return DeliveryStatus(str(message_id), status, None if code is None else str(code))
        return None
