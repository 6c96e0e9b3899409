"""The `kannel` gateway: a Kannel smsbox in front of an SMSC, modem or SMPP link.

Send: GET {sendsms_url}?username&password&from&to&text&charset=UTF-8&coding,
with coding 2 (UCS-2) only when a character is outside GSM-7 (textback/core/segments.py).
smsbox answers 202 "0: Accepted for delivery" and gives no message id, so
the gateway makes one, puts it in the dlr-url, and Kannel hands it back with
each delivery report (dlr-mask). Kannel has no idempotency key either.

Inbound (MO): an `sms-service` with `get-url` pointing at /kannel/inbound
with the shared token, %p (sender), %P (receiver), %b (the text as sent),
%C (its charset) and %I (Kannel's message id, kept across smsbox's own
retries: set http-request-retry in the smsbox group so a failed webhook is
tried again). docs/gateways.md has the whole configuration.
"""

from __future__ import annotations

import codecs
import uuid
from typing import Mapping
from urllib.parse import unquote_to_bytes, urlencode

from pydantic import SecretStr

from sms_gateway.base import InboundText, OutgoingText, SendResult
from sms_gateway.http import Client, failure
from textback.core.segments import count_segments
from sms_gateway.settings import KannelSettings
from sms_gateway.callbacks import (DeliveryState, DeliveryStatus, Endpoint, Event, CallbackRequest,
                                  check_token)

# Kannel's DLR types (the %d escape).
DLR_TYPES: dict[str, DeliveryState] = {
    "1": "delivered", "2": "undelivered", "4": "queued", "8": "sent", "16": "failed"}
FAILED_TYPES = {"2", "16"}


def raw_params(raw_query: str) -> dict[str, bytes]:
    """Query parameters as bytes: Kannel's %b is the text in its own charset, not UTF-8."""
    params: dict[str, bytes] = {}
    for pair in raw_query.split("&"):
        key, _, value = pair.partition("=")
        params.setdefault(key, unquote_to_bytes(value.replace("+", " ")))
    return params


def decode_text(data: bytes, charset: str) -> str:
    """Text from Kannel in the charset it named (%C); unknown charsets are read as UTF-8."""
    try:
        codec = codecs.lookup(charset or "utf-8").name
    except LookupError:
        codec = "utf-8"
    return data.decode(codec, "replace")


class KannelGateway:
    name = "kannel"

    def __init__(self, settings: KannelSettings, secrets: Mapping[str, SecretStr],
                 public_base_url: str | None = None):
        self._s = settings
        self._password = secrets["password"]
        self._token = secrets["webhook_token"]
        base = settings.callback_base_url or public_base_url
        self._status_url = f"{base.rstrip('/')}/kannel/status" if base else None
        self._client = Client(settings.timeout_seconds)

    def _dlr_url(self, message_id: str) -> str:
        query = urlencode({"token": self._token.get_secret_value(), "id": message_id})
        return f"{self._status_url}?{query}&type=%d&reply=%A"

    async def send(self, text: OutgoingText) -> SendResult:
        message_id = uuid.uuid4().hex
        ucs2 = count_segments(text.body).encoding == "UCS-2"
        params = {"username": self._s.username, "password": self._password.get_secret_value(),
                  "from": self._s.senders.get(text.sender, text.sender), "to": text.recipient,
                  "text": text.body, "charset": "UTF-8", "coding": "2" if ucs2 else "0"}
        if self._s.smsc_id:
            params["smsc"] = self._s.smsc_id
        if self._status_url and self._s.dlr_mask:
            params["dlr-mask"] = str(self._s.dlr_mask)
            params["dlr-url"] = self._dlr_url(message_id)
        reply = await self._client.request("GET", self._s.sendsms_url, params=params)
        if isinstance(reply, SendResult):
            return reply
        if 200 <= reply.status < 300:
            return SendResult.accepted(message_id)
        return failure(reply, reply.text())

    async def check(self) -> str:
        """Log in without a receiver: smsbox refuses the text (400) only once the login is good."""
        reply = await self._client.request("GET", self._s.sendsms_url, params={
            "username": self._s.username, "password": self._password.get_secret_value()})
        if isinstance(reply, SendResult):
            raise ConnectionError(reply.error)
        if reply.status == 403:
            raise PermissionError(f"smsbox refused user {self._s.username!r}: {reply.text()}")
        if reply.status != 400:
            raise ConnectionError(f"unexpected answer from smsbox: HTTP {reply.status} {reply.text()}")
        return f"kannel smsbox at {self._s.sendsms_url}, user {self._s.username}"

    async def close(self) -> None:
        await self._client.close()

    def callback_endpoints(self) -> list[Endpoint]:
        return [Endpoint("/inbound", self._read_inbound, methods=("GET",)),
                Endpoint("/status", self._read_status, methods=("GET",))]

    def _read_inbound(self, request: CallbackRequest) -> Event:
        check_token(request, self._token)
        params = raw_params(request.raw_query)
        sender = params.get("from", b"").decode("utf-8", "replace")
        recipient = params.get("to", b"").decode("utf-8", "replace")
        if not sender or not recipient:
            raise ValueError("no 'from' or 'to' (check the sms-service get-url)")
        charset = params.get("charset", b"").decode("ascii", "replace")
        gateway_id = params.get("id", b"").decode("ascii", "replace") or None
        return InboundText(sender=sender, recipient=recipient,
                           body=decode_text(params.get("text", b""), charset), gateway_id=gateway_id)

    def _read_status(self, request: CallbackRequest) -> Event:
        check_token(request, self._token)
        message_id, kind = request.query.get("id"), request.query.get("type", "")
        status = DLR_TYPES.get(kind)
        if not message_id or status is None:
            return None
        error = request.query.get("reply", "")[:60] if kind in FAILED_TYPES else ""
        return DeliveryStatus(message_id, status, error or None)
