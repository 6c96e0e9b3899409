"""Which incidents are under way, and the admin's email when one starts or ends (pure).

The daemon observes (textback/workers/ops.py); this module decides. An
incident is open while its condition holds; the admin gets one email when it
opens and one when it recovers, never one per check. An incident is one of a
kind, or, for the kinds about a PBX (`PBX_KINDS`), one per PBX (`Key`): with
several PBXs it names the PBX, and each PBX recovers on its own.

Who judges an incident, in a fleet of daemons on one database (`judge`):

- **A PBX's incidents** (AMI down, no call events, AMI behind) are judged by the daemon that
  listens to that PBX: the holder of its lease (on SQLite, the one daemon). A daemon standing
  by for it sees nothing of it and leaves them alone. The holder closes one only on evidence
  that it recovered, seen by itself: a login for AMI down, a call event since it opened for no
  call events, five minutes of reading without falling behind for AMI behind. So a daemon that
  has just taken a PBX over (or just started) keeps its open incidents, and judges them from
  then on: it neither opens them a second time nor closes them for having seen nothing yet.
- **The other kinds** are judged from the daemon's own view (`OWN_VIEW_KINDS`, the reasons
  there), so each records the daemon that opened it, and only that daemon closes it. One
  whose daemon is gone (killed, or an earlier start on SQLite) is taken over by a daemon that
  judges the same kind: kept if that one sees the condition too, closed if it does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo
from typing import TYPE_CHECKING, Collection, Mapping, NamedTuple

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
    "ami_behind": "textback records calls more slowly than they happen",
    "database_down": "textback cannot reach its database",
}
# The kinds that are about one PBX: with several PBXs, the title names it.
PBX_TITLES = {
    "ami_down": "textback is not connected to the Asterisk of PBX {pbx}",
    "no_call_events": "no calls seen on PBX {pbx} during business hours",
    "ami_behind": "textback records the calls of PBX {pbx} more slowly than they happen",
}
# Judged by the daemon that listens to the PBX (its lease's holder), whatever daemon opened it.
PBX_KINDS = frozenset(PBX_TITLES)
# Judged from the daemon's own view: what one daemon sees of them says nothing of another's.
# - gateway_failing: the sends in a row this daemon made. Another daemon reaches the gateway
#   from another host, and with the asterisk gateway through other PBXs: its texts going
#   out do not show that this one's do.
# - texts_expiring: the texts this daemon expired, until its own next text is accepted (its
#   own gateway path works again); another's accepted text shows nothing of that path.
# - mail_refused: this daemon's mail to the relay, from its host, with its credentials.
# - reply_listener: the reply-mail port on this daemon's host.
# - routing_table: the AGI's routing file this daemon writes on its host.
# - webhook_signing: the webhooks this daemon's listener refused, with the keys its config
#   has: a daemon whose key is right says nothing of one whose key is stale.
# (database_down is never stored: it is mailed straight to the relay by the daemon cut off.)
OWN_VIEW_KINDS = frozenset({"gateway_failing", "texts_expiring", "mail_refused",
                            "reply_listener", "routing_table", "webhook_signing"})
# How long after the last sign of falling behind the incident stays open: a burst's backlog
# is read within seconds, so quiet for this long means textback keeps up again.
BEHIND_RECOVERED_MINUTES = 5.0
# A call committed this long after the tracker finished it shows a commit backlog (calls come
# faster than the store records them), the other way of falling behind than AMI's; the same
# bound as AMI's default Ping timeout. A text goes about 30 s after a call, so 5 s is early.
LATE_COMMIT_SECONDS = 5.0
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
    "ami_behind": "Calls came faster than textback read or recorded them, so they were "
                  "recorded and texted late (none is lost: they are kept in order). Check "
                  "what else uses this host's CPU, and `textback status`; if calls are this "
                  "many every day, give textback a faster host or fewer PBXs per daemon.",
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
class PbxView:
    """What this daemon sees of one PBX (by its incident name)."""

    # True: this daemon is logged in to its AMI; False: it should listen (it holds the PBX)
    # and is not logged in; None: another daemon of the fleet holds its lease.
    listened: bool | None
    held_since: float | None = None  # since when this daemon holds it (None: it does not)
    call_event_at: float | None = None  # the last call event this daemon saw on it


class Opened(NamedTuple):
    """An open incident as the store keeps it."""

    opened_at: float
    opened_here: bool = True  # opened by this daemon (this start of it)
    opener_gone: bool = False  # the daemon that opened it is gone


@dataclass(frozen=True)
class Judgement:
    """What this daemon does with the open incidents: close those that recovered, and take
    over those whose daemon is gone while it sees the same condition (they become its own)."""

    ended: list[Key]
    adopted: list[Key]


@dataclass(frozen=True)
class Observed:
    """What the daemon saw, at `now`."""

    now: float
    # Each PBX this daemon should listen to and does not, since when (not one another daemon
    # of a fleet holds: that one observes it).
    ami_down_since: Mapping[str, float]
    # Each PBX this daemon holds: business hours since its last call event, or since this
    # daemon began holding it (empty: not counted, without business hours or no_calls_hours).
    quiet_open_hours: Mapping[str, float]
    gateway_failures_in_row: int
    gateway_error: str
    expired: str | None  # the last text that expired, until a text is accepted again
    mail_error: str | None  # the relay's last refusal, until a mail goes through
    reply_listener_error: str | None
    routing_error: str | None
    webhook_signing_error: str | None = None  # the last, until a webhook is accepted again
    # Each PBX this daemon holds: the last time its AMI's answers waited behind its events.
    ami_behind_at: Mapping[str, float] = field(default_factory=dict)
    # Each PBX this daemon holds: the last time one of its calls was committed later than
    # LATE_COMMIT_SECONDS after the tracker finished it (read on time, recorded late).
    calls_late_at: Mapping[str, float] = field(default_factory=dict)
    pbxs: Mapping[str, PbxView] = field(default_factory=dict)  # every PBX of this daemon
    database_down_since: float | None = None  # the store stopped answering then
    database_error: str = ""  # and why, as it said last


def title(key: Key) -> str:
    """An incident's title, naming its PBX when it is about one of several."""
    if key.pbx and key.kind in PBX_TITLES:
        return PBX_TITLES[key.kind].format(pbx=key.pbx)
    return TITLES.get(key.kind, key.kind)


