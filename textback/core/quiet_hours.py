"""The homeowner's quiet hours: where a number is, which rules hold there, and when a text may go.

The law counts hours "at the called party's location", not the business's:

| rule | hours (local) | source |
|---|---|---|
| federal | 8 am to 9 pm, every day | 47 CFR 64.1200(c)(1) |
| Florida | 8 am to 8 pm, every day | Fla. Stat. 501.616(6)(a) (SB 1120, 2021) |
| Oklahoma | 8 am to 8 pm, every day | 15 Okla. Stat. 775C.1 ff. (Telephone Solicitation Act of 2022) |
| Texas | 9 am to 9 pm Monday to Saturday, noon to 9 pm Sunday | Tex. Bus. & Com. Code 301.051 (texts since SB 140, 2025-09-01) |

These bind solicitations; a reply to a call the homeowner has just made is
informational, which is why the missed-call text's default is `send`. The
rules are data (`RULES`), so a new state is a row.

Where a number is comes from phonenumbers' own geocoder and time-zone data
(shipped with the package, no download): the state from the area code (or the
exchange, where its data is finer: Pensacola's 850 numbers are Central,
Tallahassee's Eastern), the zones from its time-zone table. Where the table
gives several zones for one number (Idaho's 208: Boise and Los Angeles), a
text may go only when the window is open in every one of them. A number the
data cannot place (a toll-free number "is" in every zone of the NANP) is
judged in the business's own zone.

Pure: a number, a moment and the rules in, a decision out; no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import phonenumbers

ALL_DAYS = frozenset(range(7))  # Monday is 0, as datetime.weekday()
MONDAY_TO_SATURDAY = frozenset(range(6))
SUNDAY = frozenset({6})

SEND = "send"
HOLD = "hold"
POLICIES = (SEND, HOLD)


@dataclass(frozen=True)
class Window:
    """Hours a text may go on some days: from `start` to `end`, minutes after local midnight."""

    days: frozenset[int]
    start: int
    end: int


@dataclass(frozen=True)
class Rule:
    """One jurisdiction's calling hours; `states` empty means everywhere (the federal rule)."""

    name: str
    states: frozenset[str]
    windows: tuple[Window, ...]
    source: str

    def window_on(self, weekday: int) -> Window | None:
        return next((w for w in self.windows if weekday in w.days), None)

    def describe(self) -> str:
        hours = "; ".join(f"{_days(w.days)} {_clock(w.start)}-{_clock(w.end)}"
                          for w in self.windows)
        return f"{self.name}: {hours} ({self.source})"


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _days(days: frozenset[int]) -> str:
    return {ALL_DAYS: "every day", MONDAY_TO_SATURDAY: "Mon-Sat", SUNDAY: "Sun"}.get(
        days, ",".join("MTWTFSS"[d] for d in sorted(days)))


RULES: tuple[Rule, ...] = (
    Rule("federal", frozenset(), (Window(ALL_DAYS, 8 * 60, 21 * 60),), "47 CFR 64.1200(c)(1)"),
    Rule("Florida", frozenset({"FL"}), (Window(ALL_DAYS, 8 * 60, 20 * 60),),
         "Fla. Stat. 501.616(6)(a)"),
    Rule("Oklahoma", frozenset({"OK"}), (Window(ALL_DAYS, 8 * 60, 20 * 60),),
         "15 Okla. Stat. 775C.1 ff."),
    Rule("Texas", frozenset({"TX"}), (Window(MONDAY_TO_SATURDAY, 9 * 60, 21 * 60),
                                      Window(SUNDAY, 12 * 60, 21 * 60)),
         "Tex. Bus. & Com. Code 301.051"),
)

# The states, as the geocoder names them, to their postal codes.
STATES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "District of Columbia": "DC",
    "Washington D.C.": "DC", "Florida": "FL", "Georgia": "GA", "Hawaii": "HI", "Idaho": "ID",
    "Illinois": "IL", "Indiana": "IN", "Iowa": "IA", "Kansas": "KS", "Kentucky": "KY",
    "Louisiana": "LA", "Maine": "ME", "Maryland": "MD", "Massachusetts": "MA", "Michigan": "MI",
    "Minnesota": "MN", "Mississippi": "MS", "Missouri": "MO", "Montana": "MT", "Nebraska": "NE",
    "Nevada": "NV", "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM",
    "New York": "NY", "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH",
    "Oklahoma": "OK", "Oregon": "OR", "Pennsylvania": "PA", "Rhode Island": "RI",
    "South Carolina": "SC", "South Dakota": "SD", "Tennessee": "TN", "Texas": "TX", "Utah": "UT",
    "Vermont": "VT", "Virginia": "VA", "Washington": "WA", "West Virginia": "WV",
    "Wisconsin": "WI", "Wyoming": "WY", "Puerto Rico": "PR",
}

