"""Every address that enters textback, reduced to one canonical E.164 number, or None.

Addresses arrive in whatever shape a carrier, a provider, a phone or a person
gives them: a bare number with spaces and punctuation, a SIP name-addr with a
quoted display name (`"John Smith" <sip:+12125550123@carrier;user=phone>;tag=1`),
`sips:` and `tel:` URIs with parameters, a local number with a `;phone-context`,
or `anonymous`, `<unknown>`, an extension, letters. `parse_address` is the one
place that turns them into a number: texts, opt-outs, threads and contacts are
keyed by its result only, so one homeowner is one number whatever shape their
address takes. Only a valid number is returned; everything else means "no
callback number", which is recorded but never texted, suppressed or answered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

import phonenumbers

TEXTABLE_TYPES = {
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
}

_SCHEME = re.compile(r"^(pjsip|sips?|tel):", re.IGNORECASE)
# RFC 3966 visual separators, and the spaces people type.
_SEPARATORS = re.compile(r"[\s\-.()\[\]/]")
_LOCAL_DIGITS = re.compile(r"^\+?[0-9*#]+$")


@dataclass(frozen=True)
class Address:
    """What an address says: its number (canonical E.164) and the display name it carried."""

    number: str | None
    display_name: str = ""


def _split_name_addr(value: str) -> tuple[str, str]:
    """`"Name" <uri>;params` or `Name <uri>` -> (display name, uri); a bare addr-spec has no name."""
    if value.startswith('"'):
        name, index, escaped = [], 1, False
        while index < len(value):
            char = value[index]
            index += 1
            if escaped:
                name.append(char)
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                break
            else:
                name.append(char)
        rest = value[index:].strip()
        if rest.startswith("<") and ">" in rest:
            return "".join(name), rest[1:rest.index(">")]
        return "".join(name), rest
    if "<" in value and ">" in value[value.index("<"):]:
        start = value.index("<")
        return value[:start].strip(), value[start + 1:value.index(">", start)]
    return "", value


def _subscriber(uri: str) -> tuple[str, dict[str, str]]:
    """The telephone-subscriber part of a URI or bare address, and its parameters."""
    uri = uri.split("?", 1)[0]  # URI headers never carry the number
    scheme = _SCHEME.match(uri)
    if scheme:
        uri = uri[scheme.end():]
        if scheme.group(1).lower() != "tel":
            # sip:user[:password]@host;uri-params: the number is the user part.
            uri = uri.rsplit("@", 1)[0].split(":", 1)[0]
    elif "@" in uri:
        uri = uri.rsplit("@", 1)[0]
    user, *params = unquote(uri).split(";")
    named = {}
    for param in params:
        key, _, val = param.partition("=")
        named[key.strip().lower()] = val.strip()
    return user.strip(), named


def parse_address(raw: str, region: str | None) -> Address:
    """Reduce any shape of address to its E.164 number (None if it holds no valid number).

    `region` is the country a national number is read in: the dialled business
    number's. Letters are refused rather than converted: a caller ID with
    letters is a name or a placeholder, not a number.
    """
    value = " ".join((raw or "").split())
    display_name, uri = _split_name_addr(value)
    subscriber, params = _subscriber(uri.strip())
    digits = _SEPARATORS.sub("", subscriber)
    context = _SEPARATORS.sub("", params.get("phone-context", ""))
    if not digits.startswith("+") and context.startswith("+") and _LOCAL_DIGITS.match(context):
        digits = context + digits  # RFC 3966: a local number inside a global prefix
    return Address(_e164(digits, region), display_name.strip())


def _e164(digits: str, region: str | None) -> str | None:
    if not digits or not _LOCAL_DIGITS.match(digits):
        return None
    candidates = [digits]
    if not digits.startswith("+") and len(digits) > 10:
        candidates.append("+" + digits)  # international without its "+", as some gateways send
    for candidate in candidates:
        try:
            parsed = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return None


def to_e164(raw: str, region: str | None) -> str | None:
    """The canonical E.164 number of an address in any shape, or None (see `parse_address`)."""
    return parse_address(raw, region).number


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
    digits = _digits_of(cleaned)
    if cleaned.lower() in _PLACEHOLDER_NAMES or (digits and digits == _digits_of(number)):
        return ""
    return cleaned


def _digits_of(text: str) -> str:
    return re.sub(r"[^0-9]", "", _subscriber(_split_name_addr(text)[1])[0])
