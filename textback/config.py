"""Load and validate the one YAML file an installer edits.

Every problem is reported at once, each with its YAML path and line, so an
installer fixes the file in one pass instead of one error per restart.
Secrets are never written in the file itself: they come from a file or an
environment variable, and are held as SecretStr so they never reach a log.
"""

from __future__ import annotations

import base64
import csv
import logging
import re
import urllib.parse
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holiday_calendars
import phonenumbers
from pydantic import (Field, IPvAnyNetwork, PrivateAttr, SecretStr, ValidationError,
                      ValidationInfo, field_validator, model_validator)

from sms_gateway.settings import (
    CallbackSettings,
    HttpSettings,
    KannelSettings,
    PluginSettings,
    TelnyxSettings,
    TwilioSettings,
    resolve_secrets,
)

from textback.crm import adapter_class
from textback.core import events as hook_events
from textback.hooks.addresses import literal_host_refusal
from textback.core.numbers import to_e164
from textback.core.relay import QuietWindow, parse_window
from textback.core.push import contact_problem
from textback import yamlread
from textback.redact import Redactor
from textback.config_schema import SecretRef, Strict
from textback.core.selftest import parse_schedule
from textback.core.templates import TemplateError, check_template
from textback.core.intake import (Fact, Intake, ServiceArea, Vocabulary, corrections, extract,
                                  zip_place)

log = logging.getLogger("textback")

DEFAULT_CONFIG_PATH = Path("/etc/textback/config.yaml")


# How many dialled DIDs Config.dialled remembers the match of.
MAX_REMEMBERED_DIDS = 1024


class ConfigError(Exception):
    """The configuration is unusable; `problems` lists (yaml_path, message).

    A fleet's company config is read from two files (textback/fleet_config.py): then `files`
    names, problem by problem, the file its key and line are in (the company's file, or the
    fleet's main file for a section it inherits); None for a config read from one file."""

    def __init__(self, source: str, problems: list[tuple[str, str]],
                 files: list[str] | None = None):
        self.source = source
        self.problems = problems
        self.files = files
        super().__init__("\n".join(self.located()))

    def located(self) -> list[str]:
        """Each problem as `file: key (line N): message`."""
        files = self.files or [self.source] * len(self.problems)
        return [f"{file}: {where}: {message}"
                for file, (where, message) in zip(files, self.problems)]

    def described(self) -> list[str]:
        """Each problem as one line for the person who ran the command: `key (line N):
        message`, with its file first when the config came from more than one file."""
        if self.files is None:
            return [f"{where}: {message}" for where, message in self.problems]
        return self.located()


@dataclass(frozen=True)
class Origins:
    """Where each key of a config was written: its file, and the line of each YAML path.

    `inherited` is None for a config read from one file. A fleet's company config maps each
    top-level section it inherits from the fleet's main file to that file's Origins, so a
    problem in an inherited key is named by the main file's line."""

    source: str
    lines: Mapping[str, int]
    inherited: Mapping[str, "Origins"] | None = None

    def of(self, path: str) -> tuple[str, str]:
        """(the file `path` is written in, `path (line N)` with that file's line)."""
        section = re.match(r"[^.\[]+", path)
        main = (self.inherited or {}).get(section.group(0)) if section else None
        if main is not None:
            return main.of(path)
        return self.source, _with_line(path, self.lines)

    def refused(self, problems: list[tuple[str, str]]) -> ConfigError:
        """The error for `problems` given as (YAML path, message), each named by its line."""
        located = [(self.of(path), message) for path, message in problems]
        return ConfigError(self.source, [(where, message) for (_, where), message in located],
                           files=None if self.inherited is None
                           else [file for (file, _), _ in located])


def _is_e164(value: str, region: str | None = None) -> str:
    """A number in any shape people write it, as canonical E.164 (national forms need `region`)."""
    number = to_e164(value, region)
    if number is None:
        where = f"in {region} or " if region else ""
        raise ValueError(f"{value!r} is not a valid phone number {where}in E.164 form "
                         f"(+ and country code)")
    return number


def _business_region(raw: dict[str, Any]) -> str | None:
    """The country of the first business number: how national numbers in contacts are read."""
    numbers = raw.get("numbers")
    first = numbers[0] if isinstance(numbers, list) and numbers else None
    number = to_e164(str(first.get("number", "")), None) if isinstance(first, dict) else None
    return phonenumbers.region_code_for_number(phonenumbers.parse(number)) if number else None


E164 = Annotated[str, Field(min_length=2)]
Identifier = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")]


class BusinessConfig(Strict):
    name: str = Field(min_length=1, max_length=60)
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as America/New_York)") from None
        return value


class AmiConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: str = Field(min_length=1)
    secret: SecretRef
    tls: bool = False
    tls_verify: bool = True
    ping_interval: float = Field(10.0, gt=0)
    ping_timeout: float = Field(5.0, gt=0)
    reconnect_max_seconds: float = Field(60.0, gt=0)


class InboundConfig(Strict):
    """How textback recognises a call from outside: by trunk endpoint or by dialplan context."""

    trunks: list[str] = Field(default_factory=list)
    contexts: list[str] = Field(default_factory=list)
    grace_seconds: float = Field(0.5, ge=0, le=10)
    # A call with no Hangup seen this long after it began (the link dropped mid-call and the
    # channel listing after the login failed) is let go by the tracker and decided by the CDR.
    max_call_hours: float = Field(4.0, ge=0.25, le=48)

    @model_validator(mode="after")
    def _something_to_match(self) -> "InboundConfig":
        if not self.trunks and not self.contexts:
            raise ValueError("list at least one trunk endpoint or inbound context")
        return self


EMAIL_PATTERN = r"^[^@\s<>\"]+@[^@\s<>\"]+$"


AlertChannel = Literal["email", "sms", "push"]
ALERT_CHANNELS: tuple[str, ...] = ("email", "sms", "push")


