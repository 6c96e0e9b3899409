"""HTTP plumbing shared by the HTTP backends, and the generic `http` backend.

Every backend sorts a provider's answer the same way (docs/gateways.md):

- the request never left (connection refused or timed out, DNS): retryable;
- no answer after the request went out (timeout, reset): unknown, because the
  provider may have taken it and a retry could text the caller twice;
- 429: retryable, honouring Retry-After; 5xx: retryable;
- any other 4xx: permanent;
- 2xx: accepted, with the provider's id for the text.

The generic backend is configured entirely in YAML (settings.HttpSettings):
URL, method, auth, body format, field names, where the id is in the answer,
and the field names of the inbound and delivery-report webhooks.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import parse_qsl

import aiohttp
import phonenumbers
from multidict import CIMultiDictProxy
from pydantic import SecretStr

from sms_gateway import json_limits
from sms_gateway.base import InboundMedia, InboundText, MmsLimits, OutgoingText, SendResult
from sms_gateway.media import MediaAccess
from sms_gateway.settings import HttpInboundMedia, HttpSettings
from sms_gateway.callbacks import DeliveryStatus, Endpoint, Event, CallbackRequest, check_token
from textback.core.delivery import parse_retry_after

log = logging.getLogger("textback.gateway.http")


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON, or None if it is not JSON."""
        try:
            return json_limits.loads(self.body)
        except ValueError:
            return None

    def text(self, limit: int = 200) -> str:
        return self.body[:limit].decode("utf-8", "replace").strip()


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), capped."""
    return parse_retry_after(value, time.time())


def failure(reply: Reply, reason: str) -> SendResult:
    """The SendResult for a non-2xx answer; `reason` is what the provider said, for the log."""
    error = f"HTTP {reply.status}: {reason}" if reason else f"HTTP {reply.status}"
    if reply.status == 429:
        return SendResult.retryable(error, retry_after(reply.headers.get("Retry-After")))
    if reply.status >= 500:
        return SendResult.retryable(error, retry_after(reply.headers.get("Retry-After")))
    return SendResult.permanent(error)


class Client:
    """One aiohttp session per backend, opened on first use (it needs the running loop).

    Its errors may quote a request URL; the daemon masks secrets in them before they are
    stored or logged (textback.redact), as `textback check` does before printing.
    """

    def __init__(self, timeout: float):
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def request(self, method: str, url: str, **kwargs: Any) -> Reply | SendResult:
        """The provider's reply, or the SendResult of a transport failure."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.request(method, url, allow_redirects=False, **kwargs) as resp:
                return Reply(resp.status, resp.headers, await resp.read())
        except aiohttp.ClientConnectorError as exc:
            return SendResult.retryable(f"cannot connect: {exc.os_error or exc}")
        except aiohttp.ConnectionTimeoutError:
            return SendResult.retryable("no connection in time")
        except TimeoutError:
            return SendResult.unknown("no answer in time; the provider may have sent it")
        except aiohttp.ClientResponseError as exc:  # not valid HTTP: its text would quote the URL
            said = (exc.message or "").splitlines()[0] if exc.message else ""
            return SendResult.unknown(
                f"{type(exc).__name__} after the request was sent: {exc.status} {said}".strip())
        except aiohttp.ClientError as exc:
            return SendResult.unknown(f"{type(exc).__name__} after the request was sent: {exc}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def basic_auth(username: str, password: SecretStr) -> str:
    """An Authorization header value for HTTP Basic auth."""
    pair = f"{username}:{password.get_secret_value()}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def dig(data: Any, path: str) -> Any:
    """The value at a dotted path ('data.attributes.from', 'to.0.phone_number'), or None."""
    for part in path.split("."):
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list) and part.isascii() and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _media(values: Mapping[str, Any], fields: HttpInboundMedia) -> tuple[InboundMedia, ...]:
    """The media a generic webhook lists, by the configured field names."""
    if fields.list_path is not None:
        listed = dig(values, fields.list_path)
        if listed in (None, "", []):
            return ()
        if not isinstance(listed, list):
            raise ValueError(f"{fields.list_path!r} is not a list")
        entries = [(dig(e, fields.url), dig(e, fields.type), dig(e, fields.size) if fields.size
                    else None) for e in listed]
    else:
        entries = []
        n = fields.first
        while (url := dig(values, fields.url.replace("{n}", str(n)))) not in (None, ""):
            size = dig(values, fields.size.replace("{n}", str(n))) if fields.size else None
            entries.append((url, dig(values, fields.type.replace("{n}", str(n))), size))
            n += 1
            if len(entries) > fields.max_items:
                break
    if len(entries) > fields.max_items:
        raise ValueError(f"more than {fields.max_items} media items")
    items = []
    for url, declared, size in entries:
        if not isinstance(url, str) or not url:
            raise ValueError("a media item has no URL")
        size = int(size) if isinstance(size, (int, str)) and str(size).isdigit() else None
        items.append(InboundMedia(url, str(declared or ""), size))
    return tuple(items)


def format_number(e164: str, style: str) -> str:
    """An E.164 number as a provider wants it: as is, without '+', or national digits."""
    if style == "e164":
        return e164
    if style == "digits":
        return e164.lstrip("+")
    return str(phonenumbers.parse(e164, None).national_number)


