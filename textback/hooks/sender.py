"""One webhook endpoint's HTTP client: signs (Standard Webhooks) and POSTs one event body.

The `standardwebhooks` library signs "id.timestamp.body" with the endpoint's
whsec_ secret. Redirects are followed only to the same scheme, host and port
(307 and 308, which keep the body), and every address a name resolves to is
checked (`addresses.refusal`) before it is connected to, so a DNS answer
cannot lead a webhook to the metadata service. Errors name the endpoint,
never its URL: a receiver's URL is often its credential (Zapier, n8n).
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from textback.core.alerts import one_line
from textback.core.delivery import parse_retry_after
from textback.hooks.addresses import literal_host_refusal, refusal, same_origin

if TYPE_CHECKING:
    from textback.config import WebhookEndpointConfig

MAX_REDIRECTS = 3
USER_AGENT = "textback-webhooks/1"


class RefusedAddress(OSError):
    """The endpoint's name resolved only to addresses a webhook may not go to."""


class GuardedResolver(AbstractResolver):
    """DNS answers minus the addresses a webhook must not reach; none left is an error."""

    def __init__(self, allow_private: bool):
        self._allow_private = allow_private
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[dict[str, Any]]:
        answers = await self._inner.resolve(host, port, family)
        allowed = [a for a in answers if refusal(a["host"], self._allow_private) is None]
        if not allowed:
            reasons = sorted({refusal(a["host"], self._allow_private) for a in answers})
            raise RefusedAddress(f"{host} resolves to refused addresses only: {'; '.join(reasons)}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True)
class Attempt:
    """How one try went: delivered (2xx), or the status, error and Retry-After to retry by."""

    delivered: bool
    status: int | None
    error: str = ""
    retry_after: float | None = None


class EndpointClient:
    def __init__(self, endpoint: WebhookEndpointConfig, secret: SecretStr,
                 mask: Callable[[str], str]):
        self.endpoint = endpoint
        self._signer = Webhook(secret.get_secret_value())
        self._mask = mask
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.endpoint.allow_private),
                                             limit=8)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.endpoint.timeout_seconds),
                headers={"User-Agent": USER_AGENT})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def headers(self, event_id: str, body: str, at: datetime) -> dict[str, str]:
        """The three Standard Webhooks headers for one try (the timestamp is the try's)."""
        return {"webhook-id": event_id, "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": self._signer.sign(event_id, at, body),
                "Content-Type": "application/json"}

    async def deliver(self, event_id: str, body: str) -> Attempt:
        """POST the event once (following same-origin 307/308 redirects); never raises."""
        url = self.endpoint.url
        why = literal_host_refusal(url, self.endpoint.allow_private)
        if why:
            return Attempt(False, None, f"refused: {why}")
        try:
            for _ in range(MAX_REDIRECTS + 1):
                headers = self.headers(event_id, body, datetime.now(timezone.utc))
                async with self._client().post(url, data=body.encode(), headers=headers,
                                               allow_redirects=False) as response:
                    status = response.status
                    if 200 <= status < 300:
                        return Attempt(True, status)
                    if status in (301, 302, 303, 307, 308):
                        target = urljoin(url, response.headers.get("Location", ""))
                        if status in (307, 308) and same_origin(url, target) and target != url:
                            url = target
                            continue
                        return Attempt(False, status, (
                            f"HTTP {status}: a redirect to another host is never followed"
                            if not same_origin(url, target) else
                            f"HTTP {status}: only 307 and 308 redirects (which keep the body) "
                            f"are followed"))
                    return Attempt(False, status, f"HTTP {status} {one_line(response.reason or '', 60)}",
                                   parse_retry_after(response.headers.get("Retry-After"), time.time()))
            return Attempt(False, None, f"more than {MAX_REDIRECTS} redirects")
        except asyncio.TimeoutError:
            return Attempt(False, None, f"no answer within {self.endpoint.timeout_seconds:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            refused = getattr(exc, "os_error", exc)  # aiohttp wraps what the resolver raised
            if isinstance(refused, RefusedAddress):
                return Attempt(False, None, f"refused: {refused}")
            return Attempt(False, None, self._describe(exc))

    def _describe(self, exc: Exception) -> str:
        text = self._mask(str(exc)).replace(self.endpoint.url, f"<{self.endpoint.name}>")
        return one_line(f"{type(exc).__name__}: {text}", 300)
