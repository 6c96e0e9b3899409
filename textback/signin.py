"""Signing in to the web inbox, as values: sign-in links, attempt limits, client addresses,
idle sessions.

No I/O and no clock of its own: the web edge passes the key, the time and
what the store holds, and gets decisions back.

A sign-in link carries its owner, its conversation, its expiry and a nonce,
signed with HMAC-SHA256; the store remembers the nonces already used, so a
link works once. A link is read here without the database: a forged or
altered one is refused before anything is looked up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Iterable, Sequence

SIGNATURE_BYTES = 20


@dataclass(frozen=True)
class LinkClaim:
    owner_id: str
    conversation_id: int | None
    expires_at: float
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, b"textback sign-in link\n" + payload, hashlib.sha256).digest()[:SIGNATURE_BYTES]


def make_link_token(key: bytes, claim: LinkClaim) -> str:
    """The URL-safe token of a sign-in link."""
    payload = "\n".join((claim.owner_id, str(claim.conversation_id or 0),
                         f"{claim.expires_at:.0f}", claim.nonce)).encode("ascii")
    return f"{_b64(payload)}.{_b64(_signature(key, payload))}"


def read_link_token(key: bytes, token: str, now: float) -> tuple[LinkClaim | None, str]:
    """(the claim, "") for a genuine live token, else (None, why not): "invalid" or "expired"."""
    try:
        encoded, signature = token.split(".")
        payload = _unb64(encoded)
        if not hmac.compare_digest(_unb64(signature), _signature(key, payload)):
            return None, "invalid"
        owner_id, conversation, expires, nonce = payload.decode("ascii").split("\n")
        claim = LinkClaim(owner_id, int(conversation) or None, float(expires), nonce)
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None, "invalid"
    if claim.expires_at <= now:
        return None, "expired"
    return claim, ""


def digest(secret: str) -> str:
    """What the store keeps of a session token or a used link's nonce: never the thing itself."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def session_expired(seen_at: float, now: float, idle_seconds: float) -> bool:
    return now - seen_at > idle_seconds


def retry_after(failures: Sequence[float], limit: int, window: float, now: float) -> float:
    """Seconds until a key with these failure times may try again; 0 when it may now.

    A key with `limit` failures in the last `window` seconds is refused until the
    oldest of them leaves the window; the store keeps the times (a success clears them).
    """
    recent = sorted(at for at in failures if at > now - window)
    if len(recent) < limit:
        return 0.0
    return recent[-limit] + window - now


def account_key(owner_id: str | None, typed: str) -> str:
    """The key an account's failures count under: the owner whichever name or email was typed,
    else what was typed (so guessing one unknown name is limited too)."""
    return f"owner:{owner_id}" if owner_id is not None else f"account:{typed}"


def address_key(address: str) -> str:
    return f"address:{address}"


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _trusted(address: str, proxies: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in proxies)


def client_address(peer: str | None, forwarded_for: Iterable[str],
                   proxies: Sequence[Network]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy.

    Behind trusted proxies, X-Forwarded-For is read from the right (each proxy appends the
    address it saw), skipping the trusted ones: the first other address is the client's.
    Anything left of it was written by the client and is never believed. An entry that is
    not an address stops the walk at the last hop known for sure.
    """
    address = peer or "unknown"
    if not _trusted(address, proxies):
        return address
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return address
        address = hop
        if not _trusted(hop, proxies):
            return hop
    return address
