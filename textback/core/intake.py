"""Intake facts from a homeowner's own words: project, budget, timing, location, service area.

A remodeler decides whom to call back first from four facts, and homeowners put them in
their first reply ("We want to redo our kitchen, budget around $75k. Can someone come by
Tuesday?"). This module finds them on the company's own server, with rules a person can
read and tune: nothing is sent anywhere.

Each fact carries its evidence (the words it came from) and why it was read so, which
`textback intake` prints. Numbers are the hard part: a phone number, a house number, a
ZIP code or square feet are never a budget. A figure is a budget only with money's marks
(a "$", "k", "thousand", "grand", "mil", "dollars") or, for a plain figure, a budget word
before it; phone numbers, addresses, dates and measured areas are masked before money is
looked for.

Pure: the text, the vocabulary, the service area, "now" in the business's zone and the
caller's number in; the facts out. The libraries read only the data they ship: dateparser
(relative dates, English and Spanish), usaddress (US street addresses), zipcodes (ZIP
centroids), phonenumbers (the area code's place).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Iterable, Mapping, Sequence

import phonenumbers

PROJECT, BUDGET, TIMING, LOCATION, SERVICE_AREA = (
    "project", "budget", "timing", "location", "service_area")
FIELDS = (PROJECT, BUDGET, TIMING, LOCATION, SERVICE_AREA)
# Where a value came from; a person's value always wins over the others.
EXTRACTED, SUGGESTED, PERSON = "extracted", "suggested", "person"

# The shipped vocabulary: each project type and the words homeowners use for it, in English
# and Spanish, as written (accents are ignored when matching; one typo is forgiven in a
# word of six letters or more). A config's `intake.projects` adds words or types.
DEFAULT_PROJECTS: dict[str, tuple[str, ...]] = {
    "kitchen": ("kitchen", "kitchens", "cabinets", "countertops", "counters", "kitchen island",
                "cocina", "gabinetes", "encimeras", "kitch"),
    "bath": ("bathroom", "bathrooms", "bath", "baths", "shower", "tub", "vanity",
             "powder room", "master bath", "ensuite", "restroom", "baño", "baños", "regadera",
             "ducha", "bañera", "tina"),
    "basement": ("basement", "basements", "finish the basement", "lower level", "sotano",
                 "sótano"),
    "addition": ("addition", "add on", "add-on", "bump out", "bump-out", "second story",
                 "second floor addition", "in-law suite", "adu", "sunroom", "sun room",
                 "ampliación", "ampliacion", "extension", "cuarto adicional"),
    "deck": ("deck", "decks", "porch", "pergola", "terraza", "patio cover", "decking"),
    "roofing": ("roof", "roofs", "roofing", "reroof", "re-roof", "shingles", "roofer", "techo",
                "techos", "tejado", "goteras"),
    "siding": ("siding", "vinyl siding", "hardie board", "hardieplank", "revestimiento"),
    "windows": ("window", "windows", "replacement windows", "ventana", "ventanas"),
    "whole-home": ("whole house", "whole home", "entire house", "whole-house", "gut renovation",
                   "gut reno", "full remodel", "full renovation", "entire home", "toda la casa",
                   "casa completa", "la casa entera", "remodel everything"),
    "flooring": ("flooring", "floors", "hardwood", "tile floor", "laminate", "pisos", "piso"),
}
# Project labels as an inbox shows them.
LABELS = {"whole-home": "Whole home", "bath": "Bath"}


# -- values -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fact:
    """One intake field's value: `value` canonical (stored, compared, filtered on), `label`
    as the inbox shows it, `evidence` the words it came from, `why` in plain words."""

    name: str
    value: str
    label: str
    evidence: str
    why: str
    source: str = EXTRACTED


@dataclass(frozen=True)
class Intake:
    """The facts found in one text (or a thread's merged facts), by field name."""

    facts: Mapping[str, Fact] = field(default_factory=dict)

    def get(self, name: str) -> Fact | None:
        return self.facts.get(name)

    def value(self, name: str) -> str | None:
        fact = self.facts.get(name)
        return fact.value if fact else None

    def __iter__(self):
        return (self.facts[name] for name in FIELDS if name in self.facts)

    def __bool__(self) -> bool:
        return bool(self.facts)

    def labels(self) -> str:
        """"Kitchen · ~$75k · 11215 (in area) · Tue": the inbox row's labels, in field order."""
        parts = [fact.label for fact in self if fact.name not in (SERVICE_AREA, LOCATION)]
        location, area = self.get(LOCATION), self.get(SERVICE_AREA)
        if location is not None:
            where = location.label + (f" ({area.label})" if area is not None else "")
            parts.insert(min(2, len(parts)), where)
        elif area is not None:
            parts.insert(min(2, len(parts)), area.label)
        return " · ".join(parts)

    def as_dict(self) -> dict[str, dict[str, str]]:
        return {fact.name: {"value": fact.value, "label": fact.label, "evidence": fact.evidence,
                            "why": fact.why, "source": fact.source} for fact in self}


_AREA_CODE_LABEL = re.compile(r"^area \d{3}$")


def beside_the_number(labels: str) -> str:
    """Labels (Intake.labels) for an alert that shows the caller's number already (a push, an
    alert text): without the bare area-code hint ("area 212"), which that number says. Where a
    few characters are all there is, they go to what the homeowner wrote."""
    return " · ".join(part for part in labels.split(" · ")
                      if part and not _AREA_CODE_LABEL.match(part))


@dataclass(frozen=True)
class ServiceArea:
    """Where the company works: listed ZIP codes, ZIP prefixes, or a radius around the office
    (ZIP centroids from the `zipcodes` package's own data)."""

    zips: frozenset[str] = frozenset()
    zip_prefixes: tuple[str, ...] = ()
    office_zip: str | None = None
    radius_miles: float | None = None

    @property
    def configured(self) -> bool:
        return bool(self.zips or self.zip_prefixes or (self.office_zip and self.radius_miles))


@dataclass(frozen=True)
class Vocabulary:
    """Project types and their words, compiled once from the config."""

    projects: Mapping[str, tuple[str, ...]]

    @classmethod
    def build(cls, extra: Mapping[str, Sequence[str]] | None = None,
              replace_defaults: bool = False) -> "Vocabulary":
        merged: dict[str, tuple[str, ...]] = {} if replace_defaults else dict(DEFAULT_PROJECTS)
        for name, words in (extra or {}).items():
            merged[name] = tuple(dict.fromkeys((*merged.get(name, ()), name, *words)))
        return cls(merged)


DEFAULT_VOCABULARY = Vocabulary.build()


def project_label(value: str) -> str:
    """"kitchen,bath" → "Kitchen + Bath"."""
    return " + ".join(LABELS.get(name, name.replace("-", " ").capitalize())
                      for name in value.split(",") if name)


# -- text helpers -------------------------------------------------------------------------

def _fold(text: str) -> str:
    """Lower case without accents, each character kept in place (so spans map back)."""
    folded = []
    for char in text:
        base = unicodedata.normalize("NFKD", char)
        kept = "".join(c for c in base if not unicodedata.combining(c))
        folded.append((kept[:1] or char).lower() if len(kept) >= 1 else char.lower())
    return "".join(folded)


def _within_one_edit(a: str, b: str) -> bool:
    """Whether two words differ by at most one insertion, deletion, substitution or swap."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diffs = [k for k in range(len(a)) if a[k] != b[k]]
        if len(diffs) == 1:
            return True
        return (len(diffs) == 2 and diffs[1] == diffs[0] + 1
                and a[diffs[0]] == b[diffs[1]] and a[diffs[1]] == b[diffs[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    for k in range(len(long_)):
        if long_[:k] + long_[k + 1:] == short:
            return True
    return False


_WORD = re.compile(r"[a-z0-9ñ]+(?:'[a-z0-9ñ]+)*")
NEGATIONS = ("not", "no", "isn't", "dont", "don't", "without", "except", "ni", "sin")
# "3 bed 2 bath" describes a house, not a project; "3 floors" counts storeys.
_HOUSE_SHAPE = re.compile(r"\b\d+\s*(?:bed(?:room)?s?|br|bd)\s*[,/]?\s*\d+(?:\.\d)?\s*(?:bath(?:room)?s?|ba)\b|\b\d+\s*(?:floors|stories|storeys|pisos)\b", re.IGNORECASE)


# -- project ------------------------------------------------------------------------------

def find_projects(text: str, vocabulary: Vocabulary = DEFAULT_VOCABULARY) -> Fact | None:
    """Every project type the text names, in the order named; a typo of one letter in a
    long word is forgiven; a type named right after "not"/"no" is skipped."""
    folded = _masked(_fold(text), [m.span() for m in _HOUSE_SHAPE.finditer(text)])
    words = [(m.group(0), m.start(), m.end()) for m in _WORD.finditer(folded)]
    found: dict[str, tuple[int, str]] = {}
    for name, synonyms in vocabulary.projects.items():
        for synonym in (name, *synonyms):
            parts = _fold(synonym).replace("-", " ").split()
            if not parts:
                continue
            for k in range(len(words) - len(parts) + 1):
                window = [w[0] for w in words[k:k + len(parts)]]
                if " ".join(window) != " ".join(parts) and not (
                        len(parts) == 1 and len(parts[0]) >= 6 and len(window[0]) >= 6
                        and _within_one_edit(window[0], parts[0])):
                    continue
                before = [w[0] for w in words[max(0, k - 2):k]]
                if any(word in NEGATIONS for word in before):
                    continue
                start, end = words[k][1], words[k + len(parts) - 1][2]
                if name not in found or start < found[name][0]:
                    found[name] = (start, text[start:end])
    if not found:
        return None
    ordered = sorted(found.items(), key=lambda item: item[1][0])
    value = ",".join(name for name, _ in ordered)
    evidence = ", ".join(f"“{words}”" for _, (_, words) in ordered)
    why = "named " + "; ".join(f"{words!r} → {name}" for name, (_, words) in ordered)
    return Fact(PROJECT, value, project_label(value), evidence, why)


# -- what numbers are not -----------------------------------------------------------------

_PHONE = re.compile(r"(?<![\w$])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-]?)\d{3}[\s.-]\d{4}\b"
                    r"|(?<![\w$])\+?1?\d{10}\b")
_NUMERIC_DATE = re.compile(r"\b\d{1,2}/\d{1,2}(?:/\d{2,4})?\b")
_CLOCK = re.compile(r"\b\d{1,2}(?::\d{2})?\s?(?:am|pm|a\.m\.|p\.m\.)|\b\d{1,2}:\d{2}\b",
                    re.IGNORECASE)
_STREET_TYPES = (r"st|street|ave|avenue|av|rd|road|blvd|boulevard|dr|drive|ln|lane|ct|court|pl|"
                 r"place|way|ter|terrace|pkwy|parkway|cir|circle|hwy|highway|trl|trail|sq|"
                 r"square|loop|row|run|pike|calle|avenida")
_ADDRESS = re.compile(
    r"\b(?P<number>\d{1,6}[a-z]?)\s+(?:(?:[nsew]|north|south|east|west)\.?\s+)?"
    r"(?P<street>(?:\d{1,3}(?:st|nd|rd|th)|[a-z][a-z'.-]*)(?:\s+[a-z][a-z'.-]*){0,3}?)\s+"
    rf"(?P<type>{_STREET_TYPES})\b\.?", re.IGNORECASE)
_AREA_UNIT = re.compile(r"^\s*(?:sq\.?\s*(?:ft|feet|foot)?|square|sf\b|sqft|ft2|ft\b|feet|foot|"
                        r"pies|metros|m2|linear|lf\b|x\s*\d|years?|yrs?|años|anos|%|percent|"
                        r"minutes?|mins?|hours?|hrs?|days?|weeks?|months?|meses|semanas|dias|"
                        r"windows?|ventanas|people|kids|bedrooms?|beds?|baths?|rooms?|"
                        r"cuartos|pm|am)", re.IGNORECASE)
_UNIT_NUMBER = re.compile(r"(?:#|\bapt\.?|\bunit|\bsuite|\bste\.?|\bno\.|\bnumber|\bnum\.?|"
                          r"\bbox|\bzip(?:\s*code)?:?|\bcp)\s*$", re.IGNORECASE)


def _masked(text: str, spans: Iterable[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        for k in range(start, end):
            chars[k] = " "
    return "".join(chars)


# -- budget -------------------------------------------------------------------------------

_UNITS_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8, "nine": 9, "ten": 10, "fifteen": 15, "twenty": 20, "thirty": 30,
                "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
                "ninety": 90, "hundred": 100, "a hundred": 100, "one hundred": 100,
                "uno": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6, "siete": 7,
                "ocho": 8, "nueve": 9, "diez": 10, "quince": 15, "veinte": 20, "treinta": 30,
                "cuarenta": 40, "cincuenta": 50, "sesenta": 60, "setenta": 70, "ochenta": 80,
                "noventa": 90, "cien": 100, "ciento": 100}
_TENS_WORDS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_WORD_NUMBER = (r"(?:(?:" + "|".join(_TENS_WORDS) + r")[- ](?:one|two|three|four|five|six|seven|"
                r"eight|nine)|a hundred|one hundred|" + "|".join(sorted(_UNITS_WORDS, key=len,
                                                                         reverse=True)) + r")")
_FIGURE = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_MULT = (r"k\b|thousand|thou\b|grand|mil\b|million|millones|millon|mm\b|m\b")
_AMOUNT = (rf"(?:(?P<cur{{n}}>\$|usd\s?)\s?)?(?P<num{{n}}>{_FIGURE}|{_WORD_NUMBER})"
           rf"(?:\s?(?P<mult{{n}}>{_MULT}))?(?P<ish{{n}}>\s?-?ish)?"
           rf"(?:\s?(?P<dollars{{n}}>dollars|bucks|dolares|usd)\b)?")
_BUDGET = re.compile(
    r"(?P<between>\b(?:between|entre|from|de)\s+)?" + _AMOUNT.replace("{n}", "1")
    + r"(?:\s*(?:-|–|—|to|and|or|y|a|hasta)\s*" + _AMOUNT.replace("{n}", "2") + r")?"
    + r"(?P<plus>\s?\+)?", re.IGNORECASE)
_BUDGET_CUE = re.compile(
    r"\b(?:budget(?:ed)?|presupuesto|spend|spending|gastar|afford|invest|price range|"
    r"looking at|thinking|around|about|approx\w*|roughly|up to|under|over|max\w*|"
    r"alrededor de|como|unos|hasta|menos de|mas de|cost|costo)\b[^.!?\n]{0,25}$",
    re.IGNORECASE)
_APPROX = re.compile(r"(?:around|about|approx\w*|roughly|maybe|~|give or take|ballpark|"
                     r"alrededor de|aproximadamente|unos|como|mas o menos|something like|"
                     r"close to|cerca de)\s*(?:of\s*|de\s*)?(?:the\s*)?\$?\s*$", re.IGNORECASE)
_UPPER = re.compile(r"(?:under|below|less than|up to|no more than|not more than|max(?:imum)?|"
                    r"at most|menos de|hasta|no mas de|tops|cap(?:ped)? at|within)\s*(?:of\s*)?"
                    r"\$?\s*$", re.IGNORECASE)
_LOWER = re.compile(r"(?:over|above|more than|at least|mas de|minimo|min|upwards of)\s*(?:of\s*)?"
                    r"\$?\s*$", re.IGNORECASE)


_UPPER_AFTER = re.compile(r"\s*,?\s*(?:max(?:imum)?\b|tops\b|or less\b|at most\b|o menos\b|"
                          r"como maximo\b)", re.IGNORECASE)
_APPROX_AFTER = re.compile(r"\s*,?\s*(?:mas o menos|or so|give or take|roughly|aprox\w*)\b",
                           re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    low: int | None
    high: int | None
    approximate: bool = False

    @property
    def value(self) -> str:
        if self.low is not None and self.high is not None and self.low != self.high:
            return f"{self.low}-{self.high}"
        if self.low is not None and self.high is None:
            return f">{self.low}"
        if self.low is None and self.high is not None:
            return f"<{self.high}"
        return f"~{self.low}" if self.approximate else str(self.low)

    @property
    def label(self) -> str:
        if self.low is not None and self.high is not None and self.low != self.high:
            return f"${_short(self.low)}–{_short(self.high)}"
        if self.low is not None and self.high is None:
            return f"${_short(self.low)}+"
        if self.low is None and self.high is not None:
            return f"under ${_short(self.high)}"
        return ("~" if self.approximate else "") + f"${_short(self.low or 0)}"


def _short(amount: int) -> str:
    if amount >= 1_000_000:
        return f"{amount / 1_000_000:g}M"
    if amount >= 1000:
        return f"{amount / 1000:g}k"
    return str(amount)


def parse_budget_value(value: str) -> Budget | None:
    """A stored budget value ("75000", "~75000", "50000-60000", "<30000", ">100000") back to
    a Budget; None when it is not one."""
    value = value.strip()
    match = re.fullmatch(r"(~)?(\d+)(?:-(\d+))?|<(\d+)|>(\d+)", value)
    if not match:
        return None
    approx, low, high, under, over = match.groups()
    if under:
        return Budget(None, int(under))
    if over:
        return Budget(int(over), None)
    return Budget(int(low), int(high) if high else int(low), bool(approx))


def _number(raw: str) -> float | None:
    raw = _fold(raw).strip()
    if raw in _UNITS_WORDS:
        return float(_UNITS_WORDS[raw])
    tens = re.fullmatch(r"(\w+)[- ](\w+)", raw)
    if tens and tens.group(1) in _UNITS_WORDS and tens.group(2) in _UNITS_WORDS:
        return float(_UNITS_WORDS[tens.group(1)] + _UNITS_WORDS[tens.group(2)])
    try:
        return float(raw.replace(",", ""))
    except ValueError:
        return None


def _multiplier(mult: str | None, number: float, currency: bool) -> float | None:
    if not mult:
        return 1.0
    mult = _fold(mult).strip()
    if mult in ("k", "thousand", "thou", "grand"):
        return 1000.0
    if mult == "mil":
        return 1_000_000.0 if number < 10 and currency else 1000.0
    if mult in ("million", "millones", "millon", "mm"):
        return 1_000_000.0
    if mult == "m":
        return 1_000_000.0 if currency else None
    return None


def find_budget(text: str, masked: str) -> Fact | None:
    """The budget: the first figure marked as money, or a plain figure after a budget word."""
    folded = _fold(masked)
    for match in _BUDGET.finditer(folded):
        budget = _budget_of(match, folded)
        if budget is None:
            continue
        evidence = text[match.start():match.end()].strip()
        before = folded[max(0, match.start() - 40):match.start()]
        after = folded[match.end():match.end() + 20]
        if budget.low is not None and budget.high == budget.low and _UPPER_AFTER.match(after):
            budget = Budget(None, budget.low)
            evidence = text[match.start():match.end() + _UPPER_AFTER.match(after).end()].strip()
        elif budget.approximate or _APPROX.search(before) or _APPROX_AFTER.match(after):
            budget = replace(budget, approximate=True)
            cue = re.search(r"(around|about|approx\w*|roughly|maybe|~|ballpark|alrededor de|"
                            r"aproximadamente|unos|como|close to|cerca de|something like)\s*"
                            r"(?:of\s*|de\s*)?(?:the\s*)?\$?\s*$", before)
            if cue:
                evidence = text[match.start() - len(before) + cue.start():match.end()].strip()
        elif budget.low is not None and budget.high == budget.low and _UPPER.search(before):
            cue = _UPPER.search(before)
            budget = Budget(None, budget.low)
            evidence = text[match.start() - len(before) + cue.start():match.end()].strip()
        elif budget.low is not None and budget.high == budget.low and _LOWER.search(before):
            cue = _LOWER.search(before)
            budget = Budget(budget.low, None)
            evidence = text[match.start() - len(before) + cue.start():match.end()].strip()
        kind = ("a range" if budget.low and budget.high and budget.low != budget.high
                else "an upper limit" if budget.low is None
                else "a lower limit" if budget.high is None
                else "an approximate amount" if budget.approximate else "an amount")
        return Fact(BUDGET, budget.value, budget.label, evidence,
                    f"“{evidence}” read as {kind}: {budget.label}")
    return None


def _budget_of(match: re.Match, folded: str) -> Budget | None:
    amounts = []
    for n in (1, 2):
        raw = match.group(f"num{n}")
        if raw is None:
            continue
        number = _number(raw)
        if number is None:
            return None
        amounts.append((number, match.group(f"cur{n}"), match.group(f"mult{n}"),
                        match.group(f"dollars{n}"), raw))
    if not amounts:
        return None
    after = folded[match.end():match.end() + 12]
    before = folded[max(0, match.start() - 12):match.start()]
    if _AREA_UNIT.match(after) or _UNIT_NUMBER.search(before) or re.search(r"[\w/.,:-]$", before):
        return None
    currency = any(a[1] or a[3] for a in amounts)
    marked = currency or any(a[2] for a in amounts)
    words_only = all(not re.match(r"\d", a[4]) for a in amounts)
    if words_only and not any(a[2] for a in amounts):
        return None  # "two bathrooms", "ten years": words are money only with "thousand" etc.
    if not marked:
        cue = _BUDGET_CUE.search(folded[max(0, match.start() - 60):match.start()])
        grouped = any("," in a[4] for a in amounts)
        if not cue and not grouped:
            return None
    # A range's unit comes from its second figure when the first has none: "50-60k".
    last_mult = amounts[-1][2]
    values = []
    for number, cur, mult, _, _ in amounts:
        factor = _multiplier(mult or (last_mult if len(amounts) == 2 else None), number,
                             currency)
        if factor is None:
            return None
        values.append(int(round(number * factor)))
    if any(v < 500 or v > 20_000_000 for v in values):
        return None
    if len(values) == 2:
        low, high = sorted(values)
        return Budget(low, high)
    plus = bool(match.group("plus"))
    ish = bool(match.group("ish1"))
    return Budget(values[0], None if plus else values[0], ish)


# -- location and service area ------------------------------------------------------------

_ZIP = re.compile(r"(?<![\d$,.#-])\b(\d{5})(?:-\d{4})?\b(?!\d|[,.]\d|\s?(?:k|sq|square|sf|ft|"
                  r"feet|pies|dollars|bucks|usd|thousand|grand|mil)\b)", re.IGNORECASE)
_STATES = ("AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE "
           "NV NH NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY PR").split()
_STATE_BEFORE = re.compile(r"(?:\b(?:" + "|".join(_STATES) + r")\b|(?i:\bzip(?:\s*code)?|"
                           r"c[oó]digo postal|\bcp|zipcode|\bin|\ben(?: el)?|area|live in|"
                           r"located in))[\s,.:#]*$")


@dataclass(frozen=True)
class Place:
    """A ZIP code's centroid and name (zipcodes' shipped data)."""

    zip: str
    city: str
    state: str
    lat: float
    lon: float


def zip_place(zip_code: str) -> Place | None:
    """The ZIP code's centroid and name from the `zipcodes` package, or None if it has none."""
    import zipcodes  # its data (a compressed JSON in the package) loads on first use

    try:
        rows = zipcodes.matching(zip_code)
    except (ValueError, TypeError):
        return None
    for row in rows:
        try:
            return Place(row["zip_code"], row.get("city", ""), row.get("state", ""),
                         float(row["lat"]), float(row["long"]))
        except (KeyError, TypeError, ValueError):
            continue
    return None


