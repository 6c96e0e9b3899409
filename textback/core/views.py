"""What the inbox pages show, as values: rows and timelines from store rows and config. Pure.

Caller-written text passes through unchanged; the templates escape it
(autoescape), so nothing here builds HTML.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping
from zoneinfo import ZoneInfo

from textback.core import media
from textback.core.call_words import call_title, missed_because
from textback.core.gateway_errors import described
from textback.core.hours import Hours, minutes_waited
from textback.core.incidents import Key, title as incident_title
from textback.core.intake import EXTRACTED, PERSON, SUGGESTED, Intake
from textback.core.numbers import national
from textback.core.rules import hours_of

if TYPE_CHECKING:  # the core reads config values; it never builds them
    from textback.config import Config

EMPTY_NAMES: Mapping[str, str] = MappingProxyType({})  # no guest names
OUTCOMES = ("booked", "qualified", "won", "lost", "spam")
VIEW_TITLES = {"mine": "Mine", "unassigned": "Unassigned", "all": "All",
               "waiting": "Waiting on us", "snoozed": "Snoozed", "done": "Done"}
# Fixed messages a redirect may name (?said=...): a URL never carries text to show.
SAID = {
    "queued": "Queued: the reply goes out through the outbox.",
    "opted_out": "Not sent: they opted out (STOP). Call them instead.",
    "too_long": "Not sent: too long. Shorten it; nothing was sent.",
    "empty": "Not sent: the reply is empty.",
    "queued_without_files": "Queued, without some of its files: the note in the thread says why.",
    "files_not_sent": "Not sent: none of its files can be texted; the note in the thread says why.",
    "claimed": "It is yours now.",
    "assigned": "Assigned.",
    "snoozed": "Snoozed: it comes back then, or when they write again.",
    "done": "Marked done: it comes back when they write or call again.",
    "outcome": "Outcome recorded.",
    "note": "Note added (never texted).",
    "contact": "Contact saved.",
    "intake": "Saved: your value wins over what was read from their texts.",
    "optout_added": "Number suppressed: nothing is texted to it any more.",
    "optout_already": "That number was already suppressed.",
    "optout_removed": "Suppression lifted: it may be texted again.",
    "optout_absent": "That number was not suppressed.",
    "others_ended": "Signed out everywhere else: only this browser is signed in now.",
    "device_removed": "Device removed: it gets no more notifications.",
    "channels_saved": "Alert channels saved.",
    "quiet_hours_bad": "Not saved: quiet hours are two times, HH:MM-HH:MM (e.g. 21:00-07:00), "
                       "or empty for none.",
    "channels_none": "Not saved: choose at least one way to be told (email, notifications or "
                     "texts).",
}
SIGN_IN_WHY = {
    "used": "That sign-in link was already used: each link works once. Sign in with your "
            "password, or use the link in a newer email.",
    "expired": "That sign-in link has expired. Sign in with your password, or use the link in "
               "a newer email.",
    "invalid": "That sign-in link is not valid. Sign in with your password.",
    "idle": "You were signed out after a while without activity. Please sign in again.",
    "signed_out": "You are signed out.",
    "password_changed": "You were signed out because your password was changed, which ends "
                        "every session. Sign in with the new password.",
    "ended_elsewhere": "You were signed out from another browser (Settings: sign out everywhere "
                       "else). Please sign in again.",
    "no_owner": "You were signed out: that account is no longer an owner here.",
    "ended": "Your session has ended. Please sign in again.",
    "refused": "Wrong account or password.",
    "limited": "Too many failed sign-ins. Wait a few minutes and try again.",
}


def when(at: float | None, timezone: str) -> str:
    if at is None:
        return ""
    return datetime.fromtimestamp(at, ZoneInfo(timezone)).strftime("%a %d %b %H:%M")


def waited(minutes: float) -> str:
    """Business minutes as people say them: 12 min, 3 h 5 min, 2 d 4 h."""
    minutes = int(minutes)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def counted_hours(config: Config, business_number: str) -> Hours | None:
    """The hours a wait counts in, as escalation counts them: open hours if any, else all."""
    number = config.number(business_number)
    hours = hours_of(config, number)
    return hours if hours.windows else None


def contact_name(config: Config, row: dict) -> str:
    contact = config.contact(row["caller"])
    return (contact.name if contact and contact.name else "") or row.get("contact_name") or \
        row.get("caller_name") or ""


def number_label(config: Config, business_number: str) -> str:
    number = config.number(business_number)
    return (number.label if number is not None and number.label else "") or national(business_number)


def owner_name(config: Config, owner_id: str, guests: Mapping[str, str] = EMPTY_NAMES) -> str:
    """An owner's name; a guest's (`guests`: an MSP admin's user id → "Alice (MSP)"); else the
    id as recorded."""
    return next((o.name for o in config.owners if o.id == owner_id),
                guests.get(owner_id) or owner_id or "nobody")


@dataclass(frozen=True)
class InboxRow:
    id: int
    caller: str
    name: str
    number_label: str
    owner: str
    preview: str
    waited: str  # how long the homeowner has waited for an answer, "" when nobody waits
    unread: bool
    unanswered: bool
    last_at: str
    snoozed_until: str
    done: bool
    last_call: str  # the latest call's outcome and reason in words, e.g. "missed call: nobody picked up"
    last_message_at: float  # when its latest text was stored: a live page tells new texts by it
    held_until: str = ""  # when a text the homeowner's quiet hours hold goes, "" when none is held
    intake: str = ""  # the intake facts' labels: "Kitchen · ~$75k · 11215 (in area) · Tue"


def _last_call(summary: str) -> str:
    """The inbox's "missed: no_answer" (outcome: reason) as "missed call: nobody picked up"."""
    outcome, _, reason = summary.partition(": ")
    if outcome == "missed":
        return "missed call: " + missed_because(reason)
    return f"{outcome} call" if outcome else ""


def inbox_rows(config: Config, rows: list[dict], now: float) -> list[InboxRow]:
    tz = config.business.timezone
    made = []
    for row in rows:
        wait = ""
        if row["unanswered"] and row["waiting_since"] is not None and row["status"] == "open":
            wait = waited(minutes_waited(counted_hours(config, row["business_number"]),
                                         row["waiting_since"], now))
        made.append(InboxRow(
            id=row["id"], caller=national(row["caller"]), name=contact_name(config, row),
            number_label=number_label(config, row["business_number"]),
            owner=owner_name(config, row["owner_id"]),
            preview=" ".join((row["last_body"] or "").split())[:140], waited=wait,
            unread=bool(row["unread"]), unanswered=bool(row["unanswered"]),
            last_at=when(row["last_message_at"] or row["updated_at"], tz),
            snoozed_until=when(row["snoozed_until"], tz) if (row["snoozed_until"] or 0) > now else "",
            done=row["status"] == "closed", last_call=_last_call(row["last_call"] or ""),
            last_message_at=row["last_message_at"] or 0.0,
            held_until=when(row["held_until"], tz), intake=row.get("intake_labels") or ""))
    return made


INTAKE_TITLES = {"project": "Project", "budget": "Budget", "timing": "When",
                 "location": "Where", "service_area": "Service area"}


@dataclass(frozen=True)
class IntakeLine:
    """One intake fact as the thread's panel shows it: its value, and whose it is."""

    field: str
    title: str
    label: str  # "" when nothing is known
    whose: str  # "read from their text: “around $75k”", "set by dana", "suggested"
    value: str = ""  # the stored value: what a Confirm button of a suggestion sets
    suggested: bool = False


def intake_panel(merged: Intake) -> list[IntakeLine]:
    """Every intake field, known or not, saying which value a person set and which was read."""
    lines = []
    for name, title in INTAKE_TITLES.items():
        fact = merged.get(name)
        if fact is None:
            lines.append(IntakeLine(name, title, "", ""))
        elif fact.source == PERSON:
            lines.append(IntakeLine(name, title, fact.label, "set by a person"))
        elif fact.source == SUGGESTED:
            lines.append(IntakeLine(name, title, fact.label,
                                    f"suggested, not confirmed ({fact.why})", fact.value, True))
        else:
            lines.append(IntakeLine(name, title, fact.label,
                                    f"read from their text: {fact.evidence}"))
    return lines


def intake_history_lines(config: Config, rows: list[dict],
                         guests: Mapping[str, str] = EMPTY_NAMES) -> list[str]:
    """Each extraction and correction, oldest first, in words, with the text that caused it;
    who set a value is named as the thread names them ("Dana", "Alice Moreau (MSP)": `guests`),
    never by the raw source recorded with it ('web:msp:alice')."""
    tz = config.business.timezone
    made = []
    for row in rows:
        title = INTAKE_TITLES.get(row["field"], row["field"])
        who = ("read by textback" if row["source"] == EXTRACTED else
               f"set by {by_whom(config, row['author'], guests) or 'a person'}"
               if row["source"] == PERSON else "suggested")
        cause = " ".join(row["cause"].split())[:200]
        made.append(f"{when(row['at'], tz)} · {title}: {row['label']} ({who}, from “{cause}”)")
    return made


@dataclass(frozen=True)
class MediaView:
    """One photo, video or file of a homeowner's text, as the thread shows it."""

    kind: str  # image, video, file (download only), missing (failed), pending
    label: str
    url: str = ""  # the file, served to signed-in users only (/c/<id>/media/<id>)
    thumb: str = ""  # what an <img> shows: the file, or the JPEG of a HEIC photo


def media_views(conversation_id: int, items: list[dict]) -> tuple[MediaView, ...]:
    views = []
    for item in items:
        url = f"/c/{conversation_id}/media/{item['id']}"
        declared = item["declared_type"] or "a file of no given type"
        if item["state"] == "failed":
            views.append(MediaView("missing", f"Not fetched ({declared}): {item['note']}"))
        elif item["state"] != "kept":
            views.append(MediaView("pending", f"Being fetched ({declared})"))
        elif not item["shown"]:
            views.append(MediaView("file", f"Attachment {item['id']} ({declared}, "
                                           f"{(item['size'] or 0) / 1024:.0f} KB, not shown: "
                                           f"{item['note']})", url))
        else:
            kind = media.kind_of(item["content_type"]) or "file"
            label = f"{media.media_phrase([media.Shown(kind)])} ({(item['size'] or 0) / 1024:.0f} KB)"
            thumb = url + ("?v=jpeg" if item["rendition_sha256"] else "")
            views.append(MediaView("file" if kind == "document" else kind, label, url, thumb))
    return tuple(views)


@dataclass(frozen=True)
class Entry:
    at: float
    when: str
    kind: str  # call, text_in, text_out, alert, assignment, outcome, note
    title: str
    body: str = ""
    detail: str = ""
    media: tuple[MediaView, ...] = ()


def first_name(config: Config, owner_id: str, guests: Mapping[str, str] = EMPTY_NAMES) -> str:
    """An owner's first name; a guest's whole name ("Alice (MSP)": never taken for an owner)."""
    if owner_id in guests and not any(o.id == owner_id for o in config.owners):
        return guests[owner_id]
    return owner_name(config, owner_id).split(" ")[0]


def by_whom(config: Config, source: str, guests: Mapping[str, str] = EMPTY_NAMES) -> str:
    """Who acted, from an action's recorded source: 'web:dana', 'email:dana' and 'sms:dana'
    (an owner's command from their email or mobile), 'assigned by dana (web)', 'api:crm',
    'cli', '#assign by dana'; "" when the source names nobody."""
    match = re.fullmatch(r"(?:web:|email:|sms:|claimed by |assigned by |#assign by )"
                         r"([\w.@+:-]+)(?: \(web\))?",
                         source)
    if match:
        return first_name(config, match.group(1), guests)
    if source.startswith("api:"):
        return f"{source[4:]} (through the API)"
    if source == "cli":
        return "Someone at the command line"
    return ""


def _alerted(config: Config, alert: dict) -> str:
    how = "by email" if "@" in alert["recipient"] else "by text"
    return f"{first_name(config, alert['owner_id'])} {how}"


def _alert_detail(config: Config, alert: dict) -> str:
    """'alerted Dana by email', 'alerting …' while it is on its way, or, for an owner who chose
    no alert emails, 'not emailed to Dana (their choice)'."""
    if alert["state"] == "skipped":
        return f"not emailed to {first_name(config, alert['owner_id'])} (their choice)"
    return ("alerted " if alert["state"] == "sent" else "alerting ") + _alerted(config, alert)


def timeline(config: Config, thread: dict[str, list[dict]],
             guests: Mapping[str, str] = EMPTY_NAMES) -> list[Entry]:
    """One thread's calls, texts, assignments, outcomes and notes, oldest first, in plain words;
    what a guest did (an MSP admin, `guests`: user id → name) under the guest's name.

    An owner alert is folded into the text it is about ("alerted Dana by email"); only an
    alert that failed is a row of its own, because then someone has to act.
    """
    tz = config.business.timezone
    entries = []
    alerts_of: dict[int, list[dict]] = {}
    for alert in thread["alerts"]:
        alerts_of.setdefault(alert["message_id"], []).append(alert)
        if alert["state"] == "failed":
            at = alert["created_at"]
            entries.append(Entry(at, when(at, tz), "alert",
                                 f"Could not alert {_alerted(config, alert)}",
                                 detail=alert["last_error"] or "the alert failed"))
    for call in thread["calls"]:
        entries.append(Entry(call["started_at"], when(call["started_at"], tz), "call",
                             call_title(call["outcome"], call["reason"], call["decision"] or ""),
                             detail="found in the call records" if call["recovered"] else ""))
    for m in thread["messages"]:
        at = m["created_at"] if m["direction"] == "in" else (m["sent_at"] or m["created_at"])
        if m["direction"] == "in":
            items = thread.get("media", {}).get(m["id"], [])
            body = m["body"] if (m["body"].strip() or items) else media.EMPTY_TEXT
            title = "They wrote" if m["body"].strip() or not items else (
                "They sent " + media.media_phrase(media.shown_items(items)))
            alerted = [a for a in alerts_of.get(m["id"], []) if a["state"] != "failed"]
            detail = "; ".join(_alert_detail(config, a) for a in alerted)
            entries.append(Entry(at, when(at, tz), "text_in", title, body, detail,
                                 media=media_views(m["conversation_id"], items)))
            continue
        who = {"owner": f"{first_name(config, m['author'], guests)} replied" if m["author"]
               else "Owner reply",
               "auto": "Automatic text"}.get(m["kind"], f"Text ({m['kind']})")
        status = m["status"] + (f": {described(m['gateway'], m['error'])}" if m["error"] else "")
        items = thread.get("media", {}).get(m["id"], [])  # an owner's photos, sent as MMS
        if items and not m["body"].strip():
            who += " with " + media.media_phrase(media.shown_items(items))
        entries.append(Entry(at, when(at, tz), "text_out", who, m["body"], detail=status,
                             media=media_views(m["conversation_id"], items)))
    for index, a in enumerate(thread["assignments"]):
        by = by_whom(config, a["reason"], guests)
        to = owner_name(config, a["owner_id"], guests)
        if index == 0:
            title = f"{to} owns it"
        elif by and a["reason"].startswith("claimed by"):
            title = f"{by} took it"
        elif by:
            title = f"{by} gave it to {to}"
        else:
            title = f"Given to {to}"
        entries.append(Entry(a["at"], when(a["at"], tz), "assignment", title,
                             detail="" if by else a["reason"]))
    for o in thread["outcomes"]:
        value = f" (${o['value']:,.0f})" if o["value"] else ""
        by = by_whom(config, o["source"], guests)
        title = f"{by} marked it {o['stage']}{value}" if by else f"Marked {o['stage']}{value}"
        entries.append(Entry(o["at"], when(o["at"], tz), "outcome", title,
                             detail="" if by else o["source"]))
    for note in thread["notes"]:
        entries.append(Entry(note["at"], when(note["at"], tz), "note",
                             f"Internal note by {owner_name(config, note['owner_id'], guests)}",
                             note["body"]))
    entries.sort(key=lambda e: e.at)
    return entries


# -- what a page showed of a conversation's state, and what changed since ------------------

def shown_state(config: Config, conversation: dict, outcome: str, kind: str, now: float) -> dict:
    """The state a thread page shows (and its forms were made from), as plain strings."""
    snoozed = (conversation["snoozed_until"] or 0) > now
    return {"owner": conversation["owner_id"],
            "done": "done" if conversation["status"] == "closed" else "",
            "snoozed": when(conversation["snoozed_until"], config.business.timezone) if snoozed else "",
            "outcome": outcome, "name": conversation["contact_name"] or "", "class": kind}


def read_seen(raw: str) -> dict:
    """A form's `seen` field (shown_state as JSON); anything else reads as an unknown state."""
    try:
        seen = json.loads(raw)
    except ValueError:
        return {}
    return {k: v for k, v in seen.items() if isinstance(v, str)} if isinstance(seen, dict) else {}


def what_changed(config: Config, seen: dict, now: dict) -> str:
    """'This changed while you were looking: …', saying what, from a page's state to now."""
    changes = []
    if seen.get("owner") != now["owner"]:
        changes.append(f"{owner_name(config, now['owner'])} owns it now")
    if seen.get("done") != now["done"]:
        changes.append("it was marked done" if now["done"] else "it was opened again")
    if seen.get("snoozed") != now["snoozed"]:
        changes.append(f"it is snoozed until {now['snoozed']}" if now["snoozed"]
                       else "it is no longer snoozed")
    if seen.get("outcome") != now["outcome"]:
        changes.append(f"it was marked {now['outcome']}" if now["outcome"] else "its outcome changed")
    if seen.get("name") != now["name"]:
        changes.append(f"the contact's name is now “{now['name']}”" if now["name"]
                       else "the contact's name was removed")
    if seen.get("class") != now["class"]:
        changes.append(f"the contact is now a {now['class']}")
    return "This changed while you were looking: " + ("; ".join(changes) or "someone else changed it") \
        + ". Nothing of yours was applied; here it is as it is now."


@dataclass(frozen=True)
class SessionRow:
    browser: str  # the User-Agent it signed in with, as sent (the template escapes it)
    address: str
    started: str
    last_seen: str
    current: bool


def session_rows(rows: list[dict], current_digest: str, timezone: str) -> list[SessionRow]:
    """An owner's live sessions for the settings page, this browser's first."""
    made = [SessionRow(row["user_agent"] or "(unknown browser)", row["address"] or "?",
                       when(row["created_at"], timezone), when(row["seen_at"], timezone),
                       row["token_digest"] == current_digest) for row in rows]
    return sorted(made, key=lambda r: not r.current)


@dataclass(frozen=True)
class IncidentRow:
    title: str
    summary: str
    since: str
    recovered: str  # "" while it is open


def incident_rows(rows: list[dict], timezone: str) -> list[IncidentRow]:
    """Incidents as `textback status` names them: the kind's title, its summary, since when."""
    return [IncidentRow(incident_title(Key(row["kind"], row.get("pbx", ""))), row["summary"],
                        when(row["opened_at"], timezone), when(row["closed_at"], timezone))
            for row in rows]


@dataclass(frozen=True)
class DeliveryRow:
    when: str
    endpoint: str
    type: str
    event_id: str
    state: str
    tries: int
    last_status: str  # "-" when no HTTP answer came
    last_error: str


def delivery_rows(rows: list[dict], timezone: str) -> list[DeliveryRow]:
    """Webhook deliveries with the columns of `textback webhooks log` (never a URL or secret)."""
    return [DeliveryRow(when(row["created_at"], timezone), row["endpoint"], row["type"],
                        row["event_id"], row["state"], row["attempts"],
                        "-" if row["last_status"] is None else str(row["last_status"]),
                        row["last_error"])
            for row in rows]
