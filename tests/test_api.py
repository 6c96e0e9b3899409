"""The JSON API on the daemon's web listener, every answer validated against its OpenAPI document.

A real daemon (in process, no AMI) serves /api/v1; tokens are made with the
real `textback token` commands; requests go over loopback with aiohttp.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st
from openapi_spec_validator import validate as validate_openapi

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, base_config, write_config
from lab.harness import SMTP_SINK_PORT, eventually, in_process
from sms_gateway.base import InboundText
from textback.api.shapes import BadRequest, parse_body
from textback.cli import main
from textback.config import load
from textback.daemon import Daemon
from textback.store import CallRow, PlannedText
from textback.core.tracker import CallFinished
from tests.budget import examples

PORT = 18188
BASE = f"http://127.0.0.1:{PORT}/api/v1"
OWNERS = [{"id": "dana", "name": "Dana Reyes", "email": "dana@example.com"},
          {"id": "sam", "name": "Sam Ortiz", "email": "sam@example.com"}]


@pytest.fixture
def config_path(tmp_path) -> Path:
    config = base_config(tmp_path, owners=OWNERS, **{
        "smtp.port": SMTP_SINK_PORT, "text.delay_seconds": 0,
        "web": {"port": PORT, "public_url": "https://textback.acme.example"},
        "api": {"requests_per_minute": 600, "burst": 200, "max_body_bytes": 16384}})
    return write_config(tmp_path, config)


def cli(config_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "-c", str(config_path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception))
    return result.exit_code, result.stdout


@pytest.fixture
def tokens(config_path) -> dict[str, str]:
    """A write token, a read token and a revoked one, made and revoked with the CLI."""
    made = {}
    for name, scope in (("crm", "write"), ("dash", "read"), ("old", "write")):
        code, out = cli(config_path, "token", "create", "--name", name, "--scope", scope)
        assert code == 0
        made[name] = out.splitlines()[0]
    assert cli(config_path, "token", "revoke", "old") == (0, "Revoked 1 token(s) named 'old'.\n")
    code, listing = cli(config_path, "token", "list")
    assert code == 0 and "old" in listing and "revoked" in listing
    assert all(value not in listing for value in made.values())  # only a prefix is shown
    return made


class Client:
    """Requests to the API; each answer is checked against the document's schema for its
    path, method and status (an undocumented status fails the test)."""

    def __init__(self, session: aiohttp.ClientSession, document: dict[str, Any]):
        self.session = session
        self.document = document
        self.checked = 0

    async def __call__(self, method: str, template: str, token: str | None = None,
                       json: Any = None, data: bytes | None = None, headers: dict | None = None,
                       **path: Any) -> tuple[int, Any, Any]:
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        url = BASE + template.format(**path)
        async with self.session.request(method, url, json=json, data=data, headers=headers) as r:
            body = await r.json()
            status, answer_headers = r.status, r.headers
        operation = self.document["paths"][template.split("?")[0]][method.lower()]
        schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator({**schema, "components": self.document["components"]},
                                        format_checker=jsonschema.FormatChecker()).validate(body)
        self.checked += 1
        return status, body, answer_headers

    def document_of(self, template: str, method: str = "get") -> dict[str, Any]:
        """The operation the served document gives `method template`."""
        return self.document["paths"][template.split("?")[0]][method]

    def valid(self, schema: dict[str, Any], value: Any) -> bool:
        return jsonschema.Draft202012Validator(
            {**schema, "components": self.document["components"]}).is_valid(value)


@pytest.fixture
async def api(config_path, tokens, smtp_sink):
    # After `tokens`: a CLI command run while an in-process daemon is paused mid-transaction
    # (its loop does not turn during a synchronous fixture) would wait on its lock.
    daemon = Daemon(load(config_path))
    async with in_process(daemon), aiohttp.ClientSession() as session:
        async with session.get(f"{BASE}/openapi.json") as r:
            assert r.status == 200
            document = await r.json()
        validate_openapi(document)
        yield daemon, Client(session, document)


async def seed(daemon: Daemon) -> int:
    """A missed call from the homeowner, their reply; a second caller's missed call for sam."""
    store, now = daemon.store, time.time()
    for caller, owner, linkedid in ((HOMEOWNER, "dana", "c-1"), ("+12125550124", "sam", "c-2")):
        await store.record_call(CallRow(
            linkedid=linkedid, business_number=BUSINESS_NUMBER, caller_raw=caller, caller=caller,
            caller_name="", started_at=now - 60, answered_at=None, ended_at=now - 40,
            outcome="missed", reason="no_answer", decision="missed_call_text"),
            PlannedText(owner, "Sorry we missed you", now - 40), owner_id=owner)
    # Without AMI the gateway waits: the seed sends the texts. On PostgreSQL the daemon's outbox
    # is woken by the store's notification and may claim one first: that one waits for AMI.
    for item in await store.claim_all(await store.due(now)):
        await store.mark_all_sent([(item, f"sent-{item.id}")], "asterisk")
    await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER, "Kitchen remodel, Tue?", "m1"),
                              "log")
    # The owner's alert is mailed before the test goes on: a daemon stopped mid-SMTP waits on it.
    await eventually(lambda: store._all("SELECT 1 FROM alerts WHERE state = 'sent'"), 10,
                     "the owner's alert mailed")
    return (await store.conversation_for(HOMEOWNER, BUSINESS_NUMBER))["id"]


