"""Sign-in links for owner emails: signed, single-use (the store spends the nonce), short-lived."""

from __future__ import annotations

import secrets
import time

from textback.config import WebConfig
from textback.signin import LinkClaim, make_link_token

LINK_KEY = "sign-in links"  # the store's web_keys entry that signs them


async def sign_in_link(store, web: WebConfig, owner_id: str, conversation_id: int | None) -> str:
    """A link that signs `owner_id` in once and opens the conversation (else the inbox)."""
    claim = LinkClaim(owner_id, conversation_id, time.time() + web.link_hours * 3600,
                      secrets.token_urlsafe(12))
    token = make_link_token(await store.web_key(LINK_KEY), claim)
    return f"{web.public_url.rstrip('/')}/link/{token}"


def link_line(link: str, web: WebConfig) -> str:
    """The sentence that carries the link in a plain-text email."""
    return f"Open it in the inbox (this link signs you in once, within {web.link_hours:g} h):\n{link}"


async def hand_off_link(store, public_url: str, user_id: str, seconds: float) -> str:
    """A link that signs `user_id` (an MSP admin, `msp:<id>`) in to the company of `store` once,
    within `seconds`: the company's own link key signs it and its store spends it, as an email's."""
    claim = LinkClaim(user_id, None, time.time() + seconds, secrets.token_urlsafe(12))
    token = make_link_token(await store.web_key(LINK_KEY), claim)
    return f"{public_url.rstrip('/')}/link/{token}"