def miles_between(a: Place, b: Place) -> float:
    """Great-circle distance between two centroids (haversine, Earth radius 3958.8 mi)."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat, dlon = lat2 - lat1, math.radians(b.lon - a.lon)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * 3958.8 * math.asin(math.sqrt(h))


def find_address(text: str) -> tuple[str, str | None, tuple[int, int]] | None:
    """A street address (house number, street, type; city, state and ZIP when written), as
    usaddress tags it: (the address line, its ZIP or None, its span)."""
    import usaddress

    for match in _ADDRESS.finditer(text):
        number = match.group("number")
        if not re.match(r"\d", number) or int(re.sub(r"\D", "", number)) == 0:
            continue
        end = len(text)
        stop = re.search(r"[!?;\n]|\.(?:\s|$)(?!\s*[A-Z]{2}\b)", text[match.end():])
        if stop:
            end = match.end() + stop.start()
        candidate = text[match.start():end]
        try:
            tagged = usaddress.parse(candidate)
        except Exception:  # noqa: BLE001 - the CRF raises on odd tokens; the regex match stands
            tagged = []
        kept, zip_code, last = [], None, 0
        offset = 0
        for token, label in tagged:
            at = candidate.find(token, offset)
            if at < 0:
                break
            offset = at + len(token)
            if label in ("Recipient", "NotAddress", "LandmarkName"):
                if offset > match.end() - match.start():
                    break
                continue
            kept.append(token)
            last = offset
            if label == "ZipCode" and re.fullmatch(r"\d{5}(?:-\d{4})?", token):
                zip_code = token[:5]
        line = candidate[:max(last, match.end() - match.start())].strip(" ,.")
        return line, zip_code, (match.start(), match.start() + len(line))
    return None


def find_location(text: str, masked: str, caller: str | None) -> Fact | None:
    """A written street address, else a ZIP code, else (the weakest hint) the caller's area
    code and the place phonenumbers gives it."""
    address = find_address(masked)
    if address is not None:
        line, zip_code, (start, end) = address
        evidence = text[start:end]
        if zip_code is None:
            for match in _ZIP.finditer(masked):
                zip_code = match.group(1)
                break
        value = zip_code or line
        return Fact(LOCATION, value, zip_code or line, evidence,
                    f"street address “{evidence}” (usaddress)"
                    + (f", ZIP {zip_code}" if zip_code else ", no ZIP written"))
    for match in _ZIP.finditer(masked):
        code = match.group(1)
        before = masked[max(0, match.start() - 20):match.start()]
        place = zip_place(code)
        if place is None and not _STATE_BEFORE.search(before):
            continue
        if _BUDGET_CUE.search(before) and not _STATE_BEFORE.search(before):
            continue  # "budget is 60000"
        where = f" ({place.city.title()}, {place.state})" if place else ""
        return Fact(LOCATION, code, code, match.group(0), f"ZIP code {code}{where}")
    if caller:
        try:
            number = phonenumbers.parse(caller, None)
        except phonenumbers.NumberParseException:
            return None
        if number.country_code != 1:
            return None
        area = str(number.national_number)[:3]
        # Its place names (megabytes of tables) load on first use, not with the daemon.
        from phonenumbers import geocoder

        place = geocoder.description_for_number(number, "en")
        return Fact(LOCATION, f"area code {area}", f"area {area}", caller,
                    f"only the caller's area code {area}"
                    + (f" ({place})" if place else "")
                    + ": the weakest hint, a mobile number moves with its owner")
    return None


def judge_area(location: Fact | None, area: ServiceArea) -> Fact | None:
    """In or out of the service area, from a ZIP code; None without one, or without a
    configured area. An area code alone decides nothing."""
    if location is None or not area.configured or not re.fullmatch(r"\d{5}", location.value):
        return None
    code = location.value
    if code in area.zips:
        return Fact(SERVICE_AREA, "in", "in area", code, f"ZIP {code} is listed in service_area.zips")
    prefix = next((p for p in area.zip_prefixes if code.startswith(p)), None)
    if prefix is not None:
        return Fact(SERVICE_AREA, "in", "in area", code,
                    f"ZIP {code} starts with {prefix} (service_area.zip_prefixes)")
    if area.office_zip and area.radius_miles:
        office, here = zip_place(area.office_zip), zip_place(code)
        if office is not None and here is not None:
            miles = miles_between(office, here)
            inside = miles <= area.radius_miles
            return Fact(SERVICE_AREA, "in" if inside else "out",
                        "in area" if inside else "out of area", code,
                        f"ZIP {code} ({here.city.title()}, {here.state}) is {miles:.1f} mi from "
                        f"the office's {area.office_zip}; the radius is {area.radius_miles:g} mi")
        if here is None:
            if area.zips or area.zip_prefixes:
                return Fact(SERVICE_AREA, "out", "out of area", code,
                            f"ZIP {code} is not listed and has no known centroid")
            return None
    return Fact(SERVICE_AREA, "out", "out of area", code,
                f"ZIP {code} is neither listed nor within the radius")


# -- timing -------------------------------------------------------------------------------

_ASAP = re.compile(r"\b(?:asap|a\.s\.a\.p\.?|as soon as (?:possible|you can)|right away|"
                   r"immediately|urgent(?:ly)?|emergency|lo antes posible|"
                   r"lo mas pronto posible|cuanto antes|urgente|de inmediato|ya mismo)\b|"
                   r"\bsoon as possible\b", re.IGNORECASE)
_FLEXIBLE = re.compile(r"(?<!budget is )(?<!budget's )(?<!price is )\b(?:no rush|no hurry|not in a rush|not in a hurry|whenever|"
                       r"flexible|any ?time|sin prisa|no hay prisa|no hay apuro|cuando sea)\b",
                       re.IGNORECASE)
_SEASONS = {"spring": 3, "primavera": 3, "summer": 6, "verano": 6, "fall": 9, "autumn": 9,
            "otono": 9, "winter": 12, "invierno": 12}
_SEASON = re.compile(r"\b(?:(this|next|este|esta|el proximo|la proxima|proximo|proxima|"
                     r"early|late|in the|en el|en la|by|for)\s+)?(spring|summer|fall|autumn|winter|"
                     r"primavera|verano|otono|invierno)\b(?:\s+(?:of\s+)?(\d{4}))?",
                     re.IGNORECASE)
_MONTHS = ("january|february|march|april|may|june|july|august|september|october|november|"
           "december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec|enero|febrero|marzo|"
           "abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre")
_RELATIVE = re.compile(
    r"\b(?:(?:this|next|the following|el proximo|la proxima|proxima|proximo|esta|este)\s+"
    r"(?:week|month|year|weekend|semana|mes|ano|fin de semana)|"
    r"(?:la semana|el mes|el ano) (?:que viene|entrante)|"
    r"(?:in|within|en)\s+(?:a|an|one|two|three|four|five|six|\d{1,2}|un|una|dos|tres|cuatro)"
    r"\s+(?:days?|weeks?|months?|dias|semanas|meses)|"
    r"tomorrow|tmrw|tmrw|tomorow|tommorow|tommorrow|tmr|today|tonight|hoy|pasado manana|(?<!la )(?<!por la )manana(?! por)(?=\W|$)|"
    r"the weekend|this weekend|el fin de semana)\b", re.IGNORECASE)
_DAY_NAMES = ("monday|tuesday|wednesday|thursday|friday|saturday|sunday|tues|tue|weds|wed|"
              "thurs|thur|thu|fri|lunes|martes|miercoles|jueves|viernes|sabado|domingo")
_WEEKDAY = re.compile(rf"\b(?:(?:this|next|on|el|este|el proximo|proximo)\s+)?(?:{_DAY_NAMES})\b"
                      r"|\b(?:on|this|next|by)\s+(?:mon|sat|sun)\b", re.IGNORECASE)
_DATE = re.compile(
    rf"\b(?:(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+|de\s+)?(?:{_MONTHS})(?:\s+(?:de\s+)?\d{{4}})?"
    rf"|(?:(?:in|by|around|early|mid|late|before|after|this|next|en|para|a finales de|"
    rf"a principios de|until|till|starting|start|begin|beginning|start of|end of|"
    rf"beginning of|middle of|in early|in late|in mid)[\s-]+)(?:{_MONTHS})\b"
    rf"(?!\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b)(?:\s+\d{{4}})?)"
    rf"|\b\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?\b", re.IGNORECASE)
# Fixed-date holidays homeowners name as deadlines ("before Christmas").
_HOLIDAYS = {"christmas": (12, 25), "xmas": (12, 25), "navidad": (12, 25),
             "new year's": (1, 1), "new years": (1, 1), "ano nuevo": (1, 1),
             "fourth of july": (7, 4), "july 4th": (7, 4), "4th of july": (7, 4),
             "halloween": (10, 31)}
_HOLIDAY = re.compile(r"\b(" + "|".join(re.escape(k) for k in _HOLIDAYS) + r")\b")


def _parse_date(phrase: str, now: datetime) -> tuple[datetime, str] | None:
    """dateparser's reading of a phrase relative to `now` (local time): (moment, period),
    the period being day, week, month or year."""
    from dateparser.date import DateDataParser

    parser = DateDataParser(languages=["en", "es"], settings={
        "RELATIVE_BASE": now.replace(tzinfo=None), "PREFER_DATES_FROM": "future",
        "PREFER_DAY_OF_MONTH": "first", "RETURN_AS_TIMEZONE_AWARE": False,
        "DATE_ORDER": "MDY", "RETURN_TIME_AS_PERIOD": True})
    data = parser.get_date_data(phrase)
    if data is None or data.date_obj is None:
        return None
    return data.date_obj, data.period or "day"


def _season(name: str, qualifier: str | None, year: str | None, today: date) -> tuple[date, date]:
    start_month = _SEASONS[name]
    start_year = int(year) if year else today.year
    start = date(start_year, start_month, 1)
    end_month = start_month + 2
    end = (date(start_year + (end_month > 12), (end_month - 1) % 12 + 1, 1)
           + timedelta(days=31)).replace(day=1) - timedelta(days=1)
    if not year and end < today:
        start, end = start.replace(year=start.year + 1), end.replace(year=end.year + 1)
    if not year and qualifier and _fold(qualifier).startswith(("next", "el proximo", "la proxima",
                                                               "proxim")) and start <= today:
        start, end = start.replace(year=start.year + 1), end.replace(year=end.year + 1)
    return start, end


def find_timing(text: str, masked: str, now: datetime) -> Fact | None:
    """When they want it: ASAP, a date, a weekday, a week, a month, a season, or no rush.
    `now` is the business's local time; the earliest-written phrase wins, except ASAP."""
    folded = _fold(text)
    today = now.date()
    asap = _ASAP.search(folded)
    if asap:
        evidence = text[asap.start():asap.end()]
        return Fact(TIMING, "asap", "ASAP", evidence, f"“{evidence}”: as soon as possible")
    candidates: list[tuple[int, str, re.Match]] = []
    for kind, pattern in (("season", _SEASON), ("relative", _RELATIVE), ("weekday", _WEEKDAY),
                          ("date", _DATE)):
        for match in pattern.finditer(_fold(masked) if kind == "date" else folded):
            candidates.append((match.start(), kind, match))
    for start, kind, match in sorted(candidates, key=lambda c: c[0]):
        evidence = text[match.start():match.end()].strip()
        if kind == "season":
            begin, end = _season(_fold(match.group(2)), match.group(1), match.group(3), today)
            name = {"primavera": "spring", "verano": "summer", "otono": "fall", "autumn": "fall",
                    "invierno": "winter"}.get(_fold(match.group(2)), _fold(match.group(2)))
            return Fact(TIMING, f"{begin.isoformat()}/{end.isoformat()}",
                        f"{name} {begin.year}" if begin.year != today.year else name,
                        evidence, f"“{evidence}”: {begin:%b %-d} to {end:%b %-d %Y}")
        if kind == "weekday" and any(k == "date" and 0 <= s - match.end() <= 4
                                     for s, k, _ in candidates):
            continue  # "Tuesday Dec 15": the date says more
        phrase = re.sub(r"^(?:on|by|around|in|this|en|para|el(?! pr)|before|after|until|till|"
                        r"starting|start|begin|beginning|start of|beginning of|early|mid|late|"
                        r"middle of|end of|a finales de|a principios de|in early|in late|"
                        r"in mid)[\s-]+", "", text[match.start():match.end()].lower().strip())
        phrase = re.sub(r"^(?:tmrw|tomorow|tommorow|tommorrow|tmr)$", "tomorrow", phrase)
        if kind == "weekday" and phrase.split()[0] not in ("next", "proximo", "el"):
            phrase = phrase.replace("this ", "").replace("este ", "")
        if "weekend" in phrase or "fin de semana" in phrase:
            saturday = today + timedelta(days=(5 - today.weekday()) % 7)
            if "next" in phrase or "proxim" in _fold(phrase):
                saturday += timedelta(days=7)
            return Fact(TIMING, saturday.isoformat(), f"wknd {saturday:%b %-d}",
                        evidence, f"“{evidence}”: the weekend of {saturday:%a %b %-d}")
        parsed = _parse_date(phrase, now)
        if parsed is None:
            continue
        when, period = parsed
        if when.date() < today and kind != "date":
            continue
        if period == "year":
            return Fact(TIMING, f"{when.year}", str(when.year), evidence,
                        f"“{evidence}”: {when.year}")
        if period == "month" or (kind == "date" and not re.search(r"\d", phrase)):
            value = f"{when.year}-{when.month:02d}"
            return Fact(TIMING, value, f"{when:%b}" + (f" {when.year}" if when.year != today.year
                                                       else ""),
                        evidence, f"“{evidence}”: {when:%B %Y}")
        if period == "week":
            monday = when.date() - timedelta(days=when.weekday())
            return Fact(TIMING, f"{monday.isoformat()}/{(monday + timedelta(days=6)).isoformat()}",
                        f"wk of {monday:%b %-d}", evidence, f"“{evidence}”: the week of "
                                                            f"{monday:%a %b %-d}")
        day = when.date()
        label = f"{day:%a}" if 0 <= (day - today).days < 7 else f"{day:%b %-d}"
        return Fact(TIMING, day.isoformat(), label, evidence, f"“{evidence}”: {day:%a %b %-d %Y}")
    holiday = _HOLIDAY.search(folded)
    if holiday:
        month, day = _HOLIDAYS[holiday.group(1)]
        when = date(today.year, month, day)
        when = when if when >= today else when.replace(year=today.year + 1)
        evidence = text[holiday.start():holiday.end()]
        return Fact(TIMING, when.isoformat(), f"{when:%b %-d}", evidence,
                    f"“{evidence}”: {when:%a %b %-d %Y}")
    flexible = _FLEXIBLE.search(folded)
    if flexible:
        evidence = text[flexible.start():flexible.end()]
        return Fact(TIMING, "flexible", "no rush", evidence, f"“{evidence}”: no date in mind")
    return None


