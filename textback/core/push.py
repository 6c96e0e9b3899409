"""Web Push to owners' phones, the pure part: who is told of what, what the notification says,
which push services may be reached, and what a push service's answer means.

The push worker (`textback/workers/push.py`) reads committed changes (a homeowner's reply, an
assignment, an escalation), asks this module whom to tell and with what words, and sends the
encrypted message; nothing here touches a socket or a clock.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence
from urllib.parse import urlsplit

from textback.core.intake import beside_the_number

if TYPE_CHECKING:
    from textback.config import OwnerConfig

PushKind = Literal["reply", "assigned", "escalation"]
KINDS: tuple[PushKind, ...] = ("reply", "assigned", "escalation")

# A push service must take at least 4096 bytes of payload (RFC 8030 section 7.2); with the
# record's 17 bytes and the 86-byte header of aes128gcm, this much JSON always fits.
MAX_PAYLOAD_BYTES = 3000
FIRST_WORDS_CHARS = 90
MAX_TITLE_CHARS = 80
MAX_LABELS_CHARS = 60
# How long a push service keeps a message for a phone that is off (the TTL header), seconds.
TTL_SECONDS = 4 * 3600

Outcome = Literal["sent", "gone", "retry", "failed"]


@dataclass(frozen=True)
class Notification:
    """What one push shows, and where tapping it goes: `thread` is the conversation's path on the
    inbox; `link` signs the owner in once and opens it (for a phone with no session)."""

    kind: PushKind
    title: str
    body: str
    thread: str
    link: str | None
    tag: str

    def payload(self) -> bytes:
        """The JSON the service worker reads (static/sw.js); always under MAX_PAYLOAD_BYTES."""
        data = {"v": 1, "kind": self.kind, "title": self.title, "body": self.body,
                "thread": self.thread, "link": self.link, "tag": self.tag}
        encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        if len(encoded) > MAX_PAYLOAD_BYTES:  # only an absurd link could do this
            raise ValueError(f"push payload of {len(encoded)} bytes is too large")
        return encoded


def plain(text: str, limit: int) -> str:
    """Caller-controlled text made one short line: control and format characters (new lines,
    bidi overrides, zero-width joiners) become spaces, runs of space one, cut at a word within
    `limit` characters with an ellipsis. A notification is text, never markup, and no part of
    it reaches a header; this keeps it to what a lock screen can show honestly."""
    cleaned = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c
                      for c in text)
    cleaned = re.sub(r"\s+", " ", cleaned).strip()
    if len(cleaned) <= limit:
        return cleaned
    cut = cleaned[:limit - 1]
    if " " in cut[limit // 2:]:
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,;:.-") + "…"


def caller_label(caller_display: str, contact_name: str) -> str:
    """'Bob Smith, (212) 555-0123' or just the number."""
    name = plain(contact_name, 40)
    return f"{name}, {caller_display}" if name else caller_display


def compose(kind: PushKind, caller_display: str, contact_name: str, words: str,
            conversation_id: int, link: str | None, minutes_waiting: float = 0.0,
            labels: str = "") -> Notification:
    """The notification for one change of one conversation. `labels` are its intake facts as
    the inbox shows them ("Kitchen · ~$75k · 11215 (in area)"): when there are any besides the
    caller's bare area code (the title's number says it), the body leads with them, then the
    first words."""
    who = caller_label(caller_display, contact_name)
    if kind == "reply":
        title = f"{who} replied"
    elif kind == "assigned":
        title = f"Assigned to you: {who}"
    else:
        title = f"Unanswered {minutes_waiting:.0f} min: {who}"
    body = plain(words, FIRST_WORDS_CHARS) or "(no text)"
    lead = plain(beside_the_number(labels), MAX_LABELS_CHARS)
    if lead:
        body = f"{lead} — {body}"
    return Notification(kind, plain(title, MAX_TITLE_CHARS), body, f"/c/{conversation_id}",
                        link, f"c{conversation_id}")


def reply_recipients(owner_id: str | None, owners: Sequence["OwnerConfig"]) -> list[str]:
    """A homeowner's reply goes to the conversation's owner; with none (or one no longer
    configured), to every owner, so an unassigned lead still taps someone on the shoulder."""
    ids = [o.id for o in owners]
    return [owner_id] if owner_id in ids else ids


def assignment_recipient(owner_id: str, previous_owner_id: str | None, reason: str,
                         owners: Sequence["OwnerConfig"]) -> str | None:
    """Who hears of an assignment: the new owner, unless they took it themselves, it did not
    change hands, or they are not an owner of this configuration."""
    if owner_id == previous_owner_id or owner_id not in {o.id for o in owners}:
        return None
    if re.search(rf"\bby {re.escape(owner_id)}\b", reason):
        return None  # "claimed by sam (web)", "#assign by sam": sam did it
    return owner_id


def contact_problem(contact: str) -> str | None:
    """Why a VAPID `sub` claim is refused: it must be a mailto: URI with one address (Apple's
    push service answers 403 BadJwtToken to anything else it cannot reach a person at)."""
    if not contact.startswith("mailto:"):
        return "push.contact must be a mailto: address, e.g. mailto:admin@example.com"
    address = contact[len("mailto:"):]
    if not re.fullmatch(r"[^@\s<>,;\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*", address):
        return f"push.contact {contact!r} is not a mailto: with one email address"
    return None


def endpoint_problem(endpoint: str, loopback_http_allowed: bool = False) -> str | None:
    """Why a browser-given push endpoint is refused before anything is stored: only an HTTPS URL
    with a DNS name (the push services of browsers are public hosts; the address each name
    resolves to is checked again when sending). `loopback_http_allowed` is for the test
    suite's stand-in push service only: plain HTTP to 127.0.0.1 or ::1."""
    if len(endpoint) > 2000:
        return "the endpoint is too long"
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        return "the endpoint is not a URL"
    host = parts.hostname or ""
    if parts.username or parts.password or parts.fragment:
        return "the endpoint may not carry credentials or a fragment"
    if loopback_http_allowed and parts.scheme in ("http", "https") and host in ("127.0.0.1", "::1"):
        return None
    if parts.scheme != "https":
        return "the endpoint must be an https:// URL"
    if not re.fullmatch(r"(?=.{1,253}$)([A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}", host):
        return "the endpoint's host must be a DNS name"
    if port not in (None, 443):
        return "the endpoint must use port 443"
    return None


def origin(endpoint: str) -> str:
    """The VAPID `aud` claim: the endpoint's origin (RFC 8292 section 2)."""
    parts = urlsplit(endpoint)
    default = {"https": 443, "http": 80}[parts.scheme]
    netloc = parts.hostname if ":" not in (parts.hostname or "") else f"[{parts.hostname}]"
    port = f":{parts.port}" if parts.port not in (None, default) else ""
    return f"{parts.scheme}://{netloc}{port}"


def outcome(status: int) -> Outcome:
    """A push service's answer (RFC 8030 section 5; RFC 8292 section 4): 201 taken; 404 or 410
    the subscription has ended (remove it); 429 or a server error: retry later; anything else
    (400, 401, 403 a key the subscription was not made with, 413) will not get better."""
    if 200 <= status < 300:
        return "sent"
    if status in (404, 410):
        return "gone"
    if status == 429 or status >= 500 or status == 408:
        return "retry"
    return "failed"
