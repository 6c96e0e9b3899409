"""The SMS gateway interface every backend implements.

A backend turns an OutgoingText into a SendResult, and turns whatever its
provider delivers into InboundText for the daemon's `deliver` callback.
The outbox decides what to do with each result: `retryable` is tried again
later, `permanent` never is, and `unknown` (the request may have gone out) is
recorded and reported rather than risking a second text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable, Literal, Protocol


@dataclass(frozen=True)
class OutgoingText:
    sender: str  # E.164 business number the caller dialled
    recipient: str  # E.164 caller
    body: str  # may be empty when `media_urls` carries the message
    idempotency_key: str | None = None  # stable across retries of the same text
    # An MMS: signed links the provider fetches the photos from (only a gateway with `mms`).
    media_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class MmsLimits:
    """What one outgoing MMS may carry on a gateway whose provider fetches media by URL.

    A gateway that sends photos says so with a class attribute `mms`; one without it (SIP
    MESSAGE, Kannel's SMS, the generic HTTP API) carries words only."""

    max_items: int
    max_bytes: int  # every item together, as the provider fetches them


def mms_limits(gateway: object) -> MmsLimits | None:
    """The gateway's MMS limits, or None: it texts words only (plugins too, unless they say)."""
    limits = getattr(gateway, "mms", None)
    return limits if isinstance(limits, MmsLimits) else None


@dataclass(frozen=True)
class SendResult:
    status: Literal["accepted", "retryable", "permanent", "unknown"]
    gateway_id: str | None = None
    error: str = ""
    retry_after: float | None = None

    @classmethod
    def accepted(cls, gateway_id: str | None = None) -> "SendResult":
        return cls("accepted", gateway_id=gateway_id)

    @classmethod
    def retryable(cls, error: str, retry_after: float | None = None) -> "SendResult":
        return cls("retryable", error=error, retry_after=retry_after)

    @classmethod
    def permanent(cls, error: str) -> "SendResult":
        return cls("permanent", error=error)

    @classmethod
    def unknown(cls, error: str) -> "SendResult":
        """The provider may or may not have taken it (e.g. a timeout after the request went out)."""
        return cls("unknown", error=error)


@dataclass(frozen=True)
class InboundMedia:
    """A photo, video or file a text carried, as the provider announced it; fetched later.

    `url` is where the provider keeps it ('' when the bytes came with the text, as `content`:
    a SIP MESSAGE whose body is not text). Type and size are what the provider declared,
    checked against the bytes when they arrive."""

    url: str
    declared_type: str
    declared_size: int | None = None
    content: bytes | None = None


@dataclass(frozen=True)
class InboundText:
    sender: str  # as the provider gave it; the daemon normalises it
    recipient: str
    body: str
    gateway_id: str | None = None
    media: tuple[InboundMedia, ...] = ()


Deliver = Callable[[InboundText], Awaitable[None]]


class Gateway(Protocol):
    name: str

    async def send(self, text: OutgoingText) -> SendResult:
        """Hand one text to the provider. Never raises for provider errors."""

    async def check(self) -> str:
        """A harmless call that proves the gateway is reachable; raises with a reason if not."""
