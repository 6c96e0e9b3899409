"""Owner alert emails: composed from values (pure), sent by the mail edge.

Caller-ID names and text bodies are attacker-controlled. Nothing from a
caller reaches a header unless reduced to one printable line, and nothing
reaches the HTML part unescaped.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import make_msgid
from zoneinfo import ZoneInfo

from textback.core.media import EMPTY_TEXT
from textback.core.numbers import national

SUBJECT_WORDS = 8


@dataclass(frozen=True)
class ThreadEntry:
    at: float
    kind: str  # "call", "text_out", "text_in"
    text: str
    label: str = ""  # what the entry is called, when not its kind's ("Answered call")


@dataclass(frozen=True)
class ReplyAlert:
    business_name: str
    timezone: str
    owner_name: str
    owner_email: str
    sender: str
    caller: str
    caller_name: str
    business_number: str
    reply: str
    entries: tuple[ThreadEntry, ...]
    # What the text carried besides words ("sent 2 photos"), from textback.core.media.sent_line.
    media_line: str = ""
    attachments: tuple[tuple[str, bytes], ...] = ()  # (filename, JPEG) of its photos
    media_left_out: str = ""  # what of them is not attached, and where to see it
    # The conversation's intake facts as the inbox labels them ("Kitchen · ~$75k · Tue"):
    # the alert leads with them, so the owner sees whom to call first.
    intake_labels: str = ""

    @property
    def shown_reply(self) -> str:
        """The words, else what the text carried, else "(empty text)": never a blank line."""
        if self.reply.strip():
            return self.reply
        return self.media_line.capitalize() if self.media_line else EMPTY_TEXT


def one_line(value: str, limit: int = 80) -> str:
    """Collapse to one printable line: CR, LF and other controls become spaces."""
    cleaned = " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _when(at: float, timezone: str) -> str:
    return datetime.fromtimestamp(at, ZoneInfo(timezone)).strftime("%a %d %b %Y %H:%M %Z")


def subject_for(alert: ReplyAlert) -> str:
    words = " ".join(one_line(alert.shown_reply, 200).split()[:SUBJECT_WORDS])
    who = national(alert.caller)
    return one_line(f"Text from {who}: {words}", 120)


_LABELS = {"call": "Missed call", "text_out": "We texted", "text_in": "They replied"}


def _label(entry: ThreadEntry) -> str:
    return entry.label or _LABELS.get(entry.kind, entry.kind)


def _entry_line(entry: ThreadEntry) -> str:
    """'Missed call: nobody picked up. We texted them.', 'Answered call', 'We texted: Hi…'."""
    text = one_line(entry.text, 500)
    return f"{_label(entry)}: {text}" if text else _label(entry)


def _addressed(sender: str, business_name: str, owner_name: str, owner_email: str,
               subject: str, message_domain: str) -> EmailMessage:
    """A new message from textback to one owner; names and subject reduced to one line."""
    msg = EmailMessage()
    msg["From"] = Address(display_name=one_line(business_name, 60) + " textback", addr_spec=sender)
    msg["To"] = Address(display_name=one_line(owner_name, 60), addr_spec=owner_email)
    msg["Subject"] = one_line(subject, 120)
    msg["Message-ID"] = make_msgid(domain=message_domain)
    msg["Auto-Submitted"] = "auto-generated"
    return msg


def compose_notice(sender: str, business_name: str, owner_name: str, owner_email: str,
                   subject: str, text: str, message_domain: str) -> EmailMessage:
    """A short plain-text note to an owner (a reply that could not be sent, and why)."""
    msg = _addressed(sender, business_name, owner_name, owner_email, subject, message_domain)
    msg.set_content(text)
    return msg


def _plain_lines(alert: ReplyAlert, replyable: bool, inbox_link: str | None,
                 link_text: str) -> list[str]:
    """The lines of the alert's plain-text part."""
    caller = national(alert.caller)
    lines = [
        *([one_line(alert.intake_labels, 200), ""] if alert.intake_labels else []),
        f"{_who(alert)} replied to {alert.business_name}'s text on {national(alert.business_number)}:",
        "",
        *("    " + line for line in alert.shown_reply.splitlines()),
        *([f"    ({alert.media_line})"] if alert.media_line and alert.reply.strip() else []),
        "",
        "The conversation so far:",
    ]
    for entry in alert.entries:
        lines.append(f"  {_when(entry.at, alert.timezone)}  {_entry_line(entry)}")
    if alert.attachments:
        lines += ["", f"{len(alert.attachments)} photo(s) attached."]
    if alert.media_left_out:
        lines += ["", alert.media_left_out + (f" {inbox_link}" if inbox_link else
                                              " (`textback thread` lists them)")]
    lines += ["", f"Call or text them back at {caller}."]
    if replyable:
        lines += ["Reply to this email to text them: only your new words are sent.",
                  "Or reply with one command: #booked, #qualified, #won 82000, #lost, #spam,"
                  " #assign <owner id>; or correct what was read: #project kitchen,"
                  " #budget 80k, #when next month, #zip 11215, #area in."]
    if inbox_link:
        lines += ["", link_text or inbox_link]
    return lines