class HttpGateway:
    """A provider described in YAML (settings.HttpSettings)."""

    name = "http"

    def __init__(self, settings: HttpSettings, secrets: Mapping[str, SecretStr]):
        self._s = settings
        self._secrets = secrets
        self._client = Client(settings.timeout_seconds)
        # MMS only when configured (`http.mms`): see sms_gateway.base.mms_limits.
        self.mms = (MmsLimits(settings.mms.max_items, settings.mms.max_bytes)
                    if settings.mms is not None else None)

    def _fields(self, text: OutgoingText) -> dict[str, Any]:
        s = self._s
        sender = s.senders.get(text.sender, text.sender)
        fields = dict(s.constants)
        fields.update({name: self._secrets[f"secret_fields.{name}"].get_secret_value()
                       for name in s.secret_fields})
        fields[s.fields.to] = format_number(text.recipient, s.number_format)
        fields[s.fields.sender] = (format_number(sender, s.number_format)
                                   if sender.startswith("+") else sender)
        fields[s.fields.text] = text.body
        if text.media_urls and s.mms is not None:
            fields.update(s.mms.constants)
            if s.mms.style == "list":
                fields[s.mms.field] = list(text.media_urls)
            else:
                fields.update({s.mms.field.replace("{n}", str(n)): url
                               for n, url in enumerate(text.media_urls, start=1)})
        return fields

    def _headers(self) -> dict[str, str]:
        auth = self._s.auth
        if auth.type == "basic":
            return {"Authorization": basic_auth(auth.username, self._secrets["auth.password"])}
        if auth.type == "bearer":
            return {"Authorization": f"Bearer {self._secrets['auth.token'].get_secret_value()}"}
        if auth.type == "header":
            return {auth.header: self._secrets["auth.token"].get_secret_value()}
        return {}

    async def send(self, text: OutgoingText) -> SendResult:
        s = self._s
        headers = self._headers()
        key = getattr(text, "idempotency_key", None)
        if key and s.idempotency_header:
            headers[s.idempotency_header] = key
        fields = self._fields(text)
        kwargs: dict[str, Any] = {"headers": headers}
        if s.body == "query":
            kwargs["params"] = fields
        elif s.body == "form":
            kwargs["data"] = fields
        else:
            kwargs["data"] = json.dumps(fields)
            headers["Content-Type"] = s.content_type or "application/json"
        reply = await self._client.request(s.method, s.url, **kwargs)
        if isinstance(reply, SendResult):
            return reply
        if not 200 <= reply.status < 300:
            return failure(reply, reply.text())
        data = reply.json()
        if s.response.ok_path is not None:
            verdict = dig(data, s.response.ok_path)
            if str(verdict) not in s.response.ok_values:
                return SendResult.permanent(f"provider refused: {s.response.ok_path}={verdict!r}")
        gateway_id = dig(data, s.response.id_path) if s.response.id_path else None
        return SendResult.accepted(None if gateway_id is None else str(gateway_id))

    async def check(self) -> str:
        return f"http gateway posting to {self._s.url} (not called by check: it would send a text)"

    async def close(self) -> None:
        await self._client.close()

    def callback_endpoints(self) -> list[Endpoint]:
        if self._s.inbound is None:
            return []
        endpoints = [Endpoint("/inbound", self._read_inbound, methods=("GET", "POST"),
                              reply_body=self._s.inbound.reply)]
        if self._s.status is not None:
            endpoints.append(Endpoint("/status", self._read_status, methods=("GET", "POST")))
        return endpoints

    def _values(self, request: CallbackRequest) -> Mapping[str, Any]:
        check_token(request, self._secrets["inbound.token"])
        values: dict[str, Any] = dict(request.query)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if request.body and content_type.endswith("json"):
            data = json_limits.loads(request.body)
            if not isinstance(data, dict):
                raise ValueError("the JSON body is not an object")
            values.update(data)
        elif request.body:
            values.update(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
        return values

    def _read_inbound(self, request: CallbackRequest) -> Event:
        fields = self._s.inbound
        values = self._values(request)
        sender, recipient = dig(values, fields.sender), dig(values, fields.recipient)
        if not sender or not recipient:
            raise ValueError(f"no {fields.sender!r} or {fields.recipient!r} field")
        gateway_id = dig(values, fields.id) if fields.id else None
        return InboundText(sender=str(sender), recipient=str(recipient),
                           body=str(dig(values, fields.text) or ""),
                           gateway_id=None if gateway_id in (None, "") else str(gateway_id),
                           media=() if fields.media is None else _media(values, fields.media))

    def media_access(self) -> MediaAccess | None:
        """The hosts `inbound.media` names; the provider's links need no credentials."""
        if self._s.inbound is None or self._s.inbound.media is None:
            return None
        return MediaAccess(self.name, tuple(self._s.inbound.media.hosts))

    def _read_status(self, request: CallbackRequest) -> Event:
        fields = self._s.status
        values = self._values(request)
        gateway_id = dig(values, fields.id)
        status = fields.status_map.get(str(dig(values, fields.status)))
        if gateway_id in (None, "") or status is None:
            return None
        error = dig(values, fields.error_code) if fields.error_code else None
        return DeliveryStatus(str(gateway_id), status, None if error in (None, "") else str(error))
