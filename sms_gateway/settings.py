"""The YAML sections of the HTTP gateways and of the webhook server.

Same rules as textback.config: unknown keys are errors, and secrets are
never written inline but referenced (file or env) and resolved at load, so a
missing secret fails `textback check` instead of the first text.

Each gateway section lists its secrets through `secret_refs()`, keyed by
their dotted path inside the section; the gateway receives the resolved
values under the same keys.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import Field, SecretStr, field_validator, model_validator

from textback.core.numbers import to_e164
from textback.config_schema import SecretRef, Strict

Url = str  # checked by _http_url
Sender = str  # an E.164 number, a Twilio Messaging Service SID or an alphanumeric sender id

_HTTP_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s#]*)?$")
_TWILIO_SENDER = re.compile(r"^(MG[0-9a-fA-F]{32}|\+[1-9]\d{6,14})$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


def _http_url(value: str) -> str:
    if not _HTTP_URL.match(value):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value.rstrip("/")


def _base_url(value: str) -> str:
    """A URL that paths are appended to: no query string."""
    if "?" in value:
        raise ValueError(f"{value!r}: a base URL has no query string")
    return _http_url(value)


_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$|^\[[0-9A-Fa-f:.]+\]$")

# The hosts each provider serves inbound media from (docs/gateways.md): Twilio's MediaUrl is on
# its API host and answers with a redirect to its media host.
TWILIO_MEDIA_HOSTS = ["api.twilio.com", "mms.twiliocdn.com", "media.twiliocdn.com"]
TELNYX_MEDIA_HOSTS = ["media.telnyx.com"]


def _media_hosts(value: list[str]) -> list[str]:
    """Host names (no scheme, port or path), lower case."""
    for host in value:
        if not _HOST.match(host):
            raise ValueError(f"{host!r} is not a host name (give the name only: no scheme, port "
                             f"or path)")
    return [host.lower() for host in value]


def _senders(value: dict[str, str]) -> dict[str, str]:
    """Keys are business numbers, reduced to canonical E.164 so they match however they were written."""
    canonical = {}
    for number, sender in value.items():
        e164 = to_e164(number, None)
        if e164 is None:
            raise ValueError(f"{number!r}: keys are business numbers in E.164 form (+ and country code)")
        if not sender.strip() or any(c in sender for c in "\r\n"):
            raise ValueError(f"{number!r}: the sender must be one line of text")
        canonical[e164] = sender
    return canonical


class CallbackSettings(Strict):
    """Where providers reach textback. Put it behind a TLS reverse proxy for Twilio and Telnyx."""

    listen_host: str = "127.0.0.1"
    listen_port: int = Field(8780, ge=1, le=65535)
    # The URL the providers call, as seen from outside the proxy (the signed URL for Twilio).
    public_base_url: Url
    max_body_bytes: int = Field(65536, ge=1024, le=1048576)
    # Past this many open connections a new one gets a 503 (each costs a file descriptor).
    max_connections: int = Field(100, ge=1, le=10000)
    # How long a client may take to send a request head, and then its body.
    header_timeout_seconds: float = Field(10.0, gt=0, le=300)
    body_timeout_seconds: float = Field(10.0, gt=0, le=300)
    # An idle keep-alive connection is closed after this.
    keepalive_seconds: float = Field(15.0, gt=0, le=3600)

    @field_validator("public_base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _base_url(value)


class TwilioSettings(Strict):
    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: SecretRef
    # A Webhook Setting's SharedKey: Twilio then signs with it instead of the AuthToken, and
    # says so in X-Twilio-Webhooks-Signature-Settings (key=<shared_key_id>,algorithm=...).
    shared_key: SecretRef | None = None
    shared_key_id: str | None = Field(None, min_length=1, max_length=100,
                                      pattern=r"^[A-Za-z0-9_.:-]+$")
    shared_key_algorithm: Literal["HMAC_SHA256", "HMAC_SHA1"] = "HMAC_SHA256"
    api_base_url: Url = "https://api.twilio.com"
    # Default sender for every business number: a Messaging Service SID (MG...) or a number.
    # Without it a text goes out from the number the caller dialled.
    default_sender: Sender | None = Field(None, pattern=_TWILIO_SENDER.pattern)
    senders: dict[str, Sender] = Field(default_factory=dict)  # business number -> sender
    status_callback: bool = True
    timeout_seconds: float = Field(15.0, gt=0, le=120)
    # Where inbound photos may be fetched from; nothing else is ever asked (media.hosts).
    media_hosts: list[str] = Field(default_factory=lambda: list(TWILIO_MEDIA_HOSTS))

    @field_validator("api_base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _base_url(value)

    @field_validator("media_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return _media_hosts(value)

    @field_validator("senders")
    @classmethod
    def _per_number(cls, value: dict[str, str]) -> dict[str, str]:
        canonical = _senders(value)
        for number, sender in canonical.items():
            if not _TWILIO_SENDER.match(sender):
                raise ValueError(f"{number!r}: a Twilio sender is a number (+...) or a "
                                 f"Messaging Service SID (MG...)")
        return canonical

    @model_validator(mode="after")
    def _shared_key_named(self) -> "TwilioSettings":
        if (self.shared_key is None) != (self.shared_key_id is None):
            raise ValueError("shared_key and shared_key_id go together: the secret of a Webhook "
                             "Setting's SharedKey, and the key Twilio names in "
                             "X-Twilio-Webhooks-Signature-Settings")
        return self

    def secret_refs(self) -> dict[str, SecretRef]:
        refs = {"auth_token": self.auth_token}
        if self.shared_key is not None:
            refs["shared_key"] = self.shared_key
        return refs


class TelnyxSettings(Strict):
    api_key: SecretRef
    # The account's Ed25519 public key (base64), from the portal's Keys & Credentials page.
    public_key: str = Field(pattern=r"^[A-Za-z0-9+/]{43}=$")
    api_base_url: Url = "https://api.telnyx.com"
    messaging_profile_id: str | None = None
    senders: dict[str, Sender] = Field(default_factory=dict)
    status_callback: bool = True
    replay_window_seconds: int = Field(300, ge=30, le=900)
    timeout_seconds: float = Field(15.0, gt=0, le=120)
    media_hosts: list[str] = Field(default_factory=lambda: list(TELNYX_MEDIA_HOSTS))

    @field_validator("api_base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _base_url(value)

    @field_validator("media_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return _media_hosts(value)

    @field_validator("senders")
    @classmethod
    def _per_number(cls, value: dict[str, str]) -> dict[str, str]:
        return _senders(value)

    @field_validator("public_key")
    @classmethod
    def _ed25519(cls, value: str) -> str:
        try:
            Ed25519PublicKey.from_public_bytes(base64.b64decode(value))
        except ValueError:
            raise ValueError("not an Ed25519 public key (32 bytes, base64)") from None
        return value

    def secret_refs(self) -> dict[str, SecretRef]:
        return {"api_key": self.api_key}


class KannelSettings(Strict):
    sendsms_url: Url = "http://127.0.0.1:13013/cgi-bin/sendsms"
    username: str = Field(min_length=1)
    password: SecretRef
    # Shared secret Kannel puts in the get-url and dlr-url it calls back.
    webhook_token: SecretRef
    # Where Kannel reaches the webhook server, if not the public URL (Kannel is usually local).
    callback_base_url: Url | None = None
    dlr_mask: int = Field(31, ge=0, le=31)
    smsc_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    senders: dict[str, Sender] = Field(default_factory=dict)
    timeout_seconds: float = Field(15.0, gt=0, le=120)

    @field_validator("sendsms_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("callback_base_url")
    @classmethod
    def _callback(cls, value: str | None) -> str | None:
        return None if value is None else _base_url(value)

    @field_validator("senders")
    @classmethod
    def _per_number(cls, value: dict[str, str]) -> dict[str, str]:
        return _senders(value)

    def secret_refs(self) -> dict[str, SecretRef]:
        return {"password": self.password, "webhook_token": self.webhook_token}


class HttpAuth(Strict):
    type: Literal["none", "basic", "bearer", "header"] = "none"
    username: str | None = None  # basic
    password: SecretRef | None = None  # basic
    token: SecretRef | None = None  # bearer, header
    header: str | None = Field(None, pattern=_HEADER_NAME.pattern)  # header

    @model_validator(mode="after")
    def _complete(self) -> HttpAuth:
        needed = {"none": (), "basic": ("username", "password"), "bearer": ("token",),
                  "header": ("header", "token")}[self.type]
        missing = [name for name in needed if getattr(self, name) is None]
        if missing:
            raise ValueError(f"auth type {self.type!r} needs {', '.join(missing)}")
        extra = [name for name in ("username", "password", "token", "header")
                 if name not in needed and getattr(self, name) is not None]
        if extra:
            raise ValueError(f"auth type {self.type!r} does not use {', '.join(extra)}")
        return self


class HttpFields(Strict):
    """The provider's names for the three fields of a send request."""

    to: str = "to"
    sender: str = "from"
    text: str = "text"