def seen_on(key: Key, summary: str, host: str) -> str:
    """In a fleet, an incident judged from a daemon's own view names that daemon's host in its
    summary (the email and the admin page): the admin looks there, not at every daemon."""
    return f"{summary} (seen by the daemon on {host})" if key.kind in OWN_VIEW_KINDS else summary


def active(seen: Observed, settings: IncidentsConfig) -> dict[Key, str]:
    """The incidents under way, each with a one-line summary."""
    found: dict[Key, str] = {}
    for pbx, since in sorted(seen.ami_down_since.items()):
        if seen.now - since > settings.ami_down_minutes * 60:
            which = f"PBX {pbx}: " if pbx else ""
            found[Key("ami_down", pbx)] = (f"{which}not logged in to AMI for "
                                          f"{(seen.now - since) / 60:.0f} minutes")
    for pbx, quiet in sorted(seen.quiet_open_hours.items()):
        if settings.no_calls_hours is not None and quiet > settings.no_calls_hours:
            which = f"PBX {pbx}: " if pbx else ""
            found[Key("no_call_events", pbx)] = (f"{which}no call event from AMI for "
                                                 f"{quiet:.1f} hours of business hours")
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
    for pbx in sorted(set(seen.ami_behind_at) | set(seen.calls_late_at)):
        which = f"PBX {pbx}: " if pbx else ""
        if seen.now - seen.ami_behind_at.get(pbx, -math.inf) < BEHIND_RECOVERED_MINUTES * 60:
            found[Key("ami_behind", pbx)] = (f"{which}AMI's answer to a Ping waited behind the "
                                             f"events still to be read: calls are being "
                                             f"recorded late")
        elif seen.now - seen.calls_late_at.get(pbx, -math.inf) < BEHIND_RECOVERED_MINUTES * 60:
            found[Key("ami_behind", pbx)] = (f"{which}calls were read on time but committed more "
                                             f"than {LATE_COMMIT_SECONDS:g} s after they ended: "
                                             f"calls are being recorded late")
    # The same bound as AMI's: a daemon cut off from its database no longer listens to the PBX.
    if (seen.database_down_since is not None
            and seen.now - seen.database_down_since > settings.ami_down_minutes * 60):
        found[Key("database_down")] = (f"the database has not answered for "
                                  f"{(seen.now - seen.database_down_since) / 60:.0f} minutes: "
                                  f"{one_line(seen.database_error, 300)}")
    return found


def judge(open_now: Mapping[Key, Opened], under_way: Collection[Key], seen: Observed,
          settings: IncidentsConfig) -> Judgement:
    """Which open incidents this daemon closes, and which it takes over (see the module's
    docstring: who judges what)."""
    ended: list[Key] = []
    adopted: list[Key] = []
    for key, opened in open_now.items():
        if key.kind in PBX_KINDS:
            if _pbx_recovered(key, opened, under_way, seen, settings):
                ended.append(key)
        elif opened.opened_here or opened.opener_gone or key.kind not in OWN_VIEW_KINDS:
            if key not in under_way:
                ended.append(key)
            elif not opened.opened_here:
                adopted.append(key)
    return Judgement(ended, adopted)


def _pbx_recovered(key: Key, opened: Opened, under_way: Collection[Key], seen: Observed,
                   settings: IncidentsConfig) -> bool:
    """An incident about a PBX ends by its holder's own evidence; one about a PBX this daemon
    no longer has at all (taken out of the config) ends, since nobody judges it any more."""
    view = seen.pbxs.get(key.pbx)
    if view is None:
        return True
    if view.listened is None or key in under_way:
        return False  # another daemon holds it; or it still holds
    if key.kind == "ami_down":
        return view.listened
    if key.kind == "no_call_events":
        if settings.no_calls_hours is None or key.pbx not in seen.quiet_open_hours:
            return True  # no longer counted: nothing to judge
        return view.call_event_at is not None and view.call_event_at >= opened.opened_at
    # ami_behind: this daemon has read the PBX, not falling behind, for the recovery's minutes.
    return (view.held_since is not None
            and seen.now - view.held_since >= BEHIND_RECOVERED_MINUTES * 60)


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
