"""Caller-ID to a textable E.164 number, or None.

Caller IDs arrive as whatever the carrier or a phone put in the From header:
`anonymous`, `<unknown>`, an extension, `sip:` URIs, letters. Only a valid
number of a type that can receive SMS is returned; everything else means
"no callback number", which is recorded but never texted.
"""

from __future__ import annotations

import re

import phonenumbers

TEXTABLE_TYPES = {
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
}

_SIP_USER = re.compile(r"^<?(?:(?:pj)?sips?|tel):([^@;>]+)", re.IGNORECASE)


def caller_digits(raw: str) -> str:
    """The dialable part of a caller ID: the user part of a SIP URI, or the text itself."""
    value = (raw or "").strip()
    match = _SIP_USER.match(value)
    if match:
        value = match.group(1)
    return value


def to_e164(raw: str, region: str) -> str | None:
    """Parse a caller ID as a phone number in `region`; None if it is not a valid number.

    Letters are refused rather than converted: a caller ID containing letters
    is a name or a placeholder, not a number.
    """
    value = caller_digits(raw)
    if not value or re.search(r"[A-Za-z]", value):
        return None
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def is_textable(e164: str, allow_landlines: bool = False) -> bool:
    """True for numbers that can receive SMS (mobile, or a type that may be mobile).

    allow_landlines adds fixed lines, for gateways that read a text to a landline
    as a voice call; premium-rate, shared-cost, toll-free and the rest stay out.
    """
    kind = phonenumbers.number_type(phonenumbers.parse(e164, None))
    return kind in TEXTABLE_TYPES or (allow_landlines and kind == phonenumbers.PhoneNumberType.FIXED_LINE)


def national(e164: str) -> str:
    """A number as people in its own country write it, for templates and mail."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)


_PLACEHOLDER_NAMES = {"", "<unknown>", "unknown", "anonymous", "restricted", "private",
                      "unavailable", "withheld", "wireless caller"}


def caller_name(name: str, number: str) -> str:
    """A caller-ID name worth showing, or "" for placeholders and names that are just the number."""
    cleaned = " ".join((name or "").split())
    if cleaned.lower() in _PLACEHOLDER_NAMES or caller_digits(cleaned) == caller_digits(number):
        return ""
    return cleaned
