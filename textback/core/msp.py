"""The MSP admin role, as values: who an MSP admin is inside a company's web app, how they are
named there, how long a hand-off link lives, and which passwords an MSP admin may set.

An MSP (the installer who runs textback for many companies) signs in once, on the fleet's
console, and opens any company of the process from there. In that company's web app the
admin is the user `msp:<id>`: an admin's powers, but not an owner (no call is assigned to
them, no alert goes to them, no owner list names them), and everything they do is recorded
under that id and shown as "Alice (MSP)".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

MSP_USER_PREFIX = "msp:"
# A hand-off link is made by the console's POST and followed by the same browser at once:
# it lives a minute, long enough for a slow page, too short to be worth stealing.
HANDOFF_SECONDS = 60.0
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024
MIN_DISTINCT_CHARS = 6
# The passwords (lowercased) guessed first; a longer password that is one of them repeated or
# extended by digits is refused by the distinct-characters rule or this list.
COMMON_PASSWORDS = frozenset({
    "password1234", "passwordpassword", "123456789012", "qwertyuiopas", "iloveyou1234",
    "letmein12345", "administrator", "changeme1234", "welcome12345", "textback1234",
})


@dataclass(frozen=True)
class MspAdmin:
    """An MSP admin of the fleet's `msp.admins`, as a company's web app knows them."""

    id: str
    name: str
    email: str

    @property
    def user_id(self) -> str:
        return msp_user_id(self.id)

    @property
    def shown_name(self) -> str:
        return f"{self.name} (MSP)"


@dataclass(frozen=True)
class MspAccess:
    """What a company's web app knows of the MSP role: the admins of the fleet's main file
    (as this process read it at its start) and the console's address ("Switch company")."""

    console_url: str
    admins: Mapping[str, MspAdmin] = field(default_factory=dict)  # admin id → admin

    def admin(self, user_id: str) -> MspAdmin | None:
        """The MSP admin a company's user id names (`msp:alice`), or None: an owner's id, or
        an admin no longer in the fleet's file."""
        admin_id = admin_id_of(user_id)
        return None if admin_id is None else self.admins.get(admin_id)

    def names(self) -> dict[str, str]:
        """Each admin's user id → the name a company's pages show ("Alice (MSP)")."""
        return {admin.user_id: admin.shown_name for admin in self.admins.values()}


def msp_user_id(admin_id: str) -> str:
    return MSP_USER_PREFIX + admin_id


def admin_id_of(user_id: str) -> str | None:
    """`alice` of `msp:alice`; None for any other user id (an owner's ids hold no colon)."""
    if not user_id.startswith(MSP_USER_PREFIX):
        return None
    return user_id[len(MSP_USER_PREFIX):] or None


def password_problem(password: str, admin: MspAdmin) -> str | None:
    """Why `password` is too weak for an MSP admin, who can open every company; None if it
    will do. The rules are a length and a few refusals of the guessable, not composition
    rules (NIST SP 800-63B, 5.1.1.2)."""
    if len(password) < MIN_PASSWORD_CHARS:
        return f"a password has at least {MIN_PASSWORD_CHARS} characters"
    if len(password) > MAX_PASSWORD_CHARS:
        return f"a password has at most {MAX_PASSWORD_CHARS} characters"
    if len(set(password)) < MIN_DISTINCT_CHARS:
        return f"a password has at least {MIN_DISTINCT_CHARS} different characters"
    lowered = password.lower()
    if lowered in COMMON_PASSWORDS:
        return "this password is among the first ever guessed"
    personal = {admin.id.lower(), admin.email.lower(), admin.email.split("@")[0].lower(),
                *(part.lower() for part in admin.name.split() if len(part) >= 4)}
    if any(word and word in lowered for word in personal if len(word) >= 4):
        return "a password does not hold the admin's id, name or email"
    return None
