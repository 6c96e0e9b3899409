"""Caller IDs and templates: pure functions, odd inputs."""

from __future__ import annotations

import pytest

from textback.core.numbers import is_textable, national, to_e164
from textback.core.templates import TemplateError, check_template, render


@pytest.mark.parametrize("raw", [
    "anonymous", "Anonymous", "<unknown>", "Restricted", "Private", "Unavailable", "",
    "0", "s", "sip:anonymous@anonymous.invalid", "201", "1234", "1-800-FLOWERS",
    "+1555123456789012", "\r\nInjected: yes",
])
def test_no_callback_number(raw):
    assert to_e164(raw, "US") is None


@pytest.mark.parametrize("raw, expected", [
    ("+12125550123", "+12125550123"),
    ("2125550123", "+12125550123"),
    ("12125550123", "+12125550123"),
    ("(212) 555-0123", "+12125550123"),
    ("<sip:+12125550123@127.0.0.3>", "+12125550123"),
    ("sip:2125550123@carrier.example;user=phone", "+12125550123"),
    ("tel:+442079460018", "+442079460018"),
])
def test_numbers_normalise_to_e164(raw, expected):
    assert to_e164(raw, "US") == expected


def test_textable_types():
    assert is_textable("+12125550123")  # US numbers are fixed-line-or-mobile
    assert not is_textable("+18005550100")  # toll free
    assert is_textable("+447911123456")  # UK mobile
    assert not is_textable("+442079460018")  # UK landline
    assert is_textable("+442079460018", allow_landlines=True)  # for gateways with voice fallback
    assert not is_textable("+448000461234", allow_landlines=True)  # UK freephone stays out
    assert not is_textable("+18005550100", allow_landlines=True)


def test_national_format():
    assert national("+12125550100") == "(212) 555-0100"


def test_template_renders_and_flattens_control_characters():
    out = render("Hi {caller_number}, {business_name}", {
        "business_name": "Acme\r\nBcc: x", "caller_number": "(212) 555-0123"})
    assert out == "Hi (212) 555-0123, Acme Bcc: x"


@pytest.mark.parametrize("template", [
    "{unknown}", "{business_name!r}", "{business_name:>10}", "{0}", "{}", "{business_name",
    "{business_name[0]}",
])
def test_bad_templates_are_refused(template):
    with pytest.raises(TemplateError):
        check_template(template)


@pytest.mark.parametrize("name, example", [("caller_name", "there"), ("next_opening", "soon")])
def test_a_placeholder_that_can_be_empty_needs_a_fallback(name, example):
    with pytest.raises(TemplateError, match=rf"\{{{name}\}} can be empty .* \{{{name}\|{example}\}}"):
        check_template(f"{{business_name}}: hi {{{name}}}")
    check_template(f"{{business_name}}: hi {{{name}|{example}}}")
    assert render(f"Hi {{{name}|{example}}}!", {name: ""}) == f"Hi {example}!"


def test_literal_braces_are_allowed():
    check_template("{{not a placeholder}} {business_name}")
    assert render("{{x}} {business_name}", {"business_name": "A"}) == "{x} A"


@pytest.mark.parametrize("name, number, shown", [
    ("<unknown>", "+12125550123", ""),
    ("Anonymous", "anonymous", ""),
    ("+12125550123", "+12125550123", ""),
    ("  Jane   Doe ", "+12125550123", "Jane Doe"),
])
def test_caller_names_worth_showing(name, number, shown):
    from textback.core.numbers import caller_name
    assert caller_name(name, number) == shown