async def test_reads_filtered_like_the_inbox(api, tokens):
    daemon, call = api
    conversation = await seed(daemon)
    status, body, _ = await call("GET", "/conversations", tokens["dash"])
    assert status == 200 and len(body["conversations"]) == 2
    assert body["conversations"][0]["id"] == conversation and body["conversations"][0]["unanswered"]
    status, body, _ = await call("GET", "/conversations?owner=sam", tokens["dash"])
    assert [c["caller"] for c in body["conversations"]] == ["+12125550124"]
    status, body, _ = await call("GET", "/conversations?unanswered=true&limit=5", tokens["dash"])
    assert [c["id"] for c in body["conversations"]] == [conversation]
    status, body, _ = await call("GET", "/conversations/{id}", tokens["dash"], id=conversation)
    assert status == 200 and body["calls"][0]["call_id"] == "c-1"
    assert [m["body"] for m in body["messages"]] == ["Sorry we missed you", "Kitchen remodel, Tue?"]
    status, body, _ = await call("GET", "/calls?since=1h", tokens["dash"])
    assert status == 200 and {c["call_id"] for c in body["calls"]} == {"c-1", "c-2"}
    status, body, _ = await call("GET", "/calls?since=2030-01-01T00:00:00%2B00:00", tokens["dash"])
    assert body["calls"] == []
    status, body, _ = await call("GET", "/scorecard", tokens["dash"])
    assert status == 200 and body["numbers"][0]["missed_calls"] == 2
    # The scorecard's intake views: the kitchen reply, and the caller who said nothing.
    assert {g["group"]: (g["missed"], g["replies"]) for g in body["intake"]["project"]} == {
        "kitchen": (1, 1), "(not known)": (1, 0)}
    assert {g["group"]: g["missed"] for g in body["intake"]["area"]} == {"(not known)": 2}


@pytest.mark.parametrize("template, query, field", [
    ("/conversations", "?unanswered=maybe", "unanswered"),
    ("/conversations", "?limit=0", "limit"),
    ("/conversations", "?limit=five", "limit"),
    ("/conversations", "?colour=red", "colour"),
    ("/conversations", "?owner=", "owner"),
    ("/calls", "?since=yesterday", "since"),
    ("/calls", "?since=2026-01-01T00:00:00", "since"),
    ("/calls", "?since=", "since"),
    ("/scorecard", "?month=2026-13", "month"),
    ("/scorecard", "?month=1", "month"),
])
async def test_a_query_outside_its_schema_is_400_naming_the_parameter(api, tokens, template,
                                                                       query, field):
    _, call = api
    status, body, _ = await call("GET", template + query, tokens["dash"])
    assert status == 400 and body["error"]["field"] == field
    parameters = {p["name"]: p for p in call.document_of(template)["parameters"]}
    if field in parameters:  # the document calls the value invalid too
        [(_, value)] = [pair.split("=") for pair in query[1:].split("&") if pair.startswith(field)]
        assert not call.valid(parameters[field]["schema"], value)


@pytest.mark.parametrize("template, query, field, code", [
    ("/conversations", "?owner=nobody", "owner", "unknown_owner"),
    ("/calls", "?since=2026-02-30T10:00:00Z", "since", "no_such_time"),
    ("/scorecard", "?from=2026-11-01", "to", "incomplete_period"),
    ("/scorecard", "?from=2026-11-02&to=2026-11-01", "to", "empty_period"),
    ("/scorecard", "?from=2026-02-01&to=2026-02-30", "to", "no_such_time"),
    ("/scorecard", "?month=2026-11&from=2026-11-01&to=2026-11-02", "month", "two_periods"),
])
async def test_a_query_its_schema_allows_but_a_documented_check_refuses_is_422(
        api, tokens, template, query, field, code):
    _, call = api
    status, body, _ = await call("GET", template + query, tokens["dash"])
    assert status == 422 and (body["error"]["field"], body["error"]["code"]) == (field, code)
    operation = call.document_of(template)["responses"]["422"]["description"]
    assert f"({code})" in operation  # each check is listed in the document


