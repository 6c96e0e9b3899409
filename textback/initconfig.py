"""What `textback init` writes, from the installer's answers: values in, file texts out, no I/O.

The config is written commented, key by key, so the installer can read what
each does; the manager.conf snippet gives the AMI user what the daemon uses
and nothing more (README "A least-privilege AMI user").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from textback.config import EMAIL_PATTERN

# What the daemon reads and does over AMI, and why (the snippet's comments say the same).
AMI_READ = "system,call,user,dialplan"  # FullyBooted; channel events; the inbound-SMS UserEvent; VarSet and Newexten
AMI_WRITE = "message,reporting"  # MessageSend; CoreShowChannels and Getvar (the self-test's trunk)
# Milliseconds Asterisk lets one write to the session wait before it drops the session and
# the events queued for it (its default, 100, drops a reader behind for a moment: a burst
# of calls, a busy host). tests/test_overload_lab.py holds the lab's user to this value.
AMI_WRITE_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class Owner:
    id: str
    name: str
    email: str


@dataclass(frozen=True)
class Answers:
    business_name: str
    timezone: str
    numbers: tuple[str, ...]  # canonical E.164
    owners: tuple[Owner, ...]
    admin_email: str
    ami_host: str
    ami_port: int
    ami_username: str
    trunk: str
    permit: str  # the address manager.conf lets the AMI user log in from
    secret_file: str
    selftest_secret_file: str
    smtp_host: str
    smtp_port: int
    database: str
    routing_file: str
    cdr_secret_file: str | None = None  # FreePBX: recovery reads asteriskcdrdb as this user

    @property
    def selftest_username(self) -> str:
        """The optional originate-only user: the main one's name, marked."""
        return f"{self.ami_username}-selftest"


def parse_owner(text: str, taken: set[str]) -> Owner:
    """'Dana Reyes <dana@example.com>' or 'dana@example.com'; the id is the mailbox's name,
    made unique among `taken`. ValueError when it holds no email address."""
    name, address = parseaddr(text.strip())
    if not re.match(EMAIL_PATTERN, address or ""):
        raise ValueError(f"{text.strip()!r} is not an email address (write dana@example.com "
                         f"or \"Dana Reyes <dana@example.com>\")")
    base = re.sub(r"[^a-z0-9_.-]", "", address.partition("@")[0].lower()).lstrip("._-") or "owner"
    owner_id, n = base, 2
    while owner_id in taken:
        owner_id, n = f"{base}{n}", n + 1
    return Owner(owner_id, name.strip() or address.partition("@")[0].capitalize(), address)