# -- the whole ----------------------------------------------------------------------------

def extract(text: str, now: datetime, vocabulary: Vocabulary = DEFAULT_VOCABULARY,
            area: ServiceArea = ServiceArea(), caller: str | None = None) -> Intake:
    """Every intake fact one text holds. `now` is timezone-aware in the business's zone."""
    text = text[:4000]
    masks = [m.span() for m in _PHONE.finditer(text)] + [m.span() for m in _CLOCK.finditer(text)]
    phone_masked = _masked(text, masks)
    address = find_address(phone_masked)
    dates = [m.span() for m in _NUMERIC_DATE.finditer(phone_masked)]
    money_masked = _masked(phone_masked, dates + ([address[2]] if address else []))
    zips = [m.span() for m in _ZIP.finditer(money_masked)
            if _STATE_BEFORE.search(money_masked[max(0, m.start() - 20):m.start()])
            or not _BUDGET_CUE.search(money_masked[max(0, m.start() - 40):m.start()])]
    facts: dict[str, Fact] = {}
    for fact in (find_projects(text, vocabulary),
                 find_budget(text, _masked(money_masked, zips)),
                 find_timing(text, _masked(phone_masked, [address[2]] if address else []), now),
                 find_location(text, phone_masked, caller)):
        if fact is not None:
            facts[fact.name] = fact
    area_fact = judge_area(facts.get(LOCATION), area)
    if area_fact is not None:
        facts[SERVICE_AREA] = area_fact
    return Intake(facts)