async def test_tokens_missing_unknown_revoked_or_read_only(api, tokens):
    daemon, call = api
    conversation = await seed(daemon)
    for token in (None, "tbk_not-a-token", tokens["old"], "Basic x"):
        status, body, headers = await call("GET", "/conversations", token)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    status, body, _ = await call("POST", "/conversations/{id}/outcome", tokens["dash"],
                                 json={"stage": "booked"}, id=conversation)
    assert status == 403 and body["error"]["code"] == "forbidden"
    assert (await daemon.store.report_rows(0, time.time() + 1))["outcomes"] == []


@pytest.mark.parametrize("path, body, field", [
    ("outcome", {"stage": "sold"}, "stage"),
    ("outcome", {"stage": "lost", "value": 100}, "value"),
    ("outcome", {"stage": "won", "value": -5}, "value"),
    ("outcome", {"stage": "won", "value": "82000"}, "value"),
    ("outcome", {"stage": "won", "amount": 5}, "amount"),
    ("outcome", {}, "stage"),
    ("assignment", {"owner": 7}, "owner"),
    ("assignment", {"owner": ""}, "owner"),
    ("reply", {"text": ""}, "text"),
    ("reply", {"text": "   "}, "text"),
    ("reply", {"text": "x" * 1601}, "text"),
    ("contact", {}, "name"),
    ("contact", {"name": None, "class": None}, "name"),
    ("contact", {"class": "friend"}, "class"),
    ("contact", [1], "(body)"),
])
async def test_a_write_outside_its_schema_is_400_naming_the_field(api, tokens, path, body, field):
    daemon, call = api
    conversation = await seed(daemon)
    status, answer, _ = await call("POST", f"/conversations/{{id}}/{path}", tokens["crm"],
                                   json=body, id=conversation)
    assert status == 400 and answer["error"]["field"] == field, answer
    request_schema = call.document_of(f"/conversations/{{id}}/{path}", "post")[
        "requestBody"]["content"]["application/json"]["schema"]
    assert not call.valid(request_schema, body), "the document must call it invalid too"


@pytest.mark.parametrize("path, body, field, code", [
    ("assignment", {"owner": "nobody"}, "owner", "unknown_owner"),
    ("reply", {"text": "x" * 600}, "text", "too_long"),
])
async def test_a_write_its_schema_allows_but_a_documented_check_refuses_is_422(
        api, tokens, path, body, field, code):
    daemon, call = api
    conversation = await seed(daemon)
    status, answer, _ = await call("POST", f"/conversations/{{id}}/{path}", tokens["crm"],
                                   json=body, id=conversation)
    assert status == 422 and (answer["error"]["field"], answer["error"]["code"]) == (field, code)
    operation = call.document_of(f"/conversations/{{id}}/{path}", "post")
    assert call.valid(operation["requestBody"]["content"]["application/json"]["schema"], body)
    assert f"({code})" in operation["responses"]["422"]["description"]


@pytest.mark.parametrize("path, body", [
    ("assignment", {"owner": "sam"}),
    ("contact", {"name": None, "class": "client"}),
    ("contact", {"name": "Pat O'Brien & Sons", "class": None}),
    ("outcome", {"stage": "lost", "value": None}),
    ("outcome", {"stage": "won", "value": 0.5, "external_ref": None}),
    ("reply", {"text": "\u00a0Ok"}),
])
async def test_what_the_document_calls_valid_is_accepted(api, tokens, path, body):
    daemon, call = api
    conversation = await seed(daemon)
    status, answer, _ = await call("POST", f"/conversations/{{id}}/{path}", tokens["crm"],
                                   json=body, id=conversation)
    assert status in (200, 202), answer


