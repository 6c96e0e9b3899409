"""Business numbers, contacts and allowed countries are looked up, not searched, on every call."""

from __future__ import annotations

import phonenumbers
import pytest
import yaml
from hypothesis import given, settings, strategies as st

from lab.configs import base_config
from textback.config import parse
from textback.core.numbers import to_e164
from textback.core.rules import match_number

US_NUMBERS = [f"+1212555{i:04d}" for i in range(100, 200)]
ABROAD = ["+442071838750", "+33142685300", "+16135550123"]  # London, Paris, Ottawa


def configured(tmp_path, numbers, contacts=()):
    raw = base_config(tmp_path, numbers=[{"number": n, "owner": "dana"} for n in numbers],
                      contacts=[{"number": n, "class": kind} for n, kind in contacts])
    return parse(yaml.safe_dump(raw), base=tmp_path).config


def searched(config, did):
    """What matching meant before the index: each number's region, in the order listed."""
    return next((n for n in config.numbers if to_e164(did, n.region) == n.number), None)


def formats(e164: str) -> list[str]:
    parsed = phonenumbers.parse(e164)
    return [e164, e164[1:], phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL),
            phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
            f"sip:{e164}@carrier.example", f"tel:{e164}", str(parsed.national_number)]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return configured(tmp_path_factory.mktemp("mixed"), US_NUMBERS[:20] + ABROAD)


@settings(max_examples=300, deadline=None)
@given(number=st.sampled_from(US_NUMBERS + ABROAD + ["+12125550999", "+442071838751"]),
       shape=st.integers(0, 6))
def test_the_index_matches_what_searching_every_number_matched(mixed, number, shape):
    did = formats(number)[shape]
    assert match_number(mixed, did) is searched(mixed, did)


def test_a_dids_lookup_costs_the_same_with_1_or_100_numbers(tmp_path, monkeypatch):
    parses = []
    real = phonenumbers.parse
    monkeypatch.setattr(phonenumbers, "parse", lambda *a, **k: parses.append(a) or real(*a, **k))
    counts = []
    for how_many in (1, 100):
        config = configured(tmp_path, US_NUMBERS[:how_many])
        parses.clear()
        assert match_number(config, "(212) 555-0100").number == "+12125550100"
        assert match_number(config, "2125559999") is None
        counts.append(len(parses))
    assert counts[0] == counts[1] == 2


def test_contacts_and_countries_are_looked_up(tmp_path):
    config = configured(tmp_path, ["+12125550100", "+442071838750"],
                        contacts=[("+12125550150", "client"), ("+12125550150", "vendor"),
                                  ("+12125550151", "staff")])
    assert config.contact("+12125550150").kind == "client"  # the first listed wins
    assert config.contact("+12125550151").kind == "staff"
    assert config.contact("+12125550152") is None and config.contact(None) is None
    assert config.allowed_countries() == {"US", "GB"}
    assert config.number("+442071838750").region == "GB"


def test_a_copy_with_other_contacts_is_indexed_again(tmp_path):
    config = configured(tmp_path, ["+12125550100"], contacts=[("+12125550150", "client")])
    copied = config.model_copy(update={"contacts": []})
    assert copied.contact("+12125550150") is None and config.contact("+12125550150") is not None


def test_the_remembered_dids_stay_bounded(tmp_path):
    from textback.config import MAX_REMEMBERED_DIDS

    config = configured(tmp_path, ["+12125550100"])
    for i in range(MAX_REMEMBERED_DIDS + 10):
        assert match_number(config, f"garbage-{i}") is None
    assert match_number(config, "2125550100").number == "+12125550100"
    assert len(config._dids) <= MAX_REMEMBERED_DIDS
