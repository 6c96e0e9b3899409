"""Every shape an address arrives in reduces to one canonical number, or to none."""

from __future__ import annotations

import time

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.configs import BUSINESS_NUMBER
from sms_gateway.base import InboundText
from textback.core.numbers import Address, parse_address, to_e164
from textback.store import NotANumber
from textback.core.tracker import CallFinished
from tests.budget import examples

HOMEOWNER = "+12125550123"


@pytest.mark.parametrize("raw, expected", [
    ('"John Smith" <sip:+12125550123@carrier.example>', Address(HOMEOWNER, "John Smith")),
    ('"John Smith" <sip:+12125550123@carrier.example>;tag=as5e1', Address(HOMEOWNER, "John Smith")),
    ("John Smith <sip:+12125550123@carrier.example>", Address(HOMEOWNER, "John Smith")),
    ('"Smith, \\"Johnny\\" <J>" <sips:+12125550123@carrier.example>',
     Address(HOMEOWNER, 'Smith, "Johnny" <J>')),
    ("<sip:2125550123@carrier.example;user=phone>", Address(HOMEOWNER)),
    ("sip:+1-212-555-0123@carrier.example", Address(HOMEOWNER)),
    ("sip:%2B12125550123@carrier.example", Address(HOMEOWNER)),
    ("sip:+12125550123:secret@carrier.example:5060;transport=udp", Address(HOMEOWNER)),
    ("SIP:+12125550123@CARRIER.EXAMPLE", Address(HOMEOWNER)),
    ("pjsip:+12125550123@trunk", Address(HOMEOWNER)),
    ("tel:+1-212-555-0123", Address(HOMEOWNER)),
    ("tel:+1.212.555.0123;ext=22", Address(HOMEOWNER)),
    ("tel:555-0123;phone-context=+1-212", Address(HOMEOWNER)),
    ("<sip:5550123;phone-context=+1212@carrier.example;user=phone>", Address(HOMEOWNER)),
    ("+1 (212) 555-0123", Address(HOMEOWNER)),
    (" 212.555.0123 ", Address(HOMEOWNER)),
    ("12125550123", Address(HOMEOWNER)),
    ("442079460018", Address("+442079460018")),
    ('"Anonymous" <sip:anonymous@anonymous.invalid>', Address(None, "Anonymous")),
    ("<unknown>", Address(None)),
    ("tel:555-0123;phone-context=example.com", Address(None)),
    ("sip:carrier.example", Address(None)),
    ("sip:1-800-FLOWERS@carrier.example", Address(None)),
    ("", Address(None)),
])
def test_address_shapes(raw, expected):
    assert parse_address(raw, "US") == expected


# Valid numbers of several countries and types, from phonenumbers' own metadata.
NUMBERS = sorted({
    phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    for region in ("US", "CA", "GB", "DE", "FR", "AU", "MX", "IN", "BR", "JP")
    for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
    if (example := phonenumbers.example_number_for_type(region, kind)) is not None
})
DISPLAY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30)


@st.composite
def dressed(draw) -> tuple[str, str, str]:
    """(number, the From shape that carries it, its display name)."""
    number = draw(st.sampled_from(NUMBERS))
    separator = draw(st.sampled_from(["", " ", "-", ".", "(", ")"]))
    spelled = "+" + separator.join(number[1:]) if draw(st.booleans()) else number
    scheme = draw(st.sampled_from(["sip", "sips", "SIP", "tel"]))
    params = "".join(draw(st.lists(st.sampled_from([";user=phone", ";transport=tcp", ";lr"]), max_size=2)))
    if scheme == "tel":
        uri = f"tel:{spelled}{params}"
    else:
        spelled = spelled.replace("(", "%28").replace(")", "%29").replace(" ", "%20")
        uri = f"{scheme}:{spelled}@{draw(st.sampled_from(['carrier.example', '198.51.100.7:5060']))}{params}"
    form = draw(st.sampled_from(["bare", "angle", "quoted", "token"]))
    name = ""
    if form == "bare":
        shape = uri
    elif form == "angle":
        shape = f"<{uri}>"
    elif form == "quoted":
        name = " ".join(draw(DISPLAY_TEXT).split())
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        shape = f'"{escaped}" <{uri}>'
    else:
        name = draw(st.from_regex(r"[A-Za-z][A-Za-z .'-]{0,20}[A-Za-z]", fullmatch=True))
        name = " ".join(name.split())
        shape = f"{name} <{uri}>"
    if form != "bare" and draw(st.booleans()):
        shape += ";tag=" + draw(st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True))
    return number, shape, name


