"""Segment counting: GSM-7 160/153 with two-septet extensions, UCS-2 70/67 in UTF-16 units."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from textback.core.segments import GSM7_BASIC, GSM7_EXTENSION, SegmentCount, count_segments


@pytest.mark.parametrize("text, expected", [
    ("", SegmentCount("GSM-7", 0, 1, ())),
    ("a" * 160, SegmentCount("GSM-7", 160, 1, ())),
    ("a" * 161, SegmentCount("GSM-7", 161, 2, ())),
    ("a" * 306, SegmentCount("GSM-7", 306, 2, ())),
    ("a" * 307, SegmentCount("GSM-7", 307, 3, ())),
    ("Hi @Dana, £5 off! ¿Qué? Ü ä ö ñ ü à è ù ì ò Ç Ø å Δ _ $ ¥ §", SegmentCount("GSM-7", 59, 1, ())),
    ("\n\r", SegmentCount("GSM-7", 2, 1, ())),
])
def test_gsm7_lengths(text, expected):
    assert count_segments(text) == expected


def test_accented_letters_outside_gsm7_force_ucs2():
    assert count_segments("naïve").non_gsm == ("ï",)
    assert count_segments("Sí").non_gsm == ("í",)  # GSM-7 has ì, not í
    assert count_segments("ça").non_gsm == ("ç",)  # GSM-7 has only the capital Ç


@pytest.mark.parametrize("char", sorted(GSM7_EXTENSION))
def test_each_extension_character_costs_two_septets(char):
    assert count_segments(char) == SegmentCount("GSM-7", 2, 1, ())
    assert count_segments(char * 80).segments == 1
    assert count_segments(char * 81) == SegmentCount("GSM-7", 162, 2, ())


def test_an_extension_character_is_never_split_across_parts():
    # 152 + 2 would overflow the first part by one septet: the € moves to the second part.
    text = "a" * 152 + "€" + "a" * 152
    assert count_segments(text) == SegmentCount("GSM-7", 306, 3, ())


@pytest.mark.parametrize("text, units, segments", [
    ("’" * 70, 70, 1),
    ("’" * 71, 71, 2),
    ("’" * 134, 134, 2),
    ("’" * 135, 135, 3),
    ("😀" * 35, 70, 1),
    ("😀" * 36, 72, 2),
    ("€’", 2, 1),  # in UCS-2 the euro sign is one unit like any other BMP character
])
def test_ucs2_counts_utf16_code_units(text, units, segments):
    result = count_segments(text)
    assert (result.encoding, result.units, result.segments) == ("UCS-2", units, segments)


def test_a_surrogate_pair_is_never_split_across_parts():
    text = "’" * 66 + "😀" + "’" * 66
    assert count_segments(text) == SegmentCount("UCS-2", 134, 3, ("’", "😀"))


def test_the_characters_that_forced_ucs2_are_named_once_in_order():
    result = count_segments("It’s done — really… ’ok’ 😀\u00a0")
    assert result.non_gsm == ("’", "—", "…", "😀", "\u00a0")
    assert result.encoding == "UCS-2"


def test_the_escape_code_itself_is_not_gsm_text():
    assert count_segments("\x1b").encoding == "UCS-2"


@given(st.text(alphabet=st.sampled_from(sorted(GSM7_BASIC | GSM7_EXTENSION)), max_size=700))
def test_gsm7_text_stays_gsm7_and_fits_its_parts(text):
    result = count_segments(text)
    assert result.encoding == "GSM-7" and result.non_gsm == ()
    assert result.units == len(text) + sum(c in GSM7_EXTENSION for c in text)
    if result.units <= 160:
        assert result.segments == 1
    else:
        assert math.ceil(result.units / 153) <= result.segments <= math.ceil(result.units / 152)


@given(st.text(max_size=300))
def test_any_text_is_counted_consistently(text):
    result = count_segments(text)
    assert (result.encoding == "UCS-2") == bool(result.non_gsm)
    if result.encoding == "UCS-2":
        assert result.units == len(text.encode("utf-16-be")) // 2
        assert result.segments == 1 or result.segments >= math.ceil(result.units / 67)
        assert result.segments <= max(1, math.ceil(result.units / 66))
