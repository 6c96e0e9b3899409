"""Which incidents are under way, and the admin's email when one starts or ends (pure).

The daemon observes (textback/workers/ops.py); this module decides. An
incident is open while its condition holds; the admin gets one email when it
opens and one when it recovers, never one per check. An incident is one of a
kind, or, for AMI down, one per PBX (`Key`): with several PBXs it names the one
that is down, and each PBX recovers on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo
from typing import TYPE_CHECKING, Collection, Iterable, Mapping, NamedTuple

from textback.core.alerts import one_line

if TYPE_CHECKING:  # the core reads config values; it never builds them
    from textback.config import IncidentsConfig

TITLES = {
    "ami_down": "textback is not connected to Asterisk",
    "no_call_events": "no calls seen during business hours",
    "gateway_failing": "the SMS gateway keeps failing",
    "texts_expiring": "texts to callers are expiring unsent",
    "mail_refused": "the SMTP relay refuses mail",
    "reply_listener": "the reply-mail listener is not running",
    "routing_table": "the routing table cannot be written",
    "webhook_signing": "webhooks are signed with a key textback does not have",
    "ami_behind": "textback reads calls more slowly than they happen",
    "database_down": "textback cannot reach its database",
}
# The kinds that are about one PBX: with several PBXs, the title names it.
PBX_TITLES = {
    "ami_down": "textback is not connected to the Asterisk of PBX {pbx}",
}
# How long after the last sign of falling behind the incident stays open: a burst's backlog
# is read within seconds, so quiet for this long means textback keeps up again.
BEHIND_RECOVERED_MINUTES = 5.0
WHAT_TO_CHECK = {
    "ami_down": "Check that Asterisk runs, that the manager user in manager.conf matches the "
                "configuration, and that `textback check` logs in. Meanwhile its calls are "
                "not seen as they happen: they are read back from its CDR when it returns "
                "(with `recovery` configured), and, with the asterisk gateway, the texts from "
                "its numbers wait for it until their deadline.",
    "no_call_events": "AMI answers, but carries no calls: check the manager user's read "
                      "permissions (call, dialplan) and that calls reach the trunk. Place a "
                      "test call.",
    "gateway_failing": "Check the gateway's account, credentials and status page, and run "
                       "`textback check`.",
    "texts_expiring": "Callers were not texted in time and their owners were emailed to call "
                      "back. Check the gateway (`textback check`, `textback status`).",
    "mail_refused": "Owners are not getting replies and notices: check the relay, its "
                    "credentials and the sender address. The mails wait and are retried.",
    "reply_listener": "Owners' email replies cannot reach textback: free the port or change "
                      "reply_mail.listen_port. textback retries every minute.",
    "routing_table": "The AGI script keeps an old table or falls back to its default ring "
                     "targets: check the directory of agi.routing_file and its permissions.",
    "ami_behind": "AMI events came faster than textback read them, so calls were recorded "
                  "and texted late (none is lost: they are read in order). Check what else "
                  "uses this host's CPU, and `textback status`; if calls are this many every "
                  "day, give textback a faster host or fewer PBXs per daemon.",
    "webhook_signing": "Replies and delivery reports are refused (403) and the provider retries "
                       "them for a while: configure the key and algorithm its webhook settings "
                       "sign with (for Twilio: twilio.shared_key, shared_key_id, "
                       "shared_key_algorithm) and restart textback. If you set no such key, "
                       "someone else is calling the webhook.",
    "database_down": "Nothing this daemon receives can be stored, and it does not listen to the "
                     "PBX: check the database server (PostgreSQL: `textback check`, its log, the "
                     "network between) or, on SQLite, the disk. In a fleet, a daemon that still "
                     "reaches the database takes the PBX over within seconds; if every daemon "
                     "sends this email, none does, and missed calls are not texted until the "
                     "database answers (the CDR is read back then). This email went straight to "
                     "the relay, since the mail queue is in the database.",
}


class Key(NamedTuple):
    """What one open incident is about: its kind and, for a kind about one PBX, that PBX (''
    for none in particular, and for the single `ami:` form's PBX, which is never named)."""

    kind: str
    pbx: str = ""


@dataclass(frozen=True)
class Observed:
    """What the daemon saw, at `now`."""

    now: float
    # Each PBX this daemon should listen to and does not, since when (not one another daemon
    # of a fleet holds: that one observes it).
    ami_down_since: Mapping[str, float]
    quiet_open_hours: float | None  # business hours since the last call event (None: not counted)
    gateway_failures_in_row: int
    gateway_error: str
    expired: str | None  # the last text that expired, until a text is accepted again
    mail_error: str | None  # the relay's last refusal, until a mail goes through
    reply_listener_error: str | None
    routing_error: str | None
    webhook_signing_error: str | None = None  # the last, until a webhook is accepted again
    ami_behind_at: float | None = None  # the last time AMI's answers waited behind its events
    database_down_since: float | None = None  # the store stopped answering then
    database_error: str = ""  # and why, as it said last


def title(key: Key) -> str:
    """An incident's title, naming its PBX when it is about one of several."""
    if key.pbx and key.kind in PBX_TITLES:
        return PBX_TITLES[key.kind].format(pbx=key.pbx)
    return TITLES.get(key.kind, key.kind)


def active(seen: Observed, settings: IncidentsConfig) -> dict[Key, str]:
    """The incidents under way, each with a one-line summary."""
    found: dict[Key, str] = {}
    for pbx, since in sorted(seen.ami_down_since.items()):
        if seen.now - since > settings.ami_down_minutes * 60:
            which = f"PBX {pbx}: " if pbx else ""
            found[Key("ami_down", pbx)] = (f"{which}not logged in to AMI for "
                                          f"{(seen.now - since) / 60:.0f} minutes")
    if (settings.no_calls_hours is not None and seen.quiet_open_hours is not None
            and seen.quiet_open_hours > settings.no_calls_hours):
        found[Key("no_call_events")] = (f"no call event from AMI for "
                                        f"{seen.quiet_open_hours:.1f} hours of business hours")
    if seen.gateway_failures_in_row >= settings.gateway_failures:
        found[Key("gateway_failing")] = (f"{seen.gateway_failures_in_row} sends in a row failed; "
                                         f"the last: {one_line(seen.gateway_error, 300)}")
    if seen.expired is not None:
        found[Key("texts_expiring")] = one_line(seen.expired, 300)
    if seen.mail_error is not None:
        found[Key("mail_refused")] = one_line(seen.mail_error, 300)
    if seen.reply_listener_error is not None:
        found[Key("reply_listener")] = one_line(seen.reply_listener_error, 300)
    if seen.routing_error is not None:
        found[Key("routing_table")] = one_line(seen.routing_error, 300)
    if seen.webhook_signing_error is not None:
        found[Key("webhook_signing")] = one_line(seen.webhook_signing_error, 300)
    if seen.ami_behind_at is not None and seen.now - seen.ami_behind_at < BEHIND_RECOVERED_MINUTES * 60:
        found[Key("ami_behind")] = ("AMI's answer to a Ping waited behind the events still to be "
                               "read: calls are being recorded late")
    # The same bound as AMI's: a daemon cut off from its database no longer listens to the PBX.
    if (seen.database_down_since is not None
            and seen.now - seen.database_down_since > settings.ami_down_minutes * 60):
        found[Key("database_down")] = (f"the database has not answered for "
                                  f"{(seen.now - seen.database_down_since) / 60:.0f} minutes: "
                                  f"{one_line(seen.database_error, 300)}")
    return found


def ended(open_keys: Iterable[Key], under_way: Collection[Key],
          held_elsewhere: Collection[str]) -> list[Key]:
    """The open incidents that recovered: those no longer under way, but for an incident about
    a PBX that another daemon of the fleet holds (this one stands by for it, and sees nothing
    of it): its holder judges whether that PBX recovered."""
    return [key for key in open_keys if key not in under_way
            and not (key.kind in PBX_TITLES and key.pbx in held_elsewhere)]


def opened_mail(key: Key, summary: str, at: float, zone: str) -> tuple[str, str]:
    """Subject and text of the admin's email when an incident starts."""
    when = datetime.fromtimestamp(at, ZoneInfo(zone)).strftime("%a %d %b %H:%M %Z")
    return (f"textback incident: {title(key)}",
            f"Since {when}: {summary}.\n\n{WHAT_TO_CHECK[key.kind]}\n\n"
            f"You get one more email when it recovers. `textback status` lists open incidents.")


def recovered_mail(key: Key, summary: str, opened_at: float, at: float,
                   zone: str) -> tuple[str, str]:
    """Subject and text of the admin's email when an incident ends."""
    when = datetime.fromtimestamp(at, ZoneInfo(zone)).strftime("%a %d %b %H:%M %Z")
    return (f"textback recovered: {title(key)}",
            f"Recovered at {when}, after {(at - opened_at) / 60:.0f} minutes.\n\n"
            f"It began with: {summary}.")