async def test_not_json_too_large_and_unknown_conversation(api, tokens):
    daemon, call = api
    conversation = await seed(daemon)
    status, body, _ = await call("POST", "/conversations/{id}/outcome", tokens["crm"],
                                 data=b"stage=won", id=conversation)
    assert status == 400 and body["error"]["field"] == "(body)"
    status, body, _ = await call("POST", "/conversations/{id}/reply", tokens["crm"],
                                 data=b'{"text": "' + b"x" * 17000 + b'"}', id=conversation)
    assert status == 413 and body["error"]["code"] == "too_large"
    for missing in (999, "abc"):
        status, body, _ = await call("POST", "/conversations/{id}/outcome", tokens["crm"],
                                     json={"stage": "booked"}, id=missing)
        assert status == 404
    status, body, _ = await call("GET", "/conversations/{id}", tokens["crm"], id=999)
    assert status == 404


PATHOLOGICAL = {
    "nested 1,000 deep": b'{"stage": ' + b"[" * 1000 + b"]" * 1000 + b"}",
    "nested objects": b'{"a": ' * 500 + b"1" + b"}" * 500,
    "an integer of 5,000 digits": b'{"stage": "won", "value": ' + b"9" * 5000 + b"}",
    "a float beyond range": b'{"stage": "won", "value": 1e999}',
    "NaN": b'{"stage": "won", "value": NaN}',
    "a key twice": b'{"stage": "lost", "stage": "won"}',
    "a lone surrogate": b'{"stage": "won", "external_ref": "\\ud800"}',
    "not UTF-8": b'{"stage": "\xff"}',
}


@pytest.mark.parametrize("name", PATHOLOGICAL)
async def test_json_a_parser_can_choke_on_is_400_and_changes_nothing(api, tokens, name):
    daemon, call = api
    conversation = await seed(daemon)
    status, body, _ = await call("POST", "/conversations/{id}/outcome", tokens["crm"],
                                 data=PATHOLOGICAL[name], id=conversation)
    assert status == 400 and body["error"]["field"] == "(body)", body
    assert (await daemon.store.report_rows(0, time.time() + 1))["outcomes"] == []


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
              st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=10), inner, max_size=3)),
    max_leaves=12)


def _nest(depth: int, opener: str) -> bytes:
    closer = {"[": "]", "{\"k\": ": "}"}[opener]
    return (opener * depth + "0" + closer * depth).encode()


pathological = st.one_of(
    st.builds(_nest, st.integers(1, 3000), st.sampled_from(["[", '{"k": '])),
    st.integers(30, 6000).map(lambda n: b'{"text": ' + b"7" * n + b"}"),
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"]).map(
        lambda n: b'{"value": ' + n + b', "stage": "won"}'),
    st.text(max_size=5).map(lambda k: json.dumps({"stage": "won", k: 1})[:-1].encode()
                            + b", " + json.dumps(k).encode() + b": 2}"),
    st.integers(0xD800, 0xDFFF).map(lambda u: f'{{"text": "\\u{u:04x}"}}'.encode()),
    json_values.map(lambda v: json.dumps({"text": v}).encode()),
    st.binary(max_size=200),
)


@settings(max_examples=examples(400), deadline=None)
@given(st.sampled_from(["ReplyRequest", "AssignmentRequest", "OutcomeRequest", "ContactRequest"]),
       pathological)
def test_every_body_is_a_value_or_a_400_naming_a_field(schema, raw):
    """Whatever the bytes, the API's body reader answers a checked value or a BadRequest: never
    RecursionError, a number that takes seconds to read, or a string that cannot be stored."""
    try:
        value = parse_body(schema, raw)
    except BadRequest as exc:
        assert exc.status == 400 and exc.field and exc.message
        return
    assert isinstance(value, dict)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # storable as it is