def merge(layers: Iterable[Fact]) -> Intake:
    """A thread's facts from its extractions and corrections, oldest first: a person's value
    wins over an extracted one whatever their order; otherwise the newest wins, except that
    the caller's area code never displaces a written place. A suggestion (an optional
    model's) shows only where nothing else speaks."""
    rank = {SUGGESTED: 0, EXTRACTED: 1, PERSON: 2}

    def weight(fact: Fact) -> tuple[int, bool]:
        # The caller's area code yields to any written place, whichever came later.
        return rank.get(fact.source, 0), not is_area_code_hint(fact)

    best: dict[str, Fact] = {}
    for fact in layers:
        held = best.get(fact.name)
        if held is None or weight(fact) >= weight(held):
            best[fact.name] = fact
    return Intake(best)


def is_area_code_hint(fact: Fact) -> bool:
    return fact.name == LOCATION and fact.value.startswith("area code ")


def correction(name: str, raw: str, area: ServiceArea = ServiceArea(),
               vocabulary: Vocabulary = DEFAULT_VOCABULARY,
               now: datetime | None = None) -> Fact:
    """A person's value for one field, checked; ValueError names what is wrong.

    project: a type of the vocabulary (or its word: "cocina" is kitchen), or several with
    commas; budget: "80k", "$50k-60k", "under 30k"; timing: "asap", "flexible", a date, or
    words dateparser reads (with `now`); location: a ZIP or an address; service_area:
    in/out."""
    raw = " ".join(raw.split())
    if not raw:
        raise ValueError(f"{name}: give a value")
    if name == PROJECT:
        names = []
        for part in raw.split(","):
            key = part.strip().lower()
            if key in vocabulary.projects:
                names.append(key)
                continue
            found = find_projects(part, vocabulary)
            if found is None:
                raise ValueError(f"project: {part.strip()!r} is not a known project type "
                                 f"(known: {', '.join(vocabulary.projects)})")
            names += found.value.split(",")
        value = ",".join(dict.fromkeys(names))
        return Fact(PROJECT, value, project_label(value), raw, "set by a person", PERSON)
    if name == BUDGET:
        stored = parse_budget_value(raw)
        if stored is None:
            found = find_budget(raw, raw if re.search(r"[$k]|thousand|grand|mil", raw, re.I)
                                else "budget " + raw)
            if found is None and re.fullmatch(r"\d[\d,]*", raw):
                found = find_budget("$" + raw, "$" + raw)
            if found is None:
                raise ValueError(f"budget: {raw!r} is not an amount (say 80k, $75,000, "
                                 "50k-60k, under 30k)")
            stored = parse_budget_value(found.value)
        assert stored is not None
        return Fact(BUDGET, stored.value, stored.label, raw, "set by a person", PERSON)
    if name == TIMING:
        if now is None:
            raise ValueError("timing: no moment to read it against")
        stored = _stored_timing(raw)
        if stored is not None:
            return Fact(TIMING, raw, stored, raw, "set by a person", PERSON)
        found = find_timing(raw, raw, now)
        if found is None:
            raise ValueError(f"timing: {raw!r} is not a time (say asap, next month, Tuesday, "
                             "2027-03-15, this spring)")
        return replace(found, evidence=raw, why="set by a person", source=PERSON)
    if name == LOCATION:
        code = re.fullmatch(r"\d{5}", raw)
        address = find_address(raw)
        if not code and address is None:
            raise ValueError(f"location: {raw!r} is neither a ZIP code nor a street address")
        value = raw if code else (address[1] or address[0]) if address else raw
        return Fact(LOCATION, value, value, raw, "set by a person", PERSON)
    if name == SERVICE_AREA:
        key = raw.lower().replace("-", " ")
        if key not in ("in", "out", "in area", "out of area"):
            raise ValueError("service_area: say in or out")
        inside = key.startswith("in")
        return Fact(SERVICE_AREA, "in" if inside else "out", "in area" if inside else
                    "out of area", raw, "set by a person", PERSON)
    raise ValueError(f"{name!r} is not an intake field (fields: {', '.join(FIELDS)})")


