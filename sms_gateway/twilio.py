"""The `twilio` gateway: Programmable Messaging over Twilio's REST API.

Send: POST {api}/2010-04-01/Accounts/{AccountSid}/Messages.json, form-encoded,
Basic auth AccountSid:AuthToken, with To, Body, From or MessagingServiceSid,
and StatusCallback. Twilio has no idempotency key for creating a message, so
a send whose answer was lost is `unknown`, never retried.

Webhooks (/twilio/inbound, /twilio/status) carry X-Twilio-Signature:
base64(HMAC-SHA1(AuthToken, public URL + each POST key and value, sorted by
key)). Twilio adds parameters without notice, so every parameter is signed
over, and the URL must be the one Twilio called: behind a proxy, configure
the public base URL.

A Webhook Setting may sign with a SharedKey instead, and HMAC-SHA256 (or
HMAC-SHA1); Twilio then announces it in X-Twilio-Webhooks-Signature-Settings:
key=<SharedKey id>,algorithm=HMAC_SHA256. The signed string is the same. A
webhook with a JSON body is signed over its URL alone, which carries
bodySHA256, the hex SHA-256 of the raw body. A header naming a key or an
algorithm that is not configured is refused as NotConfigured (403, an error
line and an incident): it is Twilio's configuration or a forgery, and either
way a person must look.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Mapping
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from pydantic import SecretStr

from sms_gateway import json_limits
from sms_gateway.base import InboundMedia, InboundText, MmsLimits, OutgoingText, SendResult
from sms_gateway.http import Client, basic_auth, dig, failure
from sms_gateway.media import MediaAccess
from sms_gateway.settings import TwilioSettings
from sms_gateway.callbacks import (DeliveryState, DeliveryStatus, Endpoint, Event, NotConfigured,
                                  Refused, CallbackRequest)

OPTED_OUT = 21610  # the recipient replied STOP
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

STATUSES: dict[str, DeliveryState] = {
    "accepted": "queued", "scheduled": "queued", "queued": "queued", "sending": "queued",
    "sent": "sent", "delivered": "delivered", "read": "delivered",
    "undelivered": "undelivered", "failed": "failed", "canceled": "failed",
}
DEFAULT_PORTS = {"https": 443, "http": 80}
MAX_MEDIA = 10  # Twilio's limit of media items in one message

# The signature joins keys and values without separators, so moving characters across a
# boundary ("MessageSid=SM…NumMedia0" for "MessageSid=SM…", "NumMedia=0") keeps it valid.
# Fields of known shape are checked, and every key must look like one of Twilio's, so a
# shifted field is refused; Twilio's new parameters (CamelCase names) still pass.
_KEY = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_FIELD_SHAPES = {
    "MessageSid": r"(SM|MM)[0-9a-f]{32}", "SmsSid": r"(SM|MM)[0-9a-f]{32}",
    "SmsMessageSid": r"(SM|MM)[0-9a-f]{32}", "AccountSid": r"AC[0-9a-f]{32}",
    "MessagingServiceSid": r"MG[0-9a-f]{32}", "ApiVersion": r"\d{4}-\d{2}-\d{2}",
    "NumMedia": r"\d{1,2}", "NumSegments": r"\d{1,3}", "ErrorCode": r"\d{0,6}",
    "From": r"(whatsapp:)?\+?[0-9]{3,15}", "To": r"(whatsapp:)?\+?[0-9]{3,15}",
    "SmsStatus": r"[a-z_]{1,20}", "MessageStatus": r"[a-z_]{1,20}",
    "FromCountry": r"[A-Z]{0,2}", "ToCountry": r"[A-Z]{0,2}",
}


SIGNATURE_SETTINGS = "X-Twilio-Webhooks-Signature-Settings"
ALGORITHMS = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}


def signature(key: str, url: str, params: list[tuple[str, str]],
              algorithm: str = "HMAC_SHA1") -> str:
    """X-Twilio-Signature for a request to `url` with these POST parameters, signed with `key`
    (the AuthToken, or a Webhook Setting's SharedKey) by `algorithm`."""
    payload = url
    for key_name in sorted({k for k, _ in params}):
        for value in sorted({v for k, v in params if k == key_name}):
            payload += key_name + value
    digest = hmac.new(key.encode(), payload.encode("utf-8"), ALGORITHMS[algorithm]).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_settings(header: str) -> dict[str, str]:
    """`key=…,algorithm=…` as a dict; ValueError when it is not that shape."""
    fields: dict[str, str] = {}
    for part in header.split(","):
        name, equals, value = part.strip().partition("=")
        if not equals or not name or name in fields:
            raise ValueError("not key=…,algorithm=…")
        fields[name.strip().lower()] = value.strip()
    if not fields.get("key") or not fields.get("algorithm"):
        raise ValueError("no key or no algorithm")
    return fields


def _shown(value: str) -> str:
    """A value from a request, fit for a log line: printable, short, quoted."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in value[:60])
    return repr(cleaned + ("…" if len(value) > 60 else ""))


def _url_variants(url: str) -> list[str]:
    """The URL with and without its scheme's default port: Twilio may sign either."""
    parts = urlsplit(url)
    default = DEFAULT_PORTS.get(parts.scheme)
    if default is None:
        return [url]
    if parts.port is None:
        other = parts._replace(netloc=f"{parts.netloc}:{default}")
    elif parts.port == default:
        other = parts._replace(netloc=parts.netloc.rsplit(":", 1)[0])
    else:
        return [url]
    return [url, urlunsplit(other)]


def _json_fields(body: bytes) -> list[tuple[str, str]]:
    """A JSON webhook's top-level fields as the form's (name, text) pairs; ValueError otherwise."""
    data = json_limits.loads(body)
    if not isinstance(data, dict):
        raise ValueError("the JSON body is not an object")
    fields = []
    for name, value in data.items():
        if isinstance(value, (dict, list)):
            raise ValueError(f"the JSON field {_shown(str(name))} is not a plain value")
        fields.append((str(name), "" if value is None else
                       json.dumps(value) if isinstance(value, bool) else str(value)))
    return fields


def _media(form: Mapping[str, str]) -> tuple[InboundMedia, ...]:
    """NumMedia items, MediaUrl{N} with MediaContentType{N}; Twilio gives no sizes."""
    count = int(form.get("NumMedia") or 0)
    if count > MAX_MEDIA:
        raise ValueError(f"NumMedia {count} is more than Twilio's {MAX_MEDIA}")
    items = []
    for n in range(count):
        url, declared = form.get(f"MediaUrl{n}"), form.get(f"MediaContentType{n}", "")
        if not url:
            raise ValueError(f"NumMedia is {count} but MediaUrl{n} is missing")
        items.append(InboundMedia(url, declared))
    return tuple(items)


class TwilioGateway:
    name = "twilio"
    # Messages resource: up to 10 MediaUrl, all media together at most 5 MB (twilio.com/docs/
    # messaging/api/media-resource); Twilio fetches each URL itself.
    mms = MmsLimits(MAX_MEDIA, 5_000_000)

    def __init__(self, settings: TwilioSettings, secrets: Mapping[str, SecretStr],
                 public_base_url: str | None = None):
        self._s = settings
        self._token = secrets["auth_token"]
        self._shared_key = secrets.get("shared_key")
        self._status_url = (f"{public_base_url.rstrip('/')}/twilio/status"
                            if public_base_url and settings.status_callback else None)
        self._messages_url = (f"{settings.api_base_url}/2010-04-01/Accounts/"
                              f"{settings.account_sid}/Messages.json")
        self._client = Client(settings.timeout_seconds)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": basic_auth(self._s.account_sid, self._token)}

    def _sender_fields(self, business_number: str) -> dict[str, str]:
        sender = self._s.senders.get(business_number) or self._s.default_sender or business_number
        if sender.startswith("MG"):
            return {"MessagingServiceSid": sender}
        return {"From": sender}

    async def send(self, text: OutgoingText) -> SendResult:
        fields = {"To": text.recipient, **self._sender_fields(text.sender)}
        if text.body or not text.media_urls:  # an MMS may be photos only
            fields["Body"] = text.body
        if self._status_url:
            fields["StatusCallback"] = self._status_url
        form = [*fields.items(), *(("MediaUrl", url) for url in text.media_urls)]
        reply = await self._client.request("POST", self._messages_url, data=form, headers=self._auth())
        if isinstance(reply, SendResult):
            return reply
        data = reply.json()
        data = data if isinstance(data, dict) else {}
        if 200 <= reply.status < 300 and data.get("sid"):
            return SendResult.accepted(str(data["sid"]))
        if 200 <= reply.status < 300:
            return SendResult.unknown(f"HTTP {reply.status} without a message sid")
        code = data.get("code")
        reason = f"Twilio error {code}: {data.get('message', '')}" if code else reply.text()
        if code == OPTED_OUT:
            return SendResult.permanent(f"recipient opted out (Twilio {OPTED_OUT})")
        return failure(reply, reason)

    async def check(self) -> str:
        url = f"{self._s.api_base_url}/2010-04-01/Accounts/{self._s.account_sid}.json"
        reply = await self._client.request("GET", url, headers=self._auth())
        if isinstance(reply, SendResult):
            raise ConnectionError(reply.error)
        if reply.status != 200:
            raise PermissionError(f"Twilio answered HTTP {reply.status} for account "
                                  f"{self._s.account_sid}: check the auth token")
        status = dig(reply.json(), "status") or "?"
        return f"twilio account {self._s.account_sid} ({status})"

    async def close(self) -> None:
        await self._client.close()

    def media_access(self) -> MediaAccess:
        """Twilio's media hosts (its API, then the media host it redirects to); the account's
        credentials go to the API host only, and a fetched item may be deleted there."""
        return MediaAccess(self.name, tuple(self._s.media_hosts), auth_hosts=(
            urlsplit(self._s.api_base_url).hostname or "",), auth=self._auth(), deletable=True)

    def callback_endpoints(self) -> list[Endpoint]:
        return [Endpoint("/inbound", self._read_inbound, reply_body=EMPTY_TWIML,
                         reply_type="text/xml"),
                Endpoint("/status", self._read_status)]

    def _signing(self, request: CallbackRequest) -> tuple[str, str]:
        """The key and algorithm the request must be signed with: the AuthToken and HMAC-SHA1,
        or the configured SharedKey when the Signature-Settings header names it."""
        announced = request.headers.get(SIGNATURE_SETTINGS)
        if announced is None:
            return self._token.get_secret_value(), "HMAC_SHA1"
        try:
            settings = signature_settings(announced)
        except ValueError as exc:
            raise NotConfigured(f"{SIGNATURE_SETTINGS} is unreadable ({exc})") from None
        key, algorithm = settings["key"], settings["algorithm"]
        if self._shared_key is None:
            raise NotConfigured(f"Twilio signed with SharedKey {_shown(key)}, and no "
                                "twilio.shared_key is configured")
        if key != self._s.shared_key_id:
            raise NotConfigured(f"Twilio signed with SharedKey {_shown(key)}, not the configured "
                                f"twilio.shared_key_id {self._s.shared_key_id!r}")
        if algorithm != self._s.shared_key_algorithm:
            raise NotConfigured(f"Twilio signed with {_shown(algorithm)}, not the configured "
                                f"twilio.shared_key_algorithm {self._s.shared_key_algorithm}")
        return self._shared_key.get_secret_value(), algorithm

    def _verified(self, request: CallbackRequest) -> dict[str, str]:
        given = request.headers.get("X-Twilio-Signature")
        if not given:
            raise Refused("no X-Twilio-Signature")
        key, algorithm = self._signing(request)
        body_digest = request.query.get("bodySHA256")
        if body_digest is not None:  # a JSON body: the URL is signed, and names the body's hash
            signed: list[tuple[str, str]] = []
        else:
            try:
                signed = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True,
                                   strict_parsing=bool(request.body))
            except (UnicodeDecodeError, ValueError):
                raise Refused("body is not form-encoded") from None
        if not any(hmac.compare_digest(signature(key, url, signed, algorithm).encode(),
                                       given.encode())
                   for url in _url_variants(request.public_url)):
            raise Refused("X-Twilio-Signature does not match")
        if body_digest is None:
            return self._well_formed(signed)
        if not hmac.compare_digest(hashlib.sha256(request.body).hexdigest(), body_digest.lower()):
            raise Refused("bodySHA256 does not match the body")
        return self._well_formed(_json_fields(request.body))

    def _well_formed(self, params: list[tuple[str, str]]) -> dict[str, str]:
        """Signed fields in Twilio's own shapes: a replay with shifted fields is refused."""
        form = dict(params)
        if len(form) != len(params):
            raise Refused("a parameter is repeated")
        for key, value in form.items():
            if not _KEY.match(key):
                raise Refused("a parameter name is not one of Twilio's")
            shape = _FIELD_SHAPES.get(key)
            if shape is not None and not re.fullmatch(shape, value):
                raise Refused(f"{key} is not in Twilio's format")
        if form.get("AccountSid", self._s.account_sid) != self._s.account_sid:
            raise Refused("AccountSid is not this account")
        sids = {form[k] for k in ("MessageSid", "SmsSid", "SmsMessageSid") if k in form}
        if len(sids) > 1:
            raise Refused("the message sids disagree")
        return form

    def _read_inbound(self, request: CallbackRequest) -> Event:
        form = self._verified(request)
        if not form.get("From") or not form.get("To") or not form.get("MessageSid"):
            raise ValueError("no From, To or MessageSid")
        return InboundText(sender=form["From"], recipient=form["To"], body=form.get("Body", ""),
                           gateway_id=form["MessageSid"], media=_media(form))

    def _read_status(self, request: CallbackRequest) -> Event:
        form = self._verified(request)
        status = STATUSES.get(form.get("MessageStatus", ""))
        sid = form.get("MessageSid") or form.get("SmsSid")
        if status is None or not sid:
            return None
        return DeliveryStatus(sid, status, form.get("ErrorCode") or None)