async def test_writes_reply_assign_outcome_and_contact(api, tokens):
    daemon, call = api
    conversation = await seed(daemon)
    status, body, _ = await call("POST", "/conversations/{id}/reply", tokens["crm"],
                                 json={"text": "We can come Tuesday at 10."}, id=conversation)
    assert status == 202 and body["status"] == "queued"

    async def sent():
        messages = (await daemon.store.conversation_history(conversation))["messages"]
        return [m for m in messages if m["kind"] == "owner" and m["status"] == "sent"]
    await eventually(sent, 10, "the reply sent by the outbox")
    status, body, _ = await call("POST", "/conversations/{id}/assignment", tokens["crm"],
                                 json={"owner": "sam"}, id=conversation)
    assert status == 200 and body["conversation"]["owner_id"] == "sam"
    status, body, _ = await call("POST", "/conversations/{id}/contact", tokens["crm"],
                                 json={"name": "Jordan Lee", "class": "client"}, id=conversation)
    assert body["conversation"]["contact_name"] == "Jordan Lee"
    status, body, _ = await call("POST", "/conversations/{id}/outcome", tokens["crm"],
                                 json={"stage": "won", "value": 82000, "external_ref": "deal-991"},
                                 id=conversation)
    assert status == 200 and body["conversation"]["external_ref"] == "deal-991"
    assert body["conversation"]["status"] == "closed"
    status, body, _ = await call("GET", "/scorecard", tokens["dash"])
    card = body["numbers"][0]
    assert (card["won"], card["won_value"]) == (1, 82000.0)
    outcomes = (await daemon.store.report_rows(0, time.time() + 1))["outcomes"]
    assert [(o["stage"], o["value"]) for o in outcomes] == [("won", 82000.0)]

    await daemon.store.suppress(HOMEOWNER, "sms")
    status, body, _ = await call("POST", "/conversations/{id}/reply", tokens["crm"],
                                 json={"text": "Still there?"}, id=conversation)
    assert status == 409 and body["error"]["code"] == "opted_out"


async def test_a_vendor_classed_through_the_api_gets_no_automatic_text(api, tokens):
    daemon, call = api
    conversation = await seed(daemon)
    status, _, _ = await call("POST", "/conversations/{id}/contact", tokens["crm"],
                              json={"class": "vendor"}, id=conversation)
    assert status == 200
    now = time.time()
    decisions = [await daemon.finish_call(CallFinished(
        call_id=f"c-later-{caller}", did=BUSINESS_NUMBER, caller_id=caller, caller_name="",
        trunk_channel="PJSIP/carrier-1", started_at=now - 30, ended_at=now - 1, outcome="missed",
        reason="no_answer")) for caller in (HOMEOWNER, "+12125550124")]
    assert (decisions[0].send, decisions[0].reason) == (False, "caller_is_vendor")
    assert decisions[1].send  # the caller nobody classed


async def test_a_write_with_a_stale_if_match_is_refused_412_and_not_applied(api, tokens):
    """A client that read the conversation (its ETag) cannot undo a change made since."""
    daemon, call = api
    conversation = await seed(daemon)
    operation = call.document["paths"]["/conversations/{id}/assignment"]["post"]
    assert "If-Match" in [p["name"] for p in operation["parameters"]] and "412" in operation["responses"]
    status, _, headers = await call("GET", "/conversations/{id}", tokens["dash"], id=conversation)
    read = headers["ETag"]
    assert status == 200 and read.startswith('"')
    # Someone else gives it to Sam in the inbox meanwhile.
    await daemon.store.assign(conversation, "sam", "assigned by sam (web)")
    for path, body in (("assignment", {"owner": "dana"}), ("outcome", {"stage": "lost"}),
                       ("contact", {"name": "Old Name"}), ("reply", {"text": "Hi"})):
        status, answer, headers = await call("POST", f"/conversations/{{id}}/{path}", tokens["crm"],
                                             headers={"If-Match": read}, json=body, id=conversation)
        assert status == 412 and answer["error"]["code"] == "precondition_failed", (path, answer)
        assert answer["error"]["message"].startswith("this changed while you were looking: ")
        assert "owner sam" in answer["error"]["message"] and headers["ETag"] != read
    now = await daemon.store.conversation(conversation)
    assert now["owner_id"] == "sam" and now["contact_name"] == "" and now["status"] == "open"
    assert await daemon.store.latest_outcome(conversation) == ""
    assert [m for m in (await daemon.store.thread(conversation))["messages"] if m["kind"] == "owner"] == []
    # With the current ETag (or "*", or none) the write applies, and answers the next ETag.
    current = headers["ETag"]
    status, answer, headers = await call("POST", "/conversations/{id}/assignment", tokens["crm"],
                                         headers={"If-Match": current}, json={"owner": "dana"},
                                         id=conversation)
    assert status == 200 and answer["conversation"]["owner_id"] == "dana" and headers["ETag"] != current
    status, _, _ = await call("POST", "/conversations/{id}/outcome", tokens["crm"],
                              headers={"If-Match": "*"}, json={"stage": "booked"}, id=conversation)
    assert status == 200
    # A weak tag never matches (RFC 9110: If-Match compares strongly).
    status, _, headers = await call("GET", "/conversations/{id}", tokens["dash"], id=conversation)
    status, _, _ = await call("POST", "/conversations/{id}/outcome", tokens["crm"],
                              headers={"If-Match": "W/" + headers["ETag"]}, json={"stage": "lost"},
                              id=conversation)
    assert status == 412