def _who(alert: ReplyAlert) -> str:
    caller = national(alert.caller)
    name = one_line(alert.caller_name, 60)
    return f"{caller} ({name})" if name else caller


def quoted_lines(alert: ReplyAlert, inbox_link: str | None = None,
                 link_text: str = "") -> tuple[str, ...]:
    """Everything the alert email shows the owner, line by line: what a reply may quote back.

    The plain part's lines, the full text of every message (the HTML part shows them
    unshortened), the HTML part's own wording and the headers a forward repeats. The
    reply judge strips whatever repeats these, so a quote never reaches the homeowner,
    whatever markup the owner's mail client gave it (textback.core.replies.strip_repeats).
    """
    sender = Address(display_name=one_line(alert.business_name, 60) + " textback",
                     addr_spec=alert.sender)
    owner = Address(display_name=one_line(alert.owner_name, 60), addr_spec=alert.owner_email)
    return tuple([
        *_plain_lines(alert, True, inbox_link, link_text),
        alert.reply, *(entry.text for entry in alert.entries),
        "Open the conversation in the inbox (the link signs you in once).",
        f"From: {sender}", f"To: {owner}", f"Subject: {one_line(subject_for(alert), 120)}",
    ])


def compose_reply_alert(alert: ReplyAlert, message_domain: str,
                        reply_to: str | None = None, inbox_link: str | None = None,
                        link_text: str = "") -> EmailMessage:
    """The email an owner gets when a homeowner replies; plain text and escaped HTML.

    `inbox_link` signs the owner in to the web inbox at this thread; `link_text` says so.
    """
    msg = _addressed(alert.sender, alert.business_name, alert.owner_name, alert.owner_email,
                     subject_for(alert), message_domain)
    if reply_to:
        msg["Reply-To"] = reply_to

    lines = _plain_lines(alert, bool(reply_to), inbox_link, link_text)
    msg.set_content("\n".join(lines))

    esc = html.escape
    caller, who, dialled = national(alert.caller), _who(alert), national(alert.business_number)
    rows = "".join(
        f"<tr><td style=\"color:#666;padding-right:1em\">{esc(_when(e.at, alert.timezone))}</td>"
        f"<td><b>{esc(_label(e))}</b></td><td>{esc(e.text)}</td></tr>"
        for e in alert.entries)
    body = (
        "<!doctype html><html><body style=\"font-family:sans-serif\">"
        + (f"<p><b>{esc(one_line(alert.intake_labels, 200))}</b></p>" if alert.intake_labels
           else "")
        + f"<p><b>{esc(who)}</b> replied to {esc(alert.business_name)}'s text on {esc(dialled)}:</p>"
        f"<blockquote style=\"white-space:pre-wrap\">{esc(alert.shown_reply)}</blockquote>"
        + (f"<p>({esc(alert.media_line)})</p>" if alert.media_line and alert.reply.strip()
           else "")
        + (f"<p>{esc(alert.media_left_out)}"
           + (f" <a href=\"{esc(inbox_link)}\">Open the thread</a>" if inbox_link else "")
           + "</p>" if alert.media_left_out else "")
        + f"<p>The conversation so far:</p><table>{rows}</table>"
        f"<p>Call or text them back at <a href=\"tel:{esc(alert.caller)}\">{esc(caller)}</a>.</p>"
        + (f"<p><a href=\"{esc(inbox_link)}\">Open the conversation in the inbox</a>"
           " (the link signs you in once).</p>" if inbox_link else "")
        + "</body></html>")
    msg.add_alternative(body, subtype="html")
    for filename, data in alert.attachments:
        msg.add_attachment(data, maintype="image", subtype="jpeg", filename=filename)
    return msg
