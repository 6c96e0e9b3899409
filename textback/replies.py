"""What an owner's email reply means, decided from values. No I/O.

The mail edge (textback/mailin.py) hands over the parsed message and what the
store knows about the reply token; this module says whether to refuse it,
drop it silently, record a bookkeeping command, or text the homeowner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage

from mailparser_reply import EmailReplyParser

from sms_gateway.segments import count_segments
from textback.htmlmail import new_words

TOKEN_LOCAL = re.compile(r"^reply\+([a-z2-7]{24})$")
COMMAND = re.compile(r"^#(assign|booked|qualified|won|lost|spam)\b\s*(.*)$", re.IGNORECASE)
STAGES = ("booked", "qualified", "won", "lost", "spam")


@dataclass(frozen=True)
class Verdict:
    """`action` is refuse (SMTP 5xx), drop (accept, do nothing), command, text or too_long."""

    action: str
    reason: str = ""
    text: str = ""
    command: str = ""
    argument: str = ""


def token_of(recipient: str, domain: str) -> str | None:
    """The token in reply+TOKEN@domain, or None for any other address."""
    local, _, host = recipient.strip().lower().rpartition("@")
    if host != domain.lower():
        return None
    match = TOKEN_LOCAL.match(local)
    return match.group(1) if match else None


def is_auto_reply(message: EmailMessage, envelope_sender: str | None) -> bool:
    """RFC 3834: vacation notices, bounces and list mail must never turn into texts."""
    auto = (message.get("Auto-Submitted") or "no").strip().lower()
    precedence = (message.get("Precedence") or "").strip().lower()
    return (auto != "no" or precedence in ("bulk", "junk", "list")
            or not envelope_sender or envelope_sender == "<>"
            or message.get("X-Autoreply") is not None or message.get("X-Autorespond") is not None)


def from_address(message: EmailMessage) -> str | None:
    """The single From address, lower-cased; None when absent, several, or malformed."""
    try:
        header = message["From"]
        addresses: tuple[Address, ...] = header.addresses if header is not None else ()
    except (AttributeError, IndexError, ValueError):
        return None
    if len(addresses) != 1 or not addresses[0].addr_spec or "@" not in addresses[0].addr_spec:
        return None
    return addresses[0].addr_spec.lower()


def authenticated(message: EmailMessage, authserv_id: str | None) -> bool:
    """With an authserv-id configured, require dkim=pass or spf=pass from our own MX's header."""
    if authserv_id is None:
        return True
    for header in message.get_all("Authentication-Results") or []:
        serv, _, results = str(header).partition(";")
        if serv.strip().split()[0:1] == [authserv_id] and re.search(
                r"\b(dkim|spf)=pass\b", results, re.IGNORECASE):
            return True
    return False


def new_text(message: EmailMessage, owner_name: str = "") -> str:
    """The owner's new words: the body without quoted history, signature or sign-off.

    The plain part when there is one, else the HTML part as text (some phones
    send HTML only). The library removes quotes and signature blocks; a bare
    sign-off with the owner's own name ("Dana") above a signature is dropped
    here, since the homeowner already sees who writes.
    """
    part = message.get_body(("plain", "html"))
    if part is None:
        return ""
    body = part.get_content()
    if part.get_content_subtype() == "html":
        body = new_words(body)
    body = body.replace("\r\n", "\n")
    replies = EmailReplyParser(languages=["en"]).read(body).replies
    text = replies[0].body.strip() if replies else body.strip()
    names = {owner_name.lower(), owner_name.split()[0].lower()} if owner_name.strip() else set()
    lines = text.splitlines()
    while len(lines) > 1 and lines[-1].strip(" ,.-–—").lower() in names:
        lines.pop()
    return "\n".join(lines).strip()


def judge(message: EmailMessage, envelope_sender: str | None, owner_email: str,
          team: frozenset[str], authserv_id: str | None, max_segments: int,
          owner_name: str = "") -> Verdict:
    if is_auto_reply(message, envelope_sender):
        return Verdict("drop", "automatic reply")
    sender = from_address(message)
    allowed = {owner_email.lower()} | team
    if sender is None or sender not in allowed or (envelope_sender or "").lower() not in allowed:
        return Verdict("refuse", "sender is not the owner of this conversation")
    if not authenticated(message, authserv_id):
        return Verdict("refuse", "no DKIM or SPF pass from the trusted authserv-id")
    text = new_text(message, owner_name)
    if not text:
        return Verdict("drop", "no new text above the quoted message")
    command = COMMAND.match(text.splitlines()[0].strip())
    if command:
        return Verdict("command", command=command.group(1).lower(), argument=command.group(2).strip())
    if count_segments(text).segments > max_segments:
        return Verdict("too_long", f"{count_segments(text).segments} segments; the limit is "
                                   f"{max_segments}", text=text)
    return Verdict("text", text=text)
