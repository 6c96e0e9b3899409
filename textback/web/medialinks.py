"""Signed, expiring links to a homeowner's photo, for the JSON API, webhooks and CRM notes. Pure.

A link names one media item and the moment it stops working, and carries an
HMAC-SHA256 of both under a key kept in the store (`web_keys`, "media
links"): whoever holds the link may fetch that one file until then, without
signing in, and cannot make a link to any other. The web listener serves it
at /media/<id>?expires=<unix seconds>&sig=<hex>.
"""

from __future__ import annotations

import hashlib
import hmac

MEDIA_LINK_KEY = "media links"


def signature(key: bytes, media_id: int, expires: int) -> str:
    return hmac.new(key, f"media:{media_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def media_link(key: bytes, public_url: str, media_id: int, expires: int) -> str:
    return (f"{public_url.rstrip('/')}/media/{media_id}?expires={expires}"
            f"&sig={signature(key, media_id, expires)}")


def valid(key: bytes, media_id: int, expires: str, sig: str, now: float) -> bool:
    """Is this link's signature right, and has it not expired?"""
    if not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
        return False
    return (int(expires) > now
            and hmac.compare_digest(signature(key, media_id, int(expires)), sig.lower()))