class HttpMms(Strict):
    """Sending an owner's photos as MMS, for a provider whose API fetches media by URL.

    `field` names where the links go: one JSON list (`style: list`, body json only), or one
    field per link (`style: numbered`, `field` holding `{n}` from 1: media{n}). `constants`
    are sent, over the gateway's own, with a text that carries photos (VoIP.ms:
    `method: sendMMS`). The limits are the provider's for one MMS."""

    field: str = Field(pattern=r"^[A-Za-z0-9_.{}\[\]-]{1,64}$")
    style: Literal["list", "numbered"] = "list"
    max_items: int = Field(10, ge=1, le=10)
    max_bytes: int = Field(1_000_000, ge=10_000, le=5_000_000)
    constants: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _numbered(self) -> "HttpMms":
        if (self.style == "numbered") != ("{n}" in self.field):
            raise ValueError("a numbered field holds {n} (media{n}); a list field does not")
        return self


class HttpResponse(Strict):
    """How to read the provider's answer to a send (dotted paths into its JSON)."""

    id_path: str | None = "id"
    # Some APIs answer 200 with a failure in the body (VoIP.ms: "status": "invalid_dst").
    ok_path: str | None = None
    ok_values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _pair(self) -> HttpResponse:
        if (self.ok_path is None) != (not self.ok_values):
            raise ValueError("give both 'ok_path' and 'ok_values', or neither")
        return self