# How far ahead `next_open` looks: a week holds every weekday's window.
_SEARCH_DAYS = 8


@dataclass(frozen=True)
class Place:
    """Where a number is, as far as its digits say."""

    state: str | None        # postal code, or None outside the US or unknown
    zones: tuple[str, ...]   # every zone it may be in (more than one near a border)
    known: str               # "exchange", "area code", or "unknown" (the business's zone)


@dataclass(frozen=True)
class Verdict:
    """May a text go at `at`; if not, when it may (`until`) and which rule closed it."""

    allowed: bool
    at: float
    until: float | None
    place: Place
    rules: tuple[Rule, ...]
    closed_by: Rule | None

    def explain(self) -> str:
        """The decision and the rule behind it, in words (`textback explain`, a held text)."""
        where = (f"{self.place.state or 'an unknown state'}, {' / '.join(self.place.zones)} "
                 f"(from the {self.place.known})")
        if self.allowed:
            return f"may go now in {where}: " + "; ".join(rule.describe() for rule in self.rules)
        opens = datetime.fromtimestamp(self.until, ZoneInfo(self.place.zones[0]))
        return (f"until {opens:%a %Y-%m-%d %H:%M %Z}, the end of the homeowner's quiet hours "
                f"in {where}: {self.closed_by.describe()}")


def locate(number: str, fallback_zone: str) -> Place:
    """The state and zones of an E.164 number from phonenumbers' data; the business's zone
    (`fallback_zone`) when the data knows nothing of it."""
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return Place(None, (fallback_zone,), "unknown")
    # Their tables (megabytes) load on first use, not with the daemon.
    from phonenumbers import geocoder, timezone as phone_zones

    description = geocoder.description_for_number(parsed, "en")
    zones = tuple(z for z in phone_zones.time_zones_for_number(parsed) if z != "Etc/Unknown")
    state, known = None, "area code"
    if ", " in description:  # "Pensacola, FL": the data knows the exchange
        state, known = description.rsplit(", ", 1)[1], "exchange"
    elif description in STATES:
        state = STATES[description]
    if not description or not zones:  # a toll-free number "is" in every zone of the NANP
        return Place(state, (fallback_zone,), "unknown")
    return Place(state, zones, known)


def rules_for(place: Place, rules: tuple[Rule, ...] = RULES) -> tuple[Rule, ...]:
    return tuple(rule for rule in rules if not rule.states or place.state in rule.states)


def _closed_by(rules: tuple[Rule, ...], zones: tuple[str, ...], at: float) -> Rule | None:
    """The first rule whose window is shut at `at` in any of the zones, or None if all open."""
    for rule in sorted(rules, key=lambda r: not r.states):  # a state's own rule first
        for zone in zones:
            local = datetime.fromtimestamp(at, ZoneInfo(zone))
            window = rule.window_on(local.weekday())
            minute = local.hour * 60 + local.minute + local.second / 60
            if window is None or not window.start <= minute < window.end:
                return rule
    return None


def next_open(rules: tuple[Rule, ...], zones: tuple[str, ...], at: float) -> float:
    """The first moment from `at` when every rule's window is open in every zone: one of the
    windows' openings, found day by day in each zone's own calendar (so DST is its own)."""
    candidates = []
    for zone_name in zones:
        zone = ZoneInfo(zone_name)
        day = datetime.fromtimestamp(at, zone).date()
        for offset in range(_SEARCH_DAYS):
            date = day + timedelta(days=offset)
            for rule in rules:
                window = rule.window_on(date.weekday())
                if window is not None:
                    opening = datetime(date.year, date.month, date.day, window.start // 60,
                                       window.start % 60, tzinfo=zone).timestamp()
                    if opening > at:
                        candidates.append(opening)
    for moment in sorted(set(candidates)):
        if _closed_by(rules, zones, moment) is None:
            return moment
    raise ValueError("the rules leave no open hour in a week")  # a broken RULES table


def judge(number: str, at: float, fallback_zone: str,
          rules: tuple[Rule, ...] = RULES) -> Verdict:
    """May a text go to `number` at `at`, by the rules of where the number is."""
    place = locate(number, fallback_zone)
    applying = rules_for(place, rules)
    closed = _closed_by(applying, place.zones, at)
    if closed is None:
        return Verdict(True, at, None, place, applying, None)
    return Verdict(False, at, next_open(applying, place.zones, at), place, applying, closed)