def endpoint_rows(listing: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(name, state, contacts) of each endpoint in a PJSIPShowEndpoints answer."""
    rows = [(e.get("ObjectName", ""), e.get("DeviceState", ""), e.get("Contacts", "").rstrip(","))
            for e in listing if e.get("Event") == "EndpointList"]
    return sorted(row for row in rows if row[0])


def _q(value: str) -> str:
    """A YAML scalar: JSON strings are valid YAML, and quote whatever needs it."""
    return json.dumps(value, ensure_ascii=False)


def config_text(a: Answers) -> str:
    owners = "\n".join(f"  - id: {o.id}\n    name: {_q(o.name)}\n    email: {o.email}" for o in a.owners)
    first = a.owners[0].id
    numbers = "\n".join(f"  - number: {_q(n)}\n    owner: {first}" for n in a.numbers)
    return f"""\
# textback configuration, written by `textback init`. Every key is explained in
# config.example.yaml; `textback check -c <this file>` tests it end to end.

business:
  name: {_q(a.business_name)}
  timezone: {a.timezone}  # IANA zone: hours, quiet hours and reports use it

# The AMI user textback logs in as. Paste manager-textback.conf (written beside
# this file) into Asterisk's manager.conf or manager_custom.conf, then
# `asterisk -rx "manager reload"`.
ami:
  host: {_q(a.ami_host)}
  port: {a.ami_port}
  username: {_q(a.ami_username)}
  secret: {{file: {_q(a.secret_file)}}}   # mode 0600, random; the same secret is in the snippet

# Calls from this PJSIP trunk endpoint are calls from outside.
inbound:
  trunks: [{_q(a.trunk)}]

# The people who own missed calls and get the homeowners' replies by email.
owners:
{owners}

# Incidents and self-test reports go here.
admin_email: {a.admin_email}

# The business numbers (DIDs) callers dial. Texts go out from the number dialled.
# More than one owner? Set `assignment: round_robin` and `owners: [...]` on a number.
numbers:
{numbers}

text:
  delay_seconds: 30                 # after the call ends
  template: "Hi, this is {{business_name}}. Sorry we missed your call! How can we help?"

# Business hours (all week, 08:00-17:00 by default here); outside them the
# after-hours template is used if you set one (text.after_hours_template).
hours:
  windows:
    - days: [mon, tue, wed, thu, fri]
      start: "08:00"
      end: "17:00"

# How texts are sent. `log` only writes them to the log: choose your provider
# (asterisk, twilio, telnyx, kannel, http; see docs/gateways.md) before going live.
gateway:
  type: log

# The mail relay for owner alerts and notices.
smtp:
  host: {_q(a.smtp_host)}
  port: {a.smtp_port}
  security: none                    # starttls or tls for a relay off this machine
  sender: textback@{a.owners[0].email.partition("@")[2]}

agi:
  routing_file: {_q(a.routing_file)}
{_recovery(a)}
storage:
  path: {_q(a.database)}

# The self-test (`textback selftest`, and on a schedule): fill in your mobile,
# paste the [{a.selftest_username}] part of manager-textback.conf, and uncomment.
#selftest:
#  recipient: "+1..."               # your own mobile: the self-test texts it
#  schedule: "mon 07:30"
#  ami:
#    username: {a.selftest_username}
#    secret: {{file: {_q(a.selftest_secret_file)}}}
"""


def _recovery(a: Answers) -> str:
    """FreePBX's CDR database, for the calls that end while textback is not logged in."""
    if a.cdr_secret_file is None:
        return ""
    return f"""
# Calls that end while textback is not logged in to AMI (a restart, an upgrade)
# are recovered from FreePBX's CDR database, read by a user that may only SELECT
# (`textback init` printed the CREATE USER and GRANT to run).
recovery:
  max_age_minutes: 30
  cdr:
    type: mysql
    mysql:
      host: 127.0.0.1
      port: 3306
      database: asteriskcdrdb
      user: {_q(a.ami_username)}
      secret: {{file: {_q(a.cdr_secret_file)}}}
"""


def manager_snippet(a: Answers, secret: str, selftest_secret: str) -> str:
    """The manager.conf users to paste: textback's own, and the optional self-test one."""
    return f"""\
; textback's AMI user, written by `textback init`. Paste into manager.conf (or
; manager_custom.conf on FreePBX), then: asterisk -rx "manager reload"
;   read  system     FullyBooted: texts wait until Asterisk has loaded its modules
;         call       channel events: the call tracker
;         user       UserEvent: inbound SMS from dialplan/textback.conf
;         dialplan   VarSet and Newexten: voicemail, IVR, queue and route variables
;   write message    MessageSend: texts through the asterisk gateway
;         reporting  CoreShowChannels after a login; Getvar for the self-test's trunk
;   writetimeout     a reader behind for a moment (a burst of calls) keeps its session
;                    and its events; Asterisk's default of 100 ms drops both
; It cannot originate calls, run CLI commands or reload anything.
[{a.ami_username}]
secret = {secret}
deny = 0.0.0.0/0.0.0.0
permit = {a.permit}
read = {AMI_READ}
write = {AMI_WRITE}
writetimeout = {AMI_WRITE_TIMEOUT_MS}

; Optional, for the self-test only: it may place the test call and nothing else.
;[{a.selftest_username}]
;secret = {selftest_secret}
;deny = 0.0.0.0/0.0.0.0
;permit = {a.permit}
;write = originate
"""