class HttpInboundMedia(Strict):
    """Where a provider's inbound webhook lists media, and the hosts it serves them from.

    Either `list_path` is the dotted path of a JSON list of objects, each with `url`, `type` and
    `size` fields; or, without `list_path`, `url` and `type` name numbered fields with {n}
    ("MediaUrl{n}"), counted from `first` until one is missing.
    """

    list_path: str | None = None
    url: str = "url"
    type: str = "content_type"
    size: str | None = None
    first: int = Field(0, ge=0, le=1)
    max_items: int = Field(10, ge=1, le=20)
    hosts: list[str] = Field(min_length=1)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return _media_hosts(value)

    @model_validator(mode="after")
    def _numbered(self) -> "HttpInboundMedia":
        if self.list_path is None and ("{n}" not in self.url or "{n}" not in self.type):
            raise ValueError("without 'list_path', 'url' and 'type' are numbered field names with {n}")
        return self


class HttpInbound(Strict):
    """Field names (dotted paths for JSON) of the provider's inbound-text webhook."""

    token: SecretRef
    sender: str = "from"
    recipient: str = "to"
    text: str = "text"
    id: str | None = "id"
    reply: str = "ok"  # VoIP.ms wants the body "ok"
    media: HttpInboundMedia | None = None  # photos: where their links are in the webhook