def _stored_timing(value: str) -> str | None:
    """The label of a timing as it is stored (a date, a month, a year, a start/end span), so
    a value shown can be confirmed as it is; None for anything else."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return f"{date.fromisoformat(value):%b %-d}"
        if re.fullmatch(r"\d{4}-\d{2}", value):
            return f"{date.fromisoformat(value + '-01'):%b %Y}"
        if re.fullmatch(r"\d{4}", value):
            return value
        span = re.fullmatch(r"(\d{4}-\d{2}-\d{2})/(\d{4}-\d{2}-\d{2})", value)
        if span:
            start, end = date.fromisoformat(span[1]), date.fromisoformat(span[2])
            return f"{start:%b %-d}–{end:%b %-d %Y}" if start <= end else None
    except ValueError:
        return None
    return None


def corrections(name: str, raw: str, area: ServiceArea = ServiceArea(),
                vocabulary: Vocabulary = DEFAULT_VOCABULARY,
                now: datetime | None = None) -> list[Fact]:
    """A person's value for a field, and what follows from it: a ZIP a person sets decides
    the service area too (when one is configured), as that person's value."""
    fact = correction(name, raw, area, vocabulary, now)
    facts = [fact]
    if name == LOCATION:
        judged = judge_area(fact, area)
        if judged is not None:
            facts.append(replace(judged, evidence=raw, source=PERSON,
                                 why=f"{judged.why} (the ZIP a person set)"))
    return facts
