"""Signing in to the web inbox, as values: sign-in links, attempt limits, idle sessions.

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
from collections import deque
from dataclasses import dataclass, field

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


@dataclass
class AttemptLimiter:
    """Failed sign-ins per key (an account or an address) in a sliding window.

    A key with `limit` failures in the last `window` seconds is refused
    until the oldest of them leaves the window; a success clears the key.
    """

    limit: int
    window: float
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until `key` may try again; 0 when it may now."""
        failures = self._recent(key, now)
        if len(failures) < self.limit:
            return 0.0
        return failures[0] + self.window - now

    def failed(self, key: str, now: float) -> None:
        self._recent(key, now)
        self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
