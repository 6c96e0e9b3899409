"""Fetching a homeowner's photo from the provider that carried it, and nothing else.

A webhook names the media URL, and a webhook is text anyone can send once a
signature check has passed, so the URL is treated as untrusted:

- its host must be one of the gateway's own media hosts (`media_hosts`, per
  gateway; docs/gateways.md); no request at all goes anywhere else;
- HTTPS only;
- a redirect is followed by hand, at most MAX_REDIRECTS times, and its target
  checked like the first URL (Twilio answers its API URL with a redirect to its
  media host); the account's credentials go only to `auth_hosts`;
- every address a name resolves to, and any IP literal, must be public: never
  loopback, private, link-local or a cloud metadata address;
- the body is read up to a byte cap and within one total time limit, so a
  server that trickles bytes cannot hold a fetch open;
- `insecure_loopback_for_tests` (a test-only setting, `media.insecure_loopback_for_tests`)
  lets a loopback stand-in be reached over plain HTTP; it allows nothing else.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

from textback.hooks.addresses import METADATA_ADDRESSES

MAX_REDIRECTS = 3
CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class MediaAccess:
    """How one gateway's media may be fetched: its hosts, and its credentials for some of them."""

    gateway: str
    hosts: tuple[str, ...]
    auth_hosts: tuple[str, ...] = ()
    auth: Mapping[str, str] = field(default_factory=dict, repr=False)
    deletable: bool = False  # the provider keeps a copy textback may delete (Twilio's Media)


class Refused(Exception):
    """A fetch that must never be tried again: the wrong host, scheme or address, too big."""


class Retry(Exception):
    """A fetch that failed for now: the network, a 5xx, a 429, the time limit."""


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str  # as the serving host labelled it (the declared type is what counts)
    final_url: str


def address_refusal(address: str, allow_loopback: bool) -> str | None:
    """Why media must not be fetched from this IP, or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if allow_loopback and ip.is_loopback:
        return None
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if not ip.is_global or ip.is_multicast or ip.is_reserved:
        return f"{ip} is a private, loopback or reserved address, never a provider's media host"
    return None


class _PublicOnlyResolver(AbstractResolver):
    """Every answer for a media host must be a public address (loopback only for tests)."""

    def __init__(self, allow_loopback: bool):
        self._allow_loopback = allow_loopback
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[dict[str, Any]]:
        answers = await self._inner.resolve(host, port, family)
        reasons = [address_refusal(a["host"], self._allow_loopback) for a in answers]
        if any(reasons):
            raise OSError(f"{host} resolves to a refused address: "
                          f"{'; '.join(sorted({r for r in reasons if r}))}")
        return answers

    async def close(self) -> None:
        await self._inner.close()


class MediaFetcher:
    """GETs (and, when asked, DELETEs) media on one gateway's hosts, with the checks above."""

    def __init__(self, access: MediaAccess, timeout_seconds: float,
                 insecure_loopback_for_tests: bool = False):
        self.access = access
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._loopback = insecure_loopback_for_tests
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=_PublicOnlyResolver(self._loopback))
            # No cookies: nothing one host sets may reach another (Twilio's API, then its CDN).
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                                  cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def check_url(self, url: str) -> None:
        """Raise Refused unless `url` is HTTPS on one of this gateway's media hosts."""
        parts = urlsplit(url)
        allowed_schemes = ("https", "http") if self._loopback else ("https",)
        if parts.scheme not in allowed_schemes:
            raise Refused(f"not HTTPS ({parts.scheme or 'no scheme'}://)")
        host = (parts.hostname or "").lower()
        if host not in self.access.hosts:
            raise Refused(f"{host or 'no host'} is not one of the {self.access.gateway} media "
                          f"hosts ({', '.join(self.access.hosts)})")
        if parts.scheme == "http":
            literal = _literal(host)
            if literal is None or not literal.is_loopback:
                raise Refused("plain HTTP is allowed for tests only, to a loopback address")
        try:
            why = address_refusal(host, self._loopback)
        except ValueError:
            return  # a name: its addresses are checked when it is resolved
        if why:
            raise Refused(why)

    def _headers(self, url: str) -> dict[str, str]:
        host = (urlsplit(url).hostname or "").lower()
        return dict(self.access.auth) if host in self.access.auth_hosts else {}

    async def fetch(self, url: str, max_bytes: int) -> Fetched:
        """The bytes at `url`, following checked redirects; Refused or Retry otherwise."""
        for _ in range(MAX_REDIRECTS + 1):
            self.check_url(url)
            try:
                async with self._client().get(url, headers=self._headers(url),
                                              allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        location = response.headers.get("Location")
                        if not location:
                            raise Refused(f"HTTP {response.status} without a Location")
                        url = urljoin(url, location)
                        continue
                    if response.status == 429 or response.status >= 500:
                        raise Retry(f"HTTP {response.status}")
                    if response.status != 200:
                        raise Refused(f"HTTP {response.status}")
                    declared = response.content_length
                    if declared is not None and declared > max_bytes:
                        raise Refused(f"{declared} bytes, more than the cap of {max_bytes} bytes")
                    data = bytearray()
                    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                        data += chunk
                        if len(data) > max_bytes:
                            raise Refused(f"more than the cap of {max_bytes} bytes")
                    return Fetched(bytes(data), response.headers.get("Content-Type", ""), url)
            except (Refused, Retry):
                raise
            except TimeoutError:
                raise Retry("not fetched within the time limit") from None
            except aiohttp.ClientConnectorError as exc:
                why = exc.os_error if exc.os_error is not None else exc
                raise Retry(f"cannot connect: {why}") from None
            except (aiohttp.ClientError, OSError) as exc:
                raise Retry(f"{type(exc).__name__}: {exc}") from None
        raise Refused(f"more than {MAX_REDIRECTS} redirects")

    async def delete(self, url: str) -> str | None:
        """Delete a fetched item at the provider (Twilio's Media resource); None when done,
        else why not. Only on a gateway that keeps deletable copies."""
        if not self.access.deletable:
            return f"{self.access.gateway} media cannot be deleted through its API"
        self.check_url(url)
        target = url if url.endswith(".json") else url + ".json"
        try:
            async with self._client().delete(target, headers=self._headers(target),
                                             allow_redirects=False) as response:
                if response.status in (204, 404):  # 404: already gone
                    return None
                return f"HTTP {response.status}"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"


def _literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