class OwnerAlertsConfig(Strict):
    """How an owner hears of a homeowner's reply, an assignment or an escalation, any mix of at
    least one: with `email`, the alert email for each reply; with `push`, on the devices the
    owner turned notifications on for (see `push:`); with `sms`, by a text to their own mobile
    `sms`, sent from the business number `sms_from` (by default the number the homeowner
    texted), which the owner answers by texting back. Escalations, digests and notices go by
    email whatever the choice. Alert texts and pushes due within `quiet_hours` (HH:MM-HH:MM,
    business time zone) wait until it ends (a push then past its deadline is dropped). The owner may change the channels on the inbox's settings page;
    this is the default."""

    channels: list[AlertChannel] = Field(default_factory=lambda: ["email", "push"], min_length=1)
    sms: E164 | None = None
    sms_from: E164 | None = None
    quiet_hours: str | None = None

    @field_validator("sms", "sms_from")
    @classmethod
    def _e164(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _is_e164(value, (info.context or {}).get("region"))

    @field_validator("quiet_hours")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        return None if value is None else str(parse_window(value))

    @model_validator(mode="after")
    def _complete(self) -> "OwnerAlertsConfig":
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels: a channel is listed twice")
        if "sms" in self.channels and self.sms is None:
            raise ValueError("channels lists sms: set `sms`, the owner's mobile number")
        return self

    def chosen(self, stored: list[str] | None) -> frozenset[str]:
        """The channels in effect: the owner's own choice on the settings page (`stored`), else
        this default; sms only with a mobile number to text. A choice the config has since left
        with nothing to reach (only sms, and the mobile number removed) falls back to email:
        an owner is never left with no way to hear of a reply."""
        channels = set(self.channels if stored is None else stored)
        if self.sms is None:
            channels.discard("sms")
        return frozenset(channels or {"email"})

    def quiet_window(self, stored: str | None = None) -> QuietWindow | None:
        """The quiet hours in effect: the owner's own from the settings page (`stored`, ''
        for none), else this default."""
        value = self.quiet_hours if stored is None else stored
        return parse_window(value) if value else None


class OwnerConfig(Strict):
    id: Identifier
    name: str = Field(min_length=1)
    email: str = Field(pattern=EMAIL_PATTERN)
    # In the web inbox: every owner sees and acts on every conversation; an admin also manages
    # the opt-out list and sees the fraud-guard events and the users.
    role: Literal["owner", "admin"] = "owner"
    alerts: OwnerAlertsConfig = OwnerAlertsConfig()


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ClockTime = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")]


class WindowConfig(Strict):
    """Weekdays and a time of day, from `start` to `end` (business time zone)."""

    days: list[Weekday] = Field(min_length=1)
    start: ClockTime
    end: ClockTime

    @model_validator(mode="after")
    def _ordered(self) -> "WindowConfig":
        if self.start >= self.end:
            raise ValueError(f"start {self.start} must be before end {self.end} "
                             f"(split a time that crosses midnight in two)")
        return self


class ShiftConfig(WindowConfig):
    """Who is on call during a window."""

    owner: Identifier


class HoursWindowConfig(WindowConfig):
    """An opening window; `template` names an entry of text.templates for misses inside it."""

    template: Identifier | None = None


class HoursConfig(Strict):
    """Business hours in the business's time zone; texts outside them use after_hours_template."""

    windows: list[HoursWindowConfig] = Field(default_factory=list)
    holidays: list[date] = Field(default_factory=list)
    holiday_calendar: str | None = Field(None, pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")

    @field_validator("holiday_calendar")
    @classmethod
    def _known_calendar(cls, value: str | None) -> str | None:
        if value is not None:
            country, _, subdivision = value.partition("-")
            try:
                holiday_calendars.country_holidays(country, subdiv=subdivision or None)
            except NotImplementedError:
                raise ValueError(f"no public-holiday calendar {value!r} in the holidays package") from None
        return value


# A caller's class: "lead" is the ordinary caller, the others are the kinds a `contacts` entry names.
CONTACT_CLASSES = ("lead", "client", "vendor", "staff", "blocked")


class ContactConfig(Strict):
    """A known number: its class decides the text (client) or no text (vendor, staff, blocked)."""

    number: E164
    name: str = ""
    kind: Literal["client", "vendor", "staff", "blocked"] = Field(alias="class")

    @field_validator("number")
    @classmethod
    def _e164(cls, value: str, info: ValidationInfo) -> str:
        return _is_e164(value, (info.context or {}).get("region"))


class QuietHoursConfig(Strict):
    """Off by default: the missed-call text answers the caller's own call.

    When on, a text due outside `allowed_from`-`allowed_until` (business time
    zone) waits until the window opens.
    """

    enabled: bool = False
    allowed_from: ClockTime = "08:00"
    allowed_until: ClockTime = "21:00"

    @model_validator(mode="after")
    def _ordered(self) -> "QuietHoursConfig":
        if self.allowed_from >= self.allowed_until:
            raise ValueError("allowed_from must be before allowed_until")
        return self


class FraudConfig(Strict):
    """Guards against SMS pumping: who may be texted, and how many texts at most."""

    allowed_countries: list[str] = Field(default_factory=list)  # default: the business numbers'
    max_texts_per_hour: int = Field(60, ge=1)
    max_texts_per_day: int = Field(300, ge=1)
    max_per_prefix_per_hour: int = Field(5, ge=1)  # same country code + first 6 digits
    # Who hears about it when a cap or burst limit trips: one email per guard per hour.
    alert_email: str | None = Field(None, pattern=EMAIL_PATTERN)


class PolicyConfig(Strict):
    """What counts as a missed call on one business number (README, "How textback decides")."""

    # A caller who gives up sooner than this (a misdial, a pocket dial) is not texted.
    min_ring_seconds: float = Field(3.0, ge=0, le=120)
    # Asterisk answers voicemail itself; true counts a call that reached it as answered.
    voicemail_counts_as_answered: bool = False
    # Hanging up in an IVR menu before reaching anyone; false counts it as answered.
    ivr_abandon_counts_as_missed: bool = True


Targets = Annotated[str, Field(pattern=r"^[A-Za-z0-9/@._+&,:;-]+$")]


class RingConfig(Strict):
    """What the dialplan rings for this number, handed over by agi_scripts/textback_route.py."""

    targets: Targets  # Dial() devices, e.g. PJSIP/office1&PJSIP/office2
    timeout_seconds: int = Field(20, ge=5, le=300)
    after_hours_targets: Targets | None = None  # e.g. a cell phone over the trunk, or voicemail
    after_hours_timeout_seconds: int | None = Field(None, ge=5, le=300)


class AgiConfig(Strict):
    """Where the daemon writes the routing table the AGI script reads on every call."""

    routing_file: Path = Path("/var/lib/textback/routing.json")


class NumberConfig(Strict):
    """A business number (DID) callers dial, and whose name texts go out under.

    Each new conversation gets one owner: `owner` (fixed), the next of `owners`
    in turn (round_robin), or whoever's shift covers the moment (schedule,
    falling back to `owner` outside every shift).
    """

    number: E164
    owner: Identifier
    label: str = ""
    ring: RingConfig | None = None
    # This number's own opening hours (default: the top-level `hours`).
    hours: HoursConfig | None = None
    # Entries of text.templates this number uses instead of text.template / text.after_hours_template.
    template: Identifier | None = None
    after_hours_template: Identifier | None = None
    assignment: Literal["fixed", "round_robin", "schedule"] = "fixed"
    owners: list[Identifier] = Field(default_factory=list)
    schedule: list[ShiftConfig] = Field(default_factory=list)
    policy: PolicyConfig = PolicyConfig()
    _region: str = PrivateAttr("US")

    def model_post_init(self, context: Any) -> None:
        """Parse the number once, here: every call and text asks for its region."""
        self._region = phonenumbers.region_code_for_number(phonenumbers.parse(self.number, None)) or "US"

    @model_validator(mode="after")
    def _strategy_complete(self) -> "NumberConfig":
        if self.assignment == "round_robin" and not self.owners:
            raise ValueError("assignment round_robin needs an 'owners' list")
        if self.assignment == "schedule" and not self.schedule:
            raise ValueError("assignment schedule needs a 'schedule' of shifts")
        return self

    def owner_ids(self) -> set[str]:
        return {self.owner, *self.owners, *(shift.owner for shift in self.schedule)}

    @field_validator("number")
    @classmethod
    def _e164(cls, value: str) -> str:
        return _is_e164(value)

    @property
    def region(self) -> str:
        """The country a national number dialled or calling this number is read in."""
        return self._region


class TextConfig(Strict):
    delay_seconds: float = Field(30.0, ge=0, le=3600)
    dedupe_hours: float = Field(24.0, ge=0, le=24 * 30)
    # A text not sent this long after it was due (gateway or PBX down) is dropped and its owner
    # emailed to call back: a "sorry we missed your call" hours late is worse than none.
    max_age_minutes: float = Field(60.0, ge=1, le=24 * 60)
    template: str = Field(min_length=1)
    after_hours_template: str | None = None
    client_template: str | None = None
    # More first texts, by name, for business numbers and hours windows to pick.
    templates: dict[Identifier, str] = Field(default_factory=dict)
    reply_stop_footer: bool = True
    # Text fixed-line numbers too: only for gateways that turn a text to a landline into a voice call.
    allow_landlines: bool = False

    @field_validator("template", "after_hours_template", "client_template")
    @classmethod
    def _placeholders(cls, value: str | None) -> str | None:
        return value if value is None else _checked_template(value)

    @field_validator("templates")
    @classmethod
    def _named_placeholders(cls, value: dict[str, str]) -> dict[str, str]:
        for name, template in value.items():
            try:
                _checked_template(template)
            except ValueError as exc:
                raise ValueError(f"templates.{name}: {exc}") from None
        return value

    def first_texts(self) -> list[tuple[str, str]]:
        """Every template a conversation may start with, by its config key."""
        keys = [(f"text.{key}", getattr(self, key))
                for key in ("template", "after_hours_template", "client_template")]
        keys += [(f"text.templates.{name}", template) for name, template in self.templates.items()]
        return [(key, template) for key, template in keys if template]


def _checked_template(value: str) -> str:
    try:
        check_template(value)
    except TemplateError as exc:
        raise ValueError(str(exc)) from None
    return value


class HomeownerHoursConfig(Strict):
    """Per kind of text: `send` at once, or `hold` it until the homeowner's own quiet hours
    end (textback/core/quiet_hours.py). The missed-call text answers a call the homeowner has just
    made, so it is sent by default. Answers to STOP, START and HELP always go at once (the
    confirmation is due within 5 minutes); escalation and digest mail are internal."""

    missed_call: Literal["send", "hold"] = "send"
    owner_reply: Literal["send", "hold"] = "send"
    test_text: Literal["send", "hold"] = "send"

    def policy_for(self, kind: str) -> str:
        """`send` or `hold` for a text of this kind (messages.kind)."""
        return {"auto": self.missed_call, "owner": self.owner_reply,
                "test": self.test_text}.get(kind, "send")


class CampaignConfig(Strict):
    """What the 10DLC campaign form asks that the rest of the config does not say
    (`textback compliance 10dlc` prints the whole form; /consent shows the disclosure)."""

    use_case: str = Field("Customer Care", min_length=1, max_length=80)
    description: str | None = Field(None, max_length=1000)  # default: written from the config
    privacy_statement: str = ("{business_name} does not sell, rent or share mobile numbers or "
                              "text-messaging consent with third parties or affiliates for "
                              "their marketing.")
    # The sample messages as registered with the carrier; `textback check` warns when a
    # template is longer than the longest of them.
    registered_samples: list[str] = Field(default_factory=list)

    @field_validator("privacy_statement")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        return _checked_template(value)


class ComplianceConfig(Strict):
    """Answers to STOP, START and HELP. Each names the business (CTIA)."""

    stop_confirmation: str = ("{business_name}: you are unsubscribed and will get no more texts "
                              "from us. Reply START to undo.")
    start_confirmation: str = "{business_name}: texts are back on. Reply STOP to opt out."
    help_text: str = ("{business_name}: reply here to reach our team, or call "
                      "{business_number}. Reply STOP to opt out.")
    homeowner_hours: HomeownerHoursConfig = HomeownerHoursConfig()
    campaign: CampaignConfig = CampaignConfig()

    @field_validator("stop_confirmation", "start_confirmation", "help_text")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        return _checked_template(value)


class StorageConfig(Strict):
    """Where the store is: SQLite's file (`path`, or `url: sqlite:///...`), the default, or a
    PostgreSQL database (`url: postgresql://user@host/db`) whose password comes from a file or
    the environment (`password`), never from the URL or the config itself.

    With PostgreSQL, `path` still names this host's run lock and media's default directory.
    """

    path: Path = Path("/var/lib/textback/textback.db")
    url: str | None = None
    password: SecretRef | None = None

    @model_validator(mode="before")
    @classmethod
    def _sqlite_url(cls, data: Any) -> Any:
        """`url: sqlite:///var/lib/x.db` is `path: /var/lib/x.db`."""
        if isinstance(data, dict) and str(data.get("url") or "").startswith("sqlite:"):
            if "path" in data:
                raise ValueError("give 'path' or a sqlite: 'url', not both")
            url = data["url"]
            if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
                raise ValueError("a SQLite url is sqlite:///path/to/file.db")
            data = {key: value for key, value in data.items() if key != "url"}
            data["path"] = url.removeprefix("sqlite://")
        return data

    @model_validator(mode="after")
    def _postgresql_url(self) -> "StorageConfig":
        if self.url is None:
            if self.password is not None:
                raise ValueError("'password' is for a postgresql:// url")
            return self
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("postgresql", "postgres"):
            raise ValueError("url must be postgresql://user@host/database or sqlite:///path")
        if parsed.password is not None:
            raise ValueError("no password in the url: give it as 'password' (file or env)")
        if not parsed.path.strip("/"):
            raise ValueError("url must name the database: postgresql://user@host/database")
        return self

    @property
    def backend(self) -> str:
        return "sqlite" if self.url is None else "postgresql"


# A company's id: its name in the database, its file's name in a fleet's companies directory
# and its systemd instance (textback@ID): nothing in it is special to a path or to systemd.
COMPANY_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class CompanyConfig(Strict):
    """Which company this config is (`company:`), on a PostgreSQL store that holds several:
    `id` is its name in the database (lowercase letters, digits, `-`, `_`), `name` how it is
    shown. Every row this daemon or command reads or writes is that company's alone
    (docs/fleet.md). A config without `company:` is the company `default`; a SQLite file is
    one company's store, so there it names nothing more."""

    id: str = Field("default", pattern=COMPANY_ID_PATTERN)
    name: str = Field("", max_length=200)


class RetentionConfig(Strict):
    """How many whole calendar months of calls, texts and alerts the store keeps (None: all).

    Each month is summed up into its scorecard before it goes, so reports on it still work;
    opt-outs, conversations and outcomes are never pruned.
    """

    months: int | None = Field(None, ge=1, le=1200)


MMS_MESSAGE_BYTES = 5 * 1024 * 1024  # Twilio's documented limit for one MMS, all media together


class MediaConfig(Strict):
    """Photos, video and files homeowners text (MMS): fetched from the provider, kept on disk.

    Every item is fetched only from the gateway's own media hosts (its `media_hosts`), over
    HTTPS, within these caps; see docs/gateways.md.
    """

    # Where files are kept, by SHA-256; by default `media/` next to the database.
    directory: Path | None = None
    # Failed fetches are retried with backoff until this long after the text; then the item
    # is shown as not fetched and its owner emailed.
    deadline_hours: float = Field(24.0, gt=0, le=24 * 7)
    max_item_bytes: int = Field(MMS_MESSAGE_BYTES, ge=1024, le=100 * 1024 * 1024)
    max_message_bytes: int = Field(MMS_MESSAGE_BYTES, ge=1024, le=200 * 1024 * 1024)
    # One fetch, redirects and every byte included: a server that trickles is cut off.
    timeout_seconds: float = Field(60.0, gt=0, le=600)
    concurrent_fetches: int = Field(4, ge=1, le=32)
    # An owner's alert for a text with photos waits this long for them to be fetched, so the
    # email carries them; it goes at once when the last is kept or given up.
    alert_wait_seconds: float = Field(60.0, ge=0, le=900)
    # Photos attached to an alert (as JPEGs at most 1280 px) stop at this many bytes in all;
    # the email says what is left out and links to the thread.
    alert_attachment_bytes: int = Field(4 * 1024 * 1024, ge=0, le=20 * 1024 * 1024)
    # How long a signed link to a photo (in the JSON API, webhooks, CRM notes) works.
    link_hours: float = Field(72.0, gt=0, le=24 * 90)
    # Delete the provider's copy once textback has it (Twilio's Media resource). Off by
    # default: the provider's copy is personal data it keeps until you delete it.
    delete_at_provider: bool = False
    # TESTS ONLY: let media be fetched over plain HTTP from a loopback address (a stand-in).
    insecure_loopback_for_tests: bool = False

    @model_validator(mode="after")
    def _caps(self) -> "MediaConfig":
        if self.max_item_bytes > self.max_message_bytes:
            raise ValueError("max_item_bytes is more than max_message_bytes")
        return self


class AsteriskGatewayConfig(Strict):
    """SIP MESSAGE through Asterisk's own AMI MessageSend.

    `destination` and `from_uri` are templates; {to} and {sender} are the E.164
    numbers of the caller and the business number.
    """

    destination: str = "pjsip:{trunk}/sip:{to}@{host}"
    from_uri: str = "sip:{sender}@{host}"
    trunk: str = ""
    host: str = ""
    timeout_seconds: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _fields_known(self) -> "AsteriskGatewayConfig":
        for name in ("destination", "from_uri"):
            template = getattr(self, name)
            unknown = set(re.findall(r"{(\w*)}", template)) - {"to", "sender", "trunk", "host"}
            if unknown:
                raise ValueError(f"{name}: unknown placeholder(s) {', '.join(sorted(unknown))}")
            for needed in ("trunk", "host"):
                if "{" + needed + "}" in template and not getattr(self, needed):
                    raise ValueError(f"{name} uses {{{needed}}} but '{needed}' is not set")
        return self


class GatewayConfig(Strict):
    """Which SMS backend, and its section. Only the section of the chosen type is used."""

    type: Literal["asterisk", "log", "twilio", "telnyx", "kannel", "http", "plugin"] = "asterisk"
    asterisk: AsteriskGatewayConfig | None = None
    twilio: TwilioSettings | None = None
    telnyx: TelnyxSettings | None = None
    kannel: KannelSettings | None = None
    http: HttpSettings | None = None
    plugin: PluginSettings | None = None
    # Where the provider's callbacks (inbound texts, delivery reports) reach textback; its old
    # name `webhooks` is still read, with a warning: outbound events are the top-level `webhooks`.
    callbacks: CallbackSettings | None = None
    # Texts handed to the gateway at the same time, and at most this many a second (None: no limit).
    max_concurrent_sends: int = Field(8, ge=1, le=100)
    max_sends_per_second: float | None = Field(None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _old_callbacks_key(cls, data: Any) -> Any:
        """Read `gateway.webhooks`, the section's old name, as `gateway.callbacks`."""
        if isinstance(data, dict) and "webhooks" in data:
            if "callbacks" in data:
                raise ValueError("give 'callbacks' only: 'webhooks' is its old name")
            log.warning("config: gateway.webhooks is now called gateway.callbacks (the "
                        "provider's callbacks to textback); please rename it")
            data = {("callbacks" if key == "webhooks" else key): value
                    for key, value in data.items()}
        return data

    @model_validator(mode="after")
    def _section_present(self) -> "GatewayConfig":
        if self.type != "log" and getattr(self, self.type) is None:
            raise ValueError(f"type '{self.type}' needs a '{self.type}:' section")
        if self.needs_callbacks and self.callbacks is None:
            raise ValueError(f"type '{self.type}' receives texts by callback: add a 'callbacks:' "
                             f"section")
        return self

    @property
    def section(self) -> object | None:
        return getattr(self, self.type, None)

    @property
    def needs_callbacks(self) -> bool:
        if self.type in ("twilio", "telnyx", "kannel"):
            return True
        return self.type == "http" and self.http is not None and self.http.inbound is not None


class SmtpConfig(Strict):
    host: str
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: SecretRef | None = None
    sender: str = Field(pattern=r"^[^@\s<>\"]+@[^@\s<>\"]+$")
    timeout_seconds: float = Field(15.0, gt=0)

    @model_validator(mode="after")
    def _auth_pair(self) -> "SmtpConfig":
        if (self.username is None) != (self.password is None):
            raise ValueError("give both 'username' and 'password', or neither")
        return self


class ReplyMailConfig(Strict):
    """Owners answer a homeowner by replying to the alert email.

    Alerts carry Reply-To: reply+<token>@<domain>. Route that domain (or the
    address pattern) from the company MX or Postfix to listen_host:listen_port.
    """

    domain: str = Field(pattern=r"^[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(2526, ge=1, le=65535)
    token_days: float = Field(30, gt=0, le=365)
    # One reply email, attachments included: an owner's photo (texted as MMS) must fit, and a
    # phone's photo is a few MB before Base64 adds a third.
    max_bytes: int = Field(10 * 1024 * 1024, ge=4096, le=10 * 1024 * 1024)
    max_segments: int = Field(3, ge=1, le=10)
    # Addresses besides the conversation's owner that may answer (an office manager).
    team_senders: list[str] = Field(default_factory=list)
    # Trust Authentication-Results from this authserv-id only, and require dkim or spf pass.
    trusted_authserv_id: str | None = None


class EscalationConfig(Strict):
    """A homeowner's text with no human answer after `after_minutes` goes to the backup owner.

    A second reminder follows `reminder_minutes` later when set. Minutes count
    business hours only (when `hours` has windows), so nothing escalates
    after hours unless `after_hours: true`, which counts clock minutes.
    """

    backup_owner: Identifier
    after_minutes: float = Field(15, gt=0, le=7 * 24 * 60)
    reminder_minutes: float | None = Field(None, gt=0, le=7 * 24 * 60)
    after_hours: bool = False


class DigestConfig(Strict):
    """Daily at `daily_at`, each owner gets their conversations still waiting for an answer.

    On the first of the month, at the same time, the owners in
    `monthly_report_to` also get last month's scorecard.
    """

    daily_at: ClockTime = "07:30"
    monthly_report_to: list[Identifier] = Field(default_factory=list)


def _zone_name(value: str | None) -> str | None:
    if value is not None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as America/New_York)") from None
    return value


class CsvCdrConfig(Strict):
    """cdr_csv's Master.csv (textback on the PBX host), and the [csv] options of cdr.conf that shape it."""

    path: Path = Path("/var/log/asterisk/cdr-csv/Master.csv")
    usegmtime: bool = False  # times in GMT; otherwise in this machine's local time
    loguniqueid: bool = True
    loguserfield: bool = True
    newcdrcolumns: bool = True  # linkedid: needed to join Local-channel legs (queues, ring groups)

    @model_validator(mode="after")
    def _call_ids(self) -> "CsvCdrConfig":
        if not (self.loguniqueid or self.newcdrcolumns):
            raise ValueError("rows without uniqueid or linkedid cannot be told apart: set "
                             "newcdrcolumns = yes (or loguniqueid = yes) in cdr.conf's [csv], and here")
        return self


class MysqlCdrConfig(Strict):
    """FreePBX's CDR database, read through a user that may only SELECT from it."""

    host: str = "127.0.0.1"
    port: int = Field(3306, ge=1, le=65535)
    database: str = "asteriskcdrdb"
    user: str = Field(min_length=1)
    secret: SecretRef
    timezone: str | None = None  # the zone of calldate; default: this machine's local time
    timeout_seconds: float = Field(10.0, gt=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return _zone_name(value)


class CdrSourceConfig(Strict):
    type: Literal["csv", "mysql"] = "csv"
    csv: CsvCdrConfig = CsvCdrConfig()
    mysql: MysqlCdrConfig | None = None

    @model_validator(mode="after")
    def _section(self) -> "CdrSourceConfig":
        if self.type == "mysql" and self.mysql is None:
            raise ValueError("type mysql needs a mysql section (host, user, secret)")
        return self


class RecoveryConfig(Strict):
    """Calls that ended while textback was not logged in to AMI, recovered from Asterisk's CDR."""

    max_age_minutes: float = Field(30.0, ge=0, le=7 * 24 * 60)  # older ones: recorded, owner emailed
    cdr: CdrSourceConfig = CdrSourceConfig()


# The PBX a config with the single `ami:` / `inbound:` / `recovery:` form describes.
SINGLE_PBX_ID = "main"
# The sections of the single-PBX form, which a `pbxs:` list replaces.
SINGLE_PBX_KEYS = ("ami", "inbound", "recovery")


class PbxConfig(Strict):
    """One PBX: its AMI, how its inbound calls are told apart, its CDR, and the business
    numbers (of `numbers`) it serves. A daemon listens to each PBX on its own connection."""

    id: Identifier  # in the log, the metrics' `pbx` label and `textback status`
    ami: AmiConfig
    inbound: InboundConfig
    recovery: RecoveryConfig | None = None
    numbers: list[E164] = Field(default_factory=list)
    # True for the PBX of the single `ami:` form: it keeps the progress names it always had.
    _single: bool = PrivateAttr(False)

    @field_validator("numbers")
    @classmethod
    def _e164(cls, value: list[str]) -> list[str]:
        return [_is_e164(number) for number in value]

    @property
    def address(self) -> str:
        """host:port of its AMI: what its fleet lease is derived from."""
        return f"{self.ami.host}:{self.ami.port}"

    @property
    def incident_name(self) -> str:
        """How an incident about this PBX (its AMI down) names it: its id, or '' for the single
        `ami:` form's, the one PBX, whose incidents read as they always did."""
        return "" if self._single else self.id

    def call_key(self, linkedid: str) -> str:
        """How the store keys a call of this PBX. A linkedid is unique on one Asterisk only: it
        is the second a channel was made and a counter since start (behind `systemname` only
        when asterisk.conf sets one), so two PBXs started alike give their calls equal ids.
        A PBX of a `pbxs:` list keys its calls `id:linkedid`; the single form's keeps the
        plain linkedid, as its calls were always kept."""
        return linkedid if self._single else f"{self.id}:{linkedid}"

    def progress_name(self, name: str) -> str:
        """The store's progress mark `name` (e.g. the last AMI event) for this PBX: the single
        form's PBX keeps the plain name, so an existing install resumes where it stopped."""
        return name if self._single else f"{name}:{self.id}"


def pbx_form_problems(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The PBXs are given either as a `pbxs:` list or by the single `ami:`/`inbound:` form,
    never both: (key, message) for each key that mixes them, or that is missing."""
    if "pbxs" in raw:
        return [(key, f"`{key}:` and `pbxs:` are both given: with a `pbxs:` list, move "
                      f"`{key}:` into each PBX's entry") for key in SINGLE_PBX_KEYS if key in raw]
    return [(key, "required key is missing (or list the PBXs under `pbxs:`)")
            for key in ("ami", "inbound") if key not in raw]


class WebConfig(Strict):
    """The daemon's HTTP server: the shared inbox, metrics and the API.

    It listens on loopback; put nginx or Caddy with TLS in front of it and set
    public_url to the address people use, which links in emails point to.
    """

    listen_host: str = "127.0.0.1"
    port: int = Field(8088, ge=0, le=65535)
    public_url: str = Field(pattern=r"^https?://[A-Za-z0-9.-]+(:\d+)?(/[^\s?#]*)?$")
    max_body_bytes: int = Field(65536, ge=1024, le=10 * 1024 * 1024)
    # A signed-in browser is signed out after this long without a request.
    session_idle_minutes: float = Field(480, ge=1, le=30 * 24 * 60)
    # How long the sign-in link in an owner email works (once).
    link_hours: float = Field(24, gt=0, le=14 * 24)
    # Failed sign-ins allowed per owner (whichever of their name or email was typed) and per
    # client address within the window; kept in the store, so a restart does not reset them.
    signin_failures_per_account: int = Field(5, ge=1, le=1000)
    signin_failures_per_address: int = Field(20, ge=1, le=10_000)
    signin_window_minutes: float = Field(15, gt=0, le=24 * 60)
    # The reverse proxies (addresses or networks) whose X-Forwarded-For names the client.
    # From any other peer the header is ignored: a client could write anything in it.
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list, max_length=64)

    @property
    def secure(self) -> bool:
        return self.public_url.startswith("https://")


class SelftestAmiConfig(Strict):
    """A second AMI user with `write = originate` alone, for the test call: the main user
    never needs to originate."""

    username: str = Field(min_length=1)
    secret: SecretRef


class SelftestConfig(Strict):
    """`textback selftest` and its schedule: a test call into the inbound context, texted to
    the installer's own mobile."""

    recipient: str  # the installer's mobile: the self-test's text goes here
    caller: str | None = None  # the test call's caller ID; default: the recipient
    number: str | None = None  # the business number called; default: the first of `numbers`
    trunk: str | None = None  # the trunk endpoint whose context is called; default: inbound.trunks[0]
    context: str | None = None  # the inbound context to call into, instead of the trunk's
    schedule: str | None = None  # e.g. "mon 07:30", "mon,thu 07:30", "daily 07:30"; local time
    ring_phones: bool = False  # true: the test call rings the phones like a real one
    ring_seconds: float = Field(20.0, ge=1, le=120)
    gateway_seconds: float = Field(30.0, ge=1, le=600)
    expect_reply_minutes: float | None = Field(None, gt=0, le=24 * 60)
    ami: SelftestAmiConfig | None = None

    @field_validator("recipient", "caller", "number")
    @classmethod
    def _e164(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _is_e164(value, (info.context or {}).get("region"))

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is not None:
            parse_schedule(value)
        return value


class MetricsConfig(Strict):
    """/metrics and /healthz on the `web:` listener.

    Without a token they answer only requests from this machine that did not come
    through a proxy; with one, every request must carry it as a bearer token.
    """

    token: SecretRef | None = None
    # /healthz fails while a text has been due and unsent for longer than this.
    max_due_age_minutes: float = Field(10.0, gt=0, le=24 * 60)


class IncidentsConfig(Strict):
    """When the admin is emailed that something is broken (and again when it recovers)."""

    ami_down_minutes: float = Field(5.0, gt=0, le=24 * 60)
    # Business hours (the top-level `hours`) without a single call event: a link that
    # answers Pings but carries nothing. None turns the check off; so do hours without windows.
    no_calls_hours: float | None = Field(4.0, gt=0, le=24 * 30)
    gateway_failures: int = Field(5, ge=1, le=1000)  # sends failing in a row


class WebhookEndpointConfig(Strict):
    """One receiver of signed events (Standard Webhooks): a CRM, n8n, Zapier."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    # An on-premises receiver on a private or loopback address (metadata addresses never).
    # Before `url`, which is checked against it.
    allow_private: bool = False
    url: str = Field(pattern=r"^https?://[^\s/?#]+(/[^\s#]*)?$")
    secret: SecretRef  # a file holding whsec_<base64>, as the receiver shows it
    # The event types it takes; by default every type but call.answered and selftest.finished.
    events: list[Literal[hook_events.EVENT_TYPES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(hook_events.DEFAULT_EVENT_TYPES), min_length=1)
    timeout_seconds: float = Field(10.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _address(cls, value: str, info: ValidationInfo) -> str:
        why = literal_host_refusal(value, info.data.get("allow_private", False))
        if why:
            raise ValueError(why)
        return value


class WebhooksConfig(Strict):
    endpoints: list[WebhookEndpointConfig] = Field(min_length=1)
    # An event not delivered this long after it happened is given up, and the admin emailed.
    max_age_hours: float = Field(24.0, gt=0, le=7 * 24)

    @model_validator(mode="after")
    def _unique_names(self) -> "WebhooksConfig":
        names = [e.name for e in self.endpoints]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"endpoints: name(s) {', '.join(dupes)} listed twice")
        return self

    def endpoint(self, name: str) -> WebhookEndpointConfig | None:
        return next((e for e in self.endpoints if e.name == name), None)


class CrmConfig(Strict):
    """A CRM the events are followed into by an adapter of the textback.crm group (docs/crm.md)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    type: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,60}$")  # hubspot, gohighlevel, or a plugin's
    token: SecretRef  # the private-app / private-integration token
    options: dict[str, Any] = Field(default_factory=dict)  # the adapter's own: owners, location_id
    timeout_seconds: float = Field(15.0, gt=0, le=60)


class ApiConfig(Strict):
    """The JSON API on the `web:` listener (/api/v1); served whenever `web:` is configured."""

    requests_per_minute: int = Field(120, ge=1, le=100_000)  # per token
    burst: int = Field(30, ge=1, le=10_000)
    max_body_bytes: int = Field(16384, ge=256, le=1_048_576)  # a larger write is answered 413


class PushConfig(Strict):
    """Web Push to the owners' phones and browsers (the inbox as an installed app); served
    with the `web:` listener. VAPID (RFC 8292) keys are made at `textback init` or the first
    start and kept in `key_file` (0600)."""

    enabled: bool = True
    # The VAPID `sub` claim, how a push service reaches whoever runs this installation: a
    # mailto: URI (Apple refuses anything else). By default admin_email, else the first owner's.
    contact: str | None = None
    # By default `vapid-private.pem` beside the database.
    key_file: Path | None = None
    # A push not taken by the push service this long after the change it tells of is given
    # up (retries back off meanwhile): news that old is in the email and the inbox.
    deadline_minutes: float = Field(30.0, gt=0, le=24 * 60)
    timeout_seconds: float = Field(10.0, gt=0, le=60)
    # TESTS ONLY: accept subscriptions whose endpoint is plain HTTP on 127.0.0.1 or ::1 and
    # send to them (a stand-in push service). Never set it in production.
    insecure_loopback_for_tests: bool = False

    @field_validator("contact")
    @classmethod
    def _mailto(cls, value: str | None) -> str | None:
        if value is not None and (problem := contact_problem(value)):
            raise ValueError(problem)
        return value
class ServiceAreaConfig(Strict):
    """Where the company works (`service_area:`): ZIP codes, ZIP prefixes, or a radius around
    the office's ZIP (centroids from the `zipcodes` package's own data, nothing downloaded).
    A homeowner's ZIP that matches any of them is in the area; one that matches none is out."""

    zips: list[Annotated[str, Field(pattern=r"^\d{5}$")]] = Field(default_factory=list)
    zip_prefixes: list[Annotated[str, Field(pattern=r"^\d{1,4}$")]] = Field(default_factory=list)
    office_zip: str | None = Field(None, pattern=r"^\d{5}$")
    radius_miles: float | None = Field(None, gt=0, le=500)

    @model_validator(mode="after")
    def _radius(self) -> "ServiceAreaConfig":
        if (self.office_zip is None) != (self.radius_miles is None):
            raise ValueError("office_zip and radius_miles go together")
        if self.office_zip is not None and zip_place(self.office_zip) is None:
            raise ValueError(f"office_zip {self.office_zip} has no known centroid")
        return self

    def area(self) -> ServiceArea:
        return ServiceArea(frozenset(self.zips), tuple(self.zip_prefixes), self.office_zip,
                           self.radius_miles)


class IntakeModelConfig(Strict):
    """An optional extractor from the `textback.intake` entry-point group (`intake.model:`),
    e.g. `openai` for an OpenAI-compatible endpoint the company runs. It SENDS EACH HOMEOWNER'S
    TEXT TO THAT ENDPOINT; its values are suggestions until a person confirms them, and it
    runs after the owner's alert is committed, so it never delays one."""

    type: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,60}$")
    options: dict[str, Any] = Field(default_factory=dict)  # the extractor's own: base_url, model
    token: SecretRef | None = None  # an API key, if the endpoint wants one
    timeout_seconds: float = Field(10.0, gt=0, le=120)


class IntakeConfig(Strict):
    """The intake facts read from homeowners' texts (`intake:`): the project vocabulary adds
    words (or new types) to the shipped one, or replaces it; `model` is off unless set."""

    model: IntakeModelConfig | None = None
    projects: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,39}$")],
                   list[Annotated[str, Field(min_length=2, max_length=60)]]] = Field(
        default_factory=dict)
    replace_default_projects: bool = False
    _vocabulary: Vocabulary | None = PrivateAttr(None)

    def vocabulary(self) -> Vocabulary:
        if self._vocabulary is None:
            self._vocabulary = Vocabulary.build(self.projects, self.replace_default_projects)
        return self._vocabulary


class LoggingConfig(Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Config(Strict):
    business: BusinessConfig
    # One PBX (`ami:`, `inbound:`, `recovery:`), or a `pbxs:` list of them: see pbx_list().
    ami: AmiConfig | None = None
    inbound: InboundConfig | None = None
    pbxs: list[PbxConfig] = Field(default_factory=list)
    owners: list[OwnerConfig] = Field(min_length=1)
    # The installer or IT contact: incidents, self-test reports and other operational mail.
    admin_email: str | None = Field(None, pattern=EMAIL_PATTERN)
    numbers: list[NumberConfig] = Field(min_length=1)
    text: TextConfig
    gateway: GatewayConfig
    smtp: SmtpConfig
    compliance: ComplianceConfig = ComplianceConfig()
    reply_mail: ReplyMailConfig | None = None
    escalation: EscalationConfig | None = None
    digest: DigestConfig | None = None
    hours: HoursConfig = HoursConfig()
    contacts: list[ContactConfig] = Field(default_factory=list)
    # A CSV of more contacts (columns: number, name, class), e.g. exported from the CRM.
    contacts_csv: Path | None = None
    fraud: FraudConfig = FraudConfig()
    quiet_hours: QuietHoursConfig = QuietHoursConfig()
    agi: AgiConfig = AgiConfig()
    recovery: RecoveryConfig | None = None
    storage: StorageConfig = StorageConfig()
    company: CompanyConfig = CompanyConfig()
    retention: RetentionConfig = RetentionConfig()
    media: MediaConfig = MediaConfig()
    web: WebConfig | None = None
    push: PushConfig = PushConfig()
    selftest: SelftestConfig | None = None
    metrics: MetricsConfig = MetricsConfig()
    incidents: IncidentsConfig = IncidentsConfig()
    webhooks: WebhooksConfig | None = None
    crm: list[CrmConfig] = Field(default_factory=list)
    api: ApiConfig = ApiConfig()
    service_area: ServiceAreaConfig = ServiceAreaConfig()
    intake: IntakeConfig = IntakeConfig()
    logging: LoggingConfig = LoggingConfig()
    # Lookups every call makes, built once from the lists above (see _index).
    _numbers: dict[str, NumberConfig] = PrivateAttr(default_factory=dict)
    _regions: tuple[str, ...] = PrivateAttr(())
    _contacts: dict[str, ContactConfig] = PrivateAttr(default_factory=dict)
    _allowed: frozenset[str] = PrivateAttr(frozenset())
    _dids: dict[str, NumberConfig | None] = PrivateAttr(default_factory=dict)  # DID -> match
    _pbx_list: list[PbxConfig] = PrivateAttr(default_factory=list)
    _pbx_of_number: dict[str, PbxConfig] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any) -> None:
        self._index()

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> "Config":
        copied = super().model_copy(update=update, deep=deep)
        copied._index()  # the lists may have changed
        return copied

    def _index(self) -> None:
        """The numbers, contacts and allowed countries as dicts and sets: a call's cost must
        not grow with how many are configured."""
        self._numbers = {n.number: n for n in self.numbers}
        self._regions = tuple(dict.fromkeys(n.region for n in self.numbers))
        self._contacts = {}
        for contact in self.contacts:
            self._contacts.setdefault(contact.number, contact)  # the first listed wins
        self._allowed = frozenset(self.fraud.allowed_countries or {n.region for n in self.numbers})
        self._dids = {}
        self._index_pbxs()

    def _index_pbxs(self) -> None:
        """The PBXs as a list whatever the form, and which one serves each business number."""
        self._pbx_list = list(self.pbxs)
        if not self.pbxs and self.ami is not None and self.inbound is not None:
            # Built from sections already checked: no second validation on each model_copy.
            single = PbxConfig.model_construct(
                id=SINGLE_PBX_ID, ami=self.ami, inbound=self.inbound, recovery=self.recovery,
                numbers=[n.number for n in self.numbers])
            single._single = True
            self._pbx_list = [single]
        self._pbx_of_number = {}
        for pbx in self._pbx_list:
            for number in pbx.numbers:
                self._pbx_of_number.setdefault(number, pbx)

    @model_validator(mode="after")
    def _pbx_references(self) -> "Config":
        """Each PBX named once, on its own AMI address (its fleet lease), serving numbers of
        `numbers`, each number served by one PBX at most."""
        problems = pbx_form_problems({key: True for key in ("pbxs", *SINGLE_PBX_KEYS)
                                      if getattr(self, key) not in (None, [])})
        if problems:
            raise ValueError("; ".join(f"{key}: {message}" for key, message in problems))
        ids: dict[str, int] = {}
        addresses: dict[str, str] = {}
        served: dict[str, str] = {}
        for index, pbx in enumerate(self.pbxs):
            if pbx.id in ids:
                raise ValueError(f"pbxs[{index}].id: {pbx.id!r} is also pbxs[{ids[pbx.id]}]'s")
            ids[pbx.id] = index
            if pbx.address in addresses:
                raise ValueError(f"pbxs[{index}].ami: {pbx.address} is also PBX "
                                 f"{addresses[pbx.address]!r}'s AMI")
            addresses[pbx.address] = pbx.id
            for number in pbx.numbers:
                if self.number(number) is None:
                    raise ValueError(f"pbxs[{index}].numbers: {number} is not one of `numbers`")
                if number in served:
                    raise ValueError(f"pbxs[{index}].numbers: {number} is also served by PBX "
                                     f"{served[number]!r}: a number belongs to one PBX")
                served[number] = pbx.id
        if self.pbxs and self.gateway.type == "asterisk":
            unserved = [n.number for n in self.numbers if n.number not in served]
            if unserved:
                raise ValueError(f"pbxs: {', '.join(unserved)} served by no PBX: the asterisk "
                                 f"gateway texts from a number through its PBX's AMI")
        return self

    @model_validator(mode="after")
    def _references(self) -> "Config":
        owner_ids = [o.id for o in self.owners]
        dupes = {o for o in owner_ids if owner_ids.count(o) > 1}
        if dupes:
            raise ValueError(f"owners: duplicate id(s) {', '.join(sorted(dupes))}")
        numbers = [n.number for n in self.numbers]
        dupes = {n for n in numbers if numbers.count(n) > 1}
        if dupes:
            raise ValueError(f"numbers: {', '.join(sorted(dupes))} listed twice")
        for key, template in self.text.first_texts():
            if "{business_name" not in template and self.business.name not in template:
                raise ValueError(f"{key}: the first text must name the business: "
                                 f"use {{business_name}} or write {self.business.name!r}")
        for key, name in self._template_references():
            if name not in self.text.templates:
                known = ", ".join(sorted(self.text.templates)) or "none defined"
                raise ValueError(f"{key}: no template {name!r} in text.templates ({known})")
        if self.digest is not None:
            unknown = sorted(set(self.digest.monthly_report_to) - set(owner_ids))
            if unknown:
                raise ValueError(f"digest.monthly_report_to: no owner with id {', '.join(unknown)}")
        if self.escalation is not None and self.escalation.backup_owner not in owner_ids:
            raise ValueError(f"escalation.backup_owner: no owner with id {self.escalation.backup_owner!r}")
        for index, number in enumerate(self.numbers):
            unknown = sorted(number.owner_ids() - set(owner_ids))
            if unknown:
                raise ValueError(f"numbers[{index}]: no owner with id {', '.join(unknown)}")
        if self.selftest is not None:
            self._check_selftest(self.selftest)
        if self.pushes() and self.push.contact is None and (
                problem := contact_problem(self.push_contact())):
            raise ValueError(f"push: the VAPID contact taken from the admin's email is refused "
                             f"({problem}); set push.contact, or push.enabled: false")
        return self

    def _check_selftest(self, selftest: SelftestConfig) -> None:
        if selftest.number is not None and self.number(selftest.number) is None:
            raise ValueError(f"selftest.number: {selftest.number} is not one of `numbers`")
        if (selftest.context is None and selftest.trunk is None
                and not self.selftest_pbx().inbound.trunks):
            raise ValueError("selftest: name the inbound `context` to call into, or a `trunk` "
                             "whose context it is (inbound.trunks lists none)")
        if self.admin_email is None:
            raise ValueError("selftest: set admin_email, where the self-test report is mailed")

    def push_contact(self) -> str:
        """The VAPID `sub` claim: push.contact, else admin_email, else the first owner's."""
        return self.push.contact or f"mailto:{self.admin_email or self.owners[0].email}"

    def push_key_file(self) -> Path:
        return self.push.key_file or self.storage.path.parent / "vapid-private.pem"

    def pushes(self) -> bool:
        """Is Web Push on: a `web:` listener to subscribe through, and push.enabled."""
        return self.web is not None and self.push.enabled

    def selftest_number(self) -> NumberConfig:
        """The business number the self-test calls."""
        chosen = self.selftest.number if self.selftest else None
        return self.number(chosen) if chosen else self.numbers[0]

    def pbx_list(self) -> list[PbxConfig]:
        """Every PBX, whichever form the file uses (the single form's has id `main`)."""
        return self._pbx_list

    def pbx_serving(self, number: str) -> PbxConfig | None:
        """The PBX that serves business number `number` (E.164), if one does."""
        return self._pbx_of_number.get(number)

    def selftest_pbx(self) -> PbxConfig:
        """The PBX the self-test calls through: the one serving its number, else the first."""
        return self.pbx_serving(self.selftest_number().number) or self._pbx_list[0]

    def _template_references(self) -> list[tuple[str, str]]:
        """(config key, template name) for every place that names an entry of text.templates."""
        refs = [(f"hours.windows[{i}].template", w.template) for i, w in enumerate(self.hours.windows)]
        for n, number in enumerate(self.numbers):
            refs += [(f"numbers[{n}].{key}", getattr(number, key))
                     for key in ("template", "after_hours_template")]
            if number.hours is not None:
                refs += [(f"numbers[{n}].hours.windows[{i}].template", w.template)
                         for i, w in enumerate(number.hours.windows)]
        return [(key, name) for key, name in refs if name]

    def extract_intake(self, text: str, at: float, caller: str | None = None) -> Intake:
        """The intake facts of a homeowner's text, read at `at` in the business's zone with
        this config's vocabulary and service area."""
        now = datetime.fromtimestamp(at, ZoneInfo(self.business.timezone))
        return extract(text, now, self.intake.vocabulary(), self.service_area.area(), caller)

    def intake_corrections(self, name: str, raw: str, at: float) -> list[Fact]:
        """A person's value for an intake field, checked (ValueError says what is wrong)."""
        now = datetime.fromtimestamp(at, ZoneInfo(self.business.timezone))
        return corrections(name, raw, self.service_area.area(), self.intake.vocabulary(), now)

    def contact(self, e164: str | None) -> ContactConfig | None:
        return self._contacts.get(e164) if e164 else None

    def contact_class(self, e164: str) -> str:
        """The caller's class as the config's `contacts` and `contacts_csv` give it ("lead" if none)."""
        contact = self.contact(e164)
        return contact.kind if contact is not None else "lead"

    def with_contact_class(self, e164: str, kind: str) -> Config:
        """This config with `e164`'s contact entry replaced by one of class `kind` (none for a lead).

        A class set in the inbox or through the API wins over the file's entry, which stays as it
        is on disk; the rules see this copy for that one caller.
        """
        existing = self.contact(e164)
        contacts = [c for c in self.contacts if c.number != e164]
        if kind != "lead":
            contacts.insert(0, ContactConfig.model_validate(
                {"number": e164, "name": existing.name if existing else "", "class": kind}))
        return self.model_copy(update={"contacts": contacts})

    @staticmethod
    def policy_of(number: NumberConfig | None) -> PolicyConfig:
        """The business number's call policy; the defaults for a DID that no entry matches."""
        return number.policy if number is not None else PolicyConfig()

    def allowed_countries(self) -> frozenset[str]:
        return self._allowed

    def number(self, e164: str) -> NumberConfig | None:
        return self._numbers.get(e164)

    def dialled(self, did: str) -> NumberConfig | None:
        """The business number a DID in any common format refers to, read in each configured
        number's region (one parse per region, not per number); the first listed wins.
        Remembered: a PBX dials the same few DIDs all day (a bounded memory, for any DIDs)."""
        if did in self._dids:
            return self._dids[did]
        found = []
        for region in self._regions:
            number = self._numbers.get(to_e164(did, region))
            if number is not None and number.region == region:
                found.append(number)
        number = min(found, key=self.numbers.index, default=None)
        if len(self._dids) >= MAX_REMEMBERED_DIDS:
            self._dids.clear()
        self._dids[did] = number
        return number

    def owner(self, owner_id: str) -> OwnerConfig:
        return next(o for o in self.owners if o.id == owner_id)

    def owner_by_mobile(self, e164: str | None) -> OwnerConfig | None:
        """The owner whose alert texts go to `e164` (owners[].alerts.sms), or None: that number
        is never a lead, never auto-texted and never counted."""
        return next((o for o in self.owners if e164 and o.alerts.sms == e164), None)


@dataclass(frozen=True)
class Secrets:
    """Secrets resolved at load time so a missing one fails `check`, not the first call."""

    ami: SecretStr | None  # the single `ami:` form's; a `pbxs:` list's are in pbx_ami
    smtp_password: SecretStr | None
    gateway: Mapping[str, SecretStr] = field(default_factory=dict)
    selftest_ami: SecretStr | None = None  # the optional originate-only AMI user's
    metrics_token: SecretStr | None = None
    webhooks: Mapping[str, SecretStr] = field(default_factory=dict)  # by endpoint name
    crm: Mapping[str, SecretStr] = field(default_factory=dict)  # by CRM name
    intake_model: SecretStr | None = None  # the optional intake extractor's API key
    storage_password: SecretStr | None = None  # PostgreSQL's, for storage.url
    pbx_ami: Mapping[str, SecretStr] = field(default_factory=dict)  # by PBX id
    pbx_cdr: Mapping[str, SecretStr] = field(default_factory=dict)  # a mysql CDR's, by PBX id

    def ami_of(self, pbx_id: str) -> SecretStr:
        """The AMI secret of PBX `pbx_id` (the single form's is `ami`)."""
        return self.pbx_ami[pbx_id] if pbx_id in self.pbx_ami else self.ami

    def redactor(self) -> Redactor:
        """Masks every one of these secrets in text that leaves the process."""
        values = [self.ami, self.smtp_password, self.selftest_ami,
                  self.metrics_token, self.storage_password, *self.gateway.values(),
                  *self.webhooks.values(), *self.crm.values(), self.intake_model,
                  *self.pbx_ami.values(), *self.pbx_cdr.values(),
                  *(SecretStr(v.get_secret_value().removeprefix(WEBHOOK_SECRET_PREFIX))
                    for v in self.webhooks.values())]
        return Redactor(v.get_secret_value() for v in values if v is not None)


@dataclass(frozen=True)
class Loaded:
    config: Config
    secrets: Secrets
    source: Path
    origins: Origins | None = None  # where each key was written, for later cross-checks


def read_text(path: Path) -> str:
    """A config file's text, within the YAML reader's size budget, as UTF-8."""
    source = str(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(yamlread.MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(source, [("(file)", f"cannot read: {exc.strerror}")]) from None
    try:
        return yamlread.decode(data)
    except yamlread.YamlProblem as exc:
        raise ConfigError(source, [(_where(exc.line), str(exc))]) from None


def read_mapping(text: str, source: str) -> tuple[dict[str, Any], dict[str, int]]:
    """The document (a mapping of sections) and the line of each YAML path in it."""
    try:
        raw, lines = yamlread.read(text)
    except yamlread.YamlProblem as exc:
        raise ConfigError(source, [(_where(exc.line), str(exc))]) from None
    if not isinstance(raw, dict):
        raise ConfigError(source, [("(top)", "the file must be a mapping of sections")])
    return raw, lines


def load(path: Path) -> Loaded:
    """Read, validate and resolve secrets; raise ConfigError listing every problem."""
    return parse(read_text(path), source=str(path), base=path.resolve().parent)


def parse(text: str, source: str = "<config>", base: Path | None = None) -> Loaded:
    raw, lines = read_mapping(text, source)
    return validated(raw, Origins(source, lines), base)


def validated(raw: dict[str, Any], origins: Origins, base: Path | None) -> Loaded:
    """The config of the sections `raw`, checked, with its secrets resolved (a relative
    secret file is read from `base`); each problem named by `origins`' file and line."""
    form = pbx_form_problems(raw)
    if form:
        raise origins.refused(form)
    try:
        config = Config.model_validate(raw, context={"region": _business_region(raw)})
    except ValidationError as exc:
        raise origins.refused([_describe(err) for err in exc.errors()]) from None
    problems: list[tuple[str, str]] = []
    if config.contacts_csv is not None:
        config = _with_csv_contacts(config, base, problems)
    pbx_ami, pbx_cdr = _pbx_secrets(config, base, problems)
    ami_secret = pbx_ami.get(SINGLE_PBX_ID) if not config.pbxs else None
    smtp_password = None
    if config.smtp.password is not None:
        smtp_password = _resolve(config.smtp.password, base, "smtp.password", problems)
    gateway_secrets: dict[str, SecretStr] = {}
    section = config.gateway.section
    if hasattr(section, "secret_refs"):
        gateway_secrets, found = resolve_secrets(section, base)
        problems += [(f"gateway.{config.gateway.type}.{path}", message) for path, message in found]
    selftest_ami = None
    if config.selftest is not None and config.selftest.ami is not None:
        selftest_ami = _resolve(config.selftest.ami.secret, base, "selftest.ami.secret", problems)
    storage_password = None
    if config.storage.password is not None:
        storage_password = _resolve(config.storage.password, base, "storage.password", problems)
    metrics_token = None
    if config.metrics.token is not None:
        metrics_token = _resolve(config.metrics.token, base, "metrics.token", problems)
    webhook_secrets = {}
    for index, endpoint in enumerate(config.webhooks.endpoints if config.webhooks else ()):
        where = f"webhooks.endpoints[{index}].secret"
        secret = _resolve(endpoint.secret, base, where, problems)
        if secret.get_secret_value() and not _is_webhook_secret(secret.get_secret_value()):
            problems.append((where, "not a Standard Webhooks secret: whsec_ and then Base64 of "
                                    "24 to 64 random bytes (e.g. from `textback webhooks secret`)"))
        webhook_secrets[endpoint.name] = secret
    _check_owner_alerts(config, problems)
    crm_tokens = {entry.name: _resolve(entry.token, base, f"crm[{index}].token", problems)
                  for index, entry in enumerate(config.crm)}
    for index, entry in enumerate(config.crm):
        try:
            adapter_class(entry.type)
        except LookupError as exc:
            problems.append((f"crm[{index}].type", str(exc)))
    intake_model = None
    if config.intake.model is not None:
        from textback.intake_model import model_class

        try:
            model_class(config.intake.model.type)
        except LookupError as exc:
            problems.append(("intake.model.type", str(exc)))
        if config.intake.model.token is not None:
            intake_model = _resolve(config.intake.model.token, base, "intake.model.token",
                                    problems)
    if problems:
        raise origins.refused(problems)
    return Loaded(config=config,
                  secrets=Secrets(ami=ami_secret, smtp_password=smtp_password,
                                  gateway=gateway_secrets,
                                  selftest_ami=selftest_ami,
                                  metrics_token=metrics_token,
                                  webhooks=webhook_secrets, crm=crm_tokens,
                                  intake_model=intake_model,
                                  storage_password=storage_password,
                                  pbx_ami=pbx_ami, pbx_cdr=pbx_cdr),
                  source=Path(origins.source), origins=origins)


def _pbx_secrets(config: Config, base: Path | None, problems: list[tuple[str, str]]
                 ) -> tuple[dict[str, SecretStr], dict[str, SecretStr]]:
    """Each PBX's AMI secret, and its CDR database's (a mysql CDR), by PBX id."""
    ami: dict[str, SecretStr] = {}
    cdr: dict[str, SecretStr] = {}
    for index, pbx in enumerate(config.pbx_list()):
        where = "" if config.ami is not None else f"pbxs[{index}]."
        ami[pbx.id] = _resolve(pbx.ami.secret, base, f"{where}ami.secret", problems)
        if pbx.recovery is not None and pbx.recovery.cdr.type == "mysql":
            cdr[pbx.id] = _resolve(pbx.recovery.cdr.mysql.secret, base,
                                   f"{where}recovery.cdr.mysql.secret", problems)
    return ami, cdr


def _check_owner_alerts(config: Config, problems: list[tuple[str, str]]) -> None:
    """An owner's mobile is theirs alone and no business number; alert texts go from one."""
    seen: dict[str, int] = {}
    for index, owner in enumerate(config.owners):
        alerts = owner.alerts
        where = f"owners[{index}].alerts"
        if alerts.sms is not None:
            if config.number(alerts.sms) is not None:
                problems.append((f"{where}.sms", f"{alerts.sms} is one of the business `numbers`; "
                                                 "give the owner's own mobile"))
            if alerts.sms in seen:
                problems.append((f"{where}.sms", f"{alerts.sms} is also owners[{seen[alerts.sms]}]'s "
                                                 "mobile: answers from it could not be told apart"))
            seen.setdefault(alerts.sms, index)
        if alerts.sms_from is not None and config.number(alerts.sms_from) is None:
            problems.append((f"{where}.sms_from", f"{alerts.sms_from} is not one of `numbers`"))


WEBHOOK_SECRET_PREFIX = "whsec_"


def _is_webhook_secret(value: str) -> bool:
    """whsec_ and Base64 of 24 to 64 bytes: the form Standard Webhooks receivers are given."""
    if not value.startswith(WEBHOOK_SECRET_PREFIX):
        return False
    try:
        key = base64.b64decode(value[len(WEBHOOK_SECRET_PREFIX):], validate=True)
    except ValueError:
        return False
    return 24 <= len(key) <= 64


def _with_csv_contacts(config: Config, base: Path | None,
                       problems: list[tuple[str, str]]) -> Config:
    """Add the contacts of `contacts_csv`; each bad row is a problem named by its line."""
    path = config.contacts_csv
    if not path.is_absolute() and base is not None:
        path = base / path
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        problems.append(("contacts_csv", f"cannot read {path}: {exc.strerror}"))
        return config
    contacts = list(config.contacts)
    for line, row in enumerate(rows, start=2):
        try:
            contacts.append(ContactConfig.model_validate(
                {"number": (row.get("number") or "").strip(), "name": (row.get("name") or "").strip(),
                 "class": (row.get("class") or "").strip().lower()},
                context={"region": config.numbers[0].region}))
        except ValidationError as exc:
            reason = "; ".join(f"{_dotted(e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
                               for e in exc.errors())
            problems.append((f"contacts_csv ({path.name} line {line})", reason))
    return config.model_copy(update={"contacts": contacts})


def _resolve(ref: SecretRef, base: Path | None, path: str,
             problems: list[tuple[str, str]]) -> SecretStr:
    if ref.file is not None and not ref.file.is_absolute() and base is not None:
        ref = SecretRef(file=base / ref.file)
    try:
        return ref.resolve()
    except ValueError as exc:
        problems.append((path, str(exc)))
        return SecretStr("")


def _describe(err: Any) -> tuple[str, str]:
    path = _dotted(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        message = "unknown key (check the spelling against config.example.yaml)"
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "model_type" and err.get("ctx", {}).get("class_name") == "SecretRef":
        # Never echo the value: it is the secret itself, written where it must not be.
        message = ("a secret is never written in this file: give {file: /path/to/secret} or "
                   "{env: VARIABLE_NAME}")
    else:
        message = err["msg"].removeprefix("Value error, ")
        if "input" in err and kind.endswith(("_type", "_parsing")):
            message += f" (got {err['input']!r})"
    return path, message


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top)"


def _with_line(path: str, lines: dict[str, int]) -> str:
    probe = path
    while probe:
        if probe in lines:
            return f"{path} (line {lines[probe]})"
        parent = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", probe)
        if parent == probe:
            break
        probe = parent
    return path


def _where(line: int) -> str:
    return f"line {line}" if line else "(file)"