async def test_a_write_repeated_with_its_idempotency_key_acts_once(api, tokens):
    daemon, call = api
    conversation = await seed(daemon)
    key = {"Idempotency-Key": "deal-991-won"}
    first = await call("POST", "/conversations/{id}/outcome", tokens["crm"], headers=key,
                       json={"stage": "won", "value": 82000}, id=conversation)
    again = await call("POST", "/conversations/{id}/outcome", tokens["crm"], headers=key,
                       json={"stage": "won", "value": 82000}, id=conversation)
    assert first[0] == again[0] == 200 and first[1] == again[1]
    assert again[2]["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first[2]
    other = await call("POST", "/conversations/{id}/outcome", tokens["crm"], headers=key,
                       json={"stage": "lost"}, id=conversation)
    assert other[0] == 422 and other[1]["error"]["code"] == "idempotency_key_reused"
    together = await asyncio.gather(*(call(
        "POST", "/conversations/{id}/reply", tokens["crm"], headers={"Idempotency-Key": "r1"},
        json={"text": "On our way."}, id=conversation) for _ in range(5)))
    assert {status for status, _, _ in together} == {202}
    assert len({body["outbox_id"] for _, body, _ in together}) == 1
    outcomes = (await daemon.store.report_rows(0, time.time() + 1))["outcomes"]
    assert len(outcomes) == 1


@pytest.fixture
def limited(tmp_path) -> tuple[Path, list[str]]:
    """A config allowing a burst of 3 requests per token, and two read tokens."""
    config = base_config(tmp_path, **{
        "smtp.port": SMTP_SINK_PORT, "web": {"port": PORT, "public_url": "https://t.example"},
        "api": {"requests_per_minute": 60, "burst": 3}})
    path = write_config(tmp_path, config)
    return path, [cli(path, "token", "create", "--name", name, "--scope", "read")[1].splitlines()[0]
                  for name in ("one", "two")]


async def test_each_token_is_rate_limited_on_its_own(limited, smtp_sink):
    path, made = limited
    daemon = Daemon(load(path))
    async with in_process(daemon), aiohttp.ClientSession() as session:
        async with session.get(f"{BASE}/openapi.json") as r:
            call = Client(session, await r.json())
        statuses = [(await call("GET", "/calls", made[0]))[0] for _ in range(4)]
        limited_answer = await call("GET", "/calls", made[0])
        other = await call("GET", "/calls", made[1])
    assert statuses == [200, 200, 200, 429] and limited_answer[0] == 429
    assert limited_answer[2]["Retry-After"] == "1"
    assert limited_answer[1]["error"]["code"] == "rate_limited"
    assert other[0] == 200


async def test_an_opt_out_through_the_api_stops_every_text_and_names_its_token(api, tokens):
    daemon, call = api
    conversation = await seed(daemon)
    status, _, _ = await call("POST", "/conversations/{id}/reply", tokens["crm"],
                              json={"text": "Tuesday at 10?"}, id=conversation)
    assert status == 202  # queued before the opt-out, and kept in the ledger as the API's
    status, body, _ = await call("POST", "/optouts", tokens["crm"], json={"number": "(212) 555-0123"})
    assert (status, body) == (200, {"number": HOMEOWNER, "opted_out": True, "already": False})
    status, body, _ = await call("POST", "/optouts", tokens["crm"], json={"number": HOMEOWNER})
    assert (status, body["already"]) == (200, True)
    assert (await call("POST", "/optouts", tokens["dash"], json={"number": HOMEOWNER}))[0] == 403
    status, body, _ = await call("POST", "/optouts", tokens["crm"], json={"number": "anonymous"})
    assert (status, body["error"]["field"], body["error"]["code"]) == (422, "number", "not_a_number")
    status, body, _ = await call("POST", "/optouts", tokens["crm"], json={"number": ""})
    assert (status, body["error"]["field"]) == (400, "number")  # the schema's minLength
    status, body, _ = await call("POST", "/conversations/{id}/reply", tokens["crm"],
                                 json={"text": "Still there?"}, id=conversation)
    assert status == 409
    record = await daemon.store.consent_record(HOMEOWNER)
    assert [(r["fact"], r["channel"], r["body"]) for r in record if r["channel"] == "api:crm"] \
        == [("text_queued", "api:crm", "Tuesday at 10?"), ("opted_out", "api:crm", ""),
            ("text_refused", "api:crm", "Still there?")]
