"""Hostile webhook requests, as property tests: a verdict (refused, unreadable, an event), never a crash.

Each gateway's reader gets requests that pass its signature or token check,
so the parsing behind the check is what is fuzzed, and requests that do not,
which must be refused. The server maps a refusal to 403 and the unreadable
kinds to 400 (sms_gateway/callbacks.py). `make fuzz` raises the budget.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, quote, urlencode

from hypothesis import HealthCheck, given, settings, strategies as st
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy
from pydantic import SecretStr

from sms_gateway.base import InboundText
from sms_gateway.http import HttpGateway
from sms_gateway.kannel import KannelGateway
from sms_gateway.settings import HttpSettings, KannelSettings, TelnyxSettings, TwilioSettings
from sms_gateway.telnyx import TelnyxGateway
from sms_gateway.twilio import TwilioGateway
from sms_gateway.callbacks import UNREADABLE, DeliveryStatus, Refused, CallbackRequest
from tests.budget import examples
from tests.providers.telnyx import FakeTelnyx
from tests.providers.twilio import FakeTwilio

TOKEN = "fuzz-webhook-token"
SID = "AC" + "3" * 32
TWILIO_TOKEN = "fuzz-twilio-token"
PUBLIC = "https://textback.example.com/hooks"
TELNYX = FakeTelnyx("KEY_fuzz")

text = st.text(max_size=60)
keys = st.sampled_from(["from", "to", "text", "body", "id", "charset", "coding", "type", "token",
                        "From", "To", "Body", "MessageSid", "AccountSid", "NumMedia", "data",
                        "MessageStatus", "ErrorCode", "x"])
fields = st.dictionaries(keys, text, max_size=8)
bodies = st.one_of(st.binary(max_size=300), fields.map(lambda f: urlencode(f).encode()),
                   st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), text),
                                lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(text, inner, max_size=4)),
                                max_leaves=20).map(lambda v: repr(v).encode()),
                   # What a JSON parser chokes on: deep nesting, huge numbers, NaN, a key twice.
                   st.integers(1, 5000).map(lambda n: b'{"data": ' + b"[" * n + b"]" * n + b"}"),
                   st.integers(1, 6000).map(lambda n: b'{"id": ' + b"9" * n + b"}"),
                   st.sampled_from([b'{"id": NaN}', b'{"id": 1e999}', b'{"to": "a", "to": "b"}',
                                    b'{"text": "\\udc00"}']))


def request(path: str, query: dict[str, str], body: bytes, headers: dict[str, str]) -> CallbackRequest:
    raw_query = "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
    return CallbackRequest("POST", path, MultiDictProxy(MultiDict(query)), raw_query,
                          CIMultiDictProxy(CIMultiDict(headers)), body, PUBLIC + path)


def gateways():
    http = HttpGateway(HttpSettings.model_validate({
        "url": "https://provider.example/send",
        "inbound": {"token": {"env": "UNUSED"}, "sender": "data.from", "recipient": "to",
                    "text": "body", "id": "id"},
        "status": {"id": "id", "status": "status"}}), {"inbound.token": SecretStr(TOKEN)})
    kannel = KannelGateway(KannelSettings(
        sendsms_url="http://127.0.0.1:1/cgi-bin/sendsms", username="u", password={"env": "UNUSED"},
        webhook_token={"env": "UNUSED"}, callback_base_url="http://127.0.0.1:1"),
        {"password": SecretStr("p"), "webhook_token": SecretStr(TOKEN)})
    twilio = TwilioGateway(TwilioSettings(account_sid=SID, auth_token={"env": "UNUSED"}),
                           {"auth_token": SecretStr(TWILIO_TOKEN)}, public_base_url=PUBLIC)
    telnyx = TelnyxGateway(TelnyxSettings(api_key={"env": "UNUSED"}, public_key=TELNYX.public_key),
                           {"api_key": SecretStr("k")}, public_base_url=PUBLIC)
    return [(g, e) for g in (http, kannel, twilio, telnyx) for e in g.callback_endpoints()]


ENDPOINTS = gateways()


def authentic(gateway, path: str, query: dict[str, str], body: bytes) -> tuple[dict, bytes, dict]:
    """Make the request pass the gateway's check, so what lies behind it is exercised."""
    if gateway.name in ("http", "kannel"):
        return {**query, "token": TOKEN}, body, {"Content-Type": "application/json"}
    if gateway.name == "twilio":
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        body = urlencode(form).encode()
        signature = FakeTwilio(SID, TWILIO_TOKEN).sign(PUBLIC + path, form)
        return query, body, {"X-Twilio-Signature": signature}
    stamp = str(int(time.time()))
    return query, body, {"telnyx-timestamp": stamp,
                         "telnyx-signature-ed25519": TELNYX.sign(stamp, body)}


def verdict(read, incoming: CallbackRequest) -> str:
    try:
        event = read(incoming)
    except Refused:
        return "refused"
    except UNREADABLE:
        return "unreadable"
    assert event is None or isinstance(event, (InboundText, DeliveryStatus))
    if isinstance(event, InboundText):
        assert isinstance(event.sender, str) and isinstance(event.body, str)
    return "event"


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(ENDPOINTS))), fields, bodies, st.booleans(),
       st.dictionaries(st.sampled_from(["Content-Type", "X-Twilio-Signature", "telnyx-timestamp",
                                        "telnyx-signature-ed25519", "Authorization"]), text))
def test_every_request_gets_a_verdict(index, query, body, signed, headers):
    gateway, endpoint = ENDPOINTS[index]
    path = f"/{gateway.name}{endpoint.path}"
    if signed:
        query, body, headers = authentic(gateway, path, query, body)
        verdict(endpoint.read, request(path, query, body, headers))
    else:
        headers.pop("Authorization", None)
        query.pop("token", None)
        assert verdict(endpoint.read, request(path, query, body, headers)) == "refused"
