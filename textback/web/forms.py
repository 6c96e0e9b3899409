"""The sign-in pieces every signed-in room shares, the inbox's and the MSP console's: the
cookies' flags, the sign-in form's CSRF token before there is a session, the one refusal of a
form whose token does not match, and the password check.

One place, so that the two sign-ins cannot drift apart in what they accept: the same
host-only, HttpOnly, SameSite=Lax cookies (Secure behind https), the same constant-time token
comparison, the same argon2 check that treats a damaged hash as a wrong password.
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

hasher = PasswordHasher()


def cookie_args(secure: bool) -> dict:
    """The flags of every cookie a sign-in sets: host-only, script-proof, Secure on https."""
    return {"httponly": True, "samesite": "Lax", "secure": secure, "path": "/"}


def form_token(request: web.Request, response: web.StreamResponse, cookie: str,
               secure: bool) -> str:
    """A sign-in form's CSRF token: the `cookie`'s, or a new one set on `response`."""
    token = request.cookies.get(cookie) or secrets.token_urlsafe(24)
    response.set_cookie(cookie, token, max_age=3600, **cookie_args(secure))
    return token


def check_csrf(sent: object, expected: str) -> None:
    """Refuse (403) a form whose token is not `expected` (none expected refuses too)."""
    if not expected or not hmac.compare_digest(str(sent or ""), expected):
        raise web.HTTPForbidden(text="Forbidden: the form is stale or not from this site. "
                                     "Reload the page and try again.")


def password_matches(stored: str, password: str) -> bool:
    """Whether `password` is the one `stored` (an argon2 hash) was made of; a damaged hash is
    a refusal, never an error. Slow on purpose: call it off the event loop."""
    try:
        return hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False