@settings(max_examples=examples(400), deadline=None)
@given(dressed(), st.sampled_from(["US", "GB", "DE"]))
def test_every_from_shape_reduces_to_its_number(case, region):
    number, shape, name = case
    assert parse_address(shape, region) == Address(number, name)


@settings(max_examples=examples(400), deadline=None)
@given(st.text(max_size=80), st.sampled_from(["US", "GB", None]))
def test_any_text_gives_a_canonical_number_or_none(raw, region):
    number = parse_address(raw, region).number
    assert number is None or (number.startswith("+") and to_e164(number, None) == number)


def missed_from(caller_id: str, linkedid: str) -> CallFinished:
    now = time.time()
    return CallFinished(linkedid, BUSINESS_NUMBER, caller_id, "", "PJSIP/carrier-1", now - 20, now,
                        "missed", "no_answer")


async def test_a_stop_from_a_name_addr_suppresses_the_number_for_every_shape(offline_daemon):
    daemon = await offline_daemon(**{"text.dedupe_hours": 0})
    sender = '"John Smith" <sip:+12125550123@carrier.example>;tag=1'
    await daemon.receive_text(InboundText(sender, f"<sip:{BUSINESS_NUMBER}@pbx>", "STOP", "m1"),
                              "asterisk")
    assert await daemon.store.is_suppressed(HOMEOWNER)
    conversation = await daemon.store.conversation_for(HOMEOWNER)
    assert conversation["contact_name"] == "John Smith"
    [confirmation] = await daemon.store.due(time.time() + 1)
    assert confirmation.recipient == HOMEOWNER
    for linkedid, shape in enumerate(["2125550123", "+1 212 555 0123", "sip:12125550123@carrier"]):
        await daemon.finish_call(missed_from(shape, f"9.{linkedid}"))
        assert await daemon.store.call_decision(f"9.{linkedid}") == "opted_out"


async def test_a_sender_without_a_number_is_kept_once_and_never_answered(offline_daemon, caplog):
    daemon = await offline_daemon()
    for gateway_id in ("m1", "m2", "m2"):
        await daemon.receive_text(InboundText('"Promo" <sip:ACME-DEALS@carrier.example>',
                                              BUSINESS_NUMBER, "HELP", gateway_id), "asterisk")
    rows = await daemon.store._all("SELECT sender_raw, recipient, gateway_id FROM unroutable_texts")
    assert [tuple(r) for r in rows] == [('"Promo" <sip:ACME-DEALS@carrier.example>', BUSINESS_NUMBER, "m1"),
                                        ('"Promo" <sip:ACME-DEALS@carrier.example>', BUSINESS_NUMBER, "m2")]
    assert caplog.text.count("kept as unroutable") == 1
    assert await daemon.store.due(time.time() + 1) == []  # HELP from nobody gets no answer
    assert await daemon.store.suppressions() == []
    assert await daemon.store.inbox() == []


async def test_the_store_refuses_raw_addresses_for_texts_and_opt_outs(offline_daemon):
    daemon = await offline_daemon()
    raw = '"John Smith" <sip:+12125550123@carrier.example>'
    with pytest.raises(NotANumber):
        await daemon.store.suppress(raw, "sms")
    with pytest.raises(NotANumber):
        await daemon.store.queue_test_text(raw, BUSINESS_NUMBER, "dana", "hello")
    with pytest.raises(NotANumber):
        await daemon.store.record_inbound(raw, BUSINESS_NUMBER, "hi", "asterisk", None, "dana")
