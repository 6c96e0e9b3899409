"""How many SMS segments a text costs, and why.

A text travels as GSM-7 (160 septets alone, 153 per part of a long text)
unless one character is outside GSM-7, which switches the whole text to
UCS-2 (70 UTF-16 code units alone, 67 per part). Providers bill per segment,
so one curly quote can double the cost: `non_gsm` names the culprits.

A part never splits a two-septet extension character (ESC + char) or a
surrogate pair, so the count packs characters part by part rather than
dividing a total (the same rule as Twilio's segment calculator).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# 3GPP TS 23.038 default alphabet (the ESC code 0x1B is excluded: it is not text).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each costs ESC + the character, two septets. \f is form feed.
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

SINGLE = {"GSM-7": 160, "UCS-2": 70}
PER_PART = {"GSM-7": 153, "UCS-2": 67}


@dataclass(frozen=True)
class SegmentCount:
    encoding: Literal["GSM-7", "UCS-2"]
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int
    non_gsm: tuple[str, ...]  # characters that forced UCS-2, each once, in order of appearance


def count_segments(text: str) -> SegmentCount:
    """Encoding, length in units and number of segments of `text` (an empty text is one segment)."""
    non_gsm = tuple(dict.fromkeys(c for c in text if c not in GSM7_BASIC and c not in GSM7_EXTENSION))
    if non_gsm:
        encoding: Literal["GSM-7", "UCS-2"] = "UCS-2"
        costs = [len(c.encode("utf-16-be")) // 2 for c in text]
    else:
        encoding = "GSM-7"
        costs = [2 if c in GSM7_EXTENSION else 1 for c in text]
    units = sum(costs)
    if units <= SINGLE[encoding]:
        return SegmentCount(encoding, units, 1, non_gsm)
    return SegmentCount(encoding, units, _parts(costs, PER_PART[encoding]), non_gsm)


def _parts(costs: list[int], capacity: int) -> int:
    parts, used = 1, 0
    for cost in costs:
        if used + cost > capacity:
            parts, used = parts + 1, 0
        used += cost
    return parts