class HttpStatus(Strict):
    """Field names of the provider's delivery-report webhook, and its status words."""

    id: str = "id"
    status: str = "status"
    error_code: str | None = None
    status_map: dict[str, Literal["queued", "sent", "delivered", "undelivered", "failed"]] = Field(
        default_factory=lambda: {s: s for s in ("queued", "sent", "delivered", "undelivered", "failed")})


class HttpSettings(Strict):
    """A provider with a plain HTTP API, described in YAML (VoIP.ms and Flowroute in docs/gateways.md)."""

    url: Url
    method: Literal["POST", "GET"] = "POST"
    body: Literal["json", "form", "query"] = "json"
    content_type: str | None = Field(None, pattern=r"^[\w.+-]+/[\w.+-]+$")  # JSON flavour override
    auth: HttpAuth = HttpAuth()
    fields: HttpFields = HttpFields()
    constants: dict[str, str] = Field(default_factory=dict)  # sent with every request
    secret_fields: dict[str, SecretRef] = Field(default_factory=dict)  # e.g. VoIP.ms api_password
    number_format: Literal["e164", "digits", "national"] = "e164"
    senders: dict[str, Sender] = Field(default_factory=dict)
    # For providers that deduplicate retries by a key header (often "Idempotency-Key").
    idempotency_header: str | None = Field(None, pattern=_HEADER_NAME.pattern)
    response: HttpResponse = HttpResponse()
    inbound: HttpInbound | None = None
    status: HttpStatus | None = None
    # An owner's photos as MMS; without it this gateway texts words only.
    mms: HttpMms | None = None
    timeout_seconds: float = Field(15.0, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("senders")
    @classmethod
    def _per_number(cls, value: dict[str, str]) -> dict[str, str]:
        return _senders(value)

    @model_validator(mode="after")
    def _consistent(self) -> HttpSettings:
        if self.method == "GET" and self.body != "query":
            raise ValueError("method GET sends its fields in the query: set body: query")
        if self.content_type and self.body != "json":
            raise ValueError("content_type only applies to body: json")
        if self.mms is not None and self.mms.style == "list" and self.body != "json":
            raise ValueError("mms style list sends a JSON list: set body: json, or style: numbered")
        clash = set(self.constants) & set(self.secret_fields)
        if clash:
            raise ValueError(f"{', '.join(sorted(clash))} given in both constants and secret_fields")
        if self.status is not None and self.inbound is None:
            raise ValueError("'status' webhooks are checked with the inbound token: add 'inbound'")
        return self

    def secret_refs(self) -> dict[str, SecretRef]:
        refs = {f"secret_fields.{name}": ref for name, ref in self.secret_fields.items()}
        for name in ("password", "token"):
            if getattr(self.auth, name) is not None:
                refs[f"auth.{name}"] = getattr(self.auth, name)
        if self.inbound is not None:
            refs["inbound.token"] = self.inbound.token
        return refs


class PluginSettings(Strict):
    """A third-party backend from the `textback.gateways` entry-point group."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    options: dict[str, Any] = Field(default_factory=dict)  # validated by the plugin


def resolve_secrets(section: Any, base: Path | None = None
                    ) -> tuple[dict[str, SecretStr], list[tuple[str, str]]]:
    """Resolve a section's secrets; relative files are relative to `base` (the config's folder).

    Returns the values and the problems as (path inside the section, message).
    """
    values: dict[str, SecretStr] = {}
    problems: list[tuple[str, str]] = []
    for path, ref in section.secret_refs().items():
        if ref.file is not None and not ref.file.is_absolute() and base is not None:
            ref = SecretRef(file=base / ref.file)
        try:
            values[path] = ref.resolve()
        except ValueError as exc:
            problems.append((path, str(exc)))
    return values, problems
