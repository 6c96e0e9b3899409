"""Contract tests of the HubSpot and GoHighLevel adapters against local stand-ins of their APIs.

The vendors' services cannot run here, so each stand-in checks every request
strictly against the shapes their public documentation gives (method, path,
headers, a JSON Schema with no extra fields) and answers as documented,
including 429 with Retry-After and 401. The adapters run inside a real
daemon's delivery worker, fed by the events its store commits.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import jsonschema
import pytest
from aiohttp import web

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, base_config, write_config
from lab.harness import SMTP_SINK_PORT, eventually, in_process
from sms_gateway.base import InboundText
from tests.providers.common import serving
from textback.config import ConfigError, load
from textback.daemon import Daemon
from textback.store import CallRow

TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"
OWNERS = [{"id": "dana", "name": "Dana Reyes", "email": "dana@example.com"},
          {"id": "sam", "name": "Sam Ortiz", "email": "sam@example.com"}]
E164 = {"type": "string", "pattern": r"^\+[1-9][0-9]{6,14}$"}


# The custom properties / custom field ids a portal or sub-account made for the intake facts.
HUBSPOT_INTAKE = {"project": "textback_project", "budget": "textback_budget",
                  "timing": "textback_timing", "location": "textback_zip",
                  "service_area": "textback_service_area"}
GHL_INTAKE = {"project": "BcdrFyN3qY8Vn2Wm6ePp", "budget": "Hk2LrT9sVx4Qa7Zc1NmD",
              "location": "Qw8ErT5yUi2OpA6sDfGh"}


def strict(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties,
            "required": [k for k in properties if k not in optional]}


@dataclass
class Vendor:
    """A stand-in API: routes of (method, path pattern) -> (request schema, answer)."""

    headers: dict[str, str]
    routes: list[tuple[str, str, dict, Callable[[dict, re.Match], tuple[int, dict]]]]
    unauthorized: dict[str, Any]
    rate_limited: list[tuple[dict[str, str], dict]] = field(default_factory=list)
    requests: list[tuple[str, str, dict]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # requests that broke the contract

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response(self.unauthorized, status=401)
        for name, value in self.headers.items():
            if request.headers.get(name, "").split(";")[0] != value:
                self.refused.append(f"{request.method} {request.path}: header {name}")
                return web.json_response({"message": f"bad {name}"}, status=400)
        if self.rate_limited:
            headers, body = self.rate_limited.pop(0)
            return web.json_response(body, status=429, headers=headers)
        body = await request.json()
        for method, pattern, schema, answer in self.routes:
            match = re.fullmatch(pattern, request.path)
            if method == request.method and match:
                try:
                    jsonschema.Draft202012Validator(schema).validate(body)
                except jsonschema.ValidationError as exc:
                    self.refused.append(f"{request.method} {request.path}: {exc.message}")
                    return web.json_response({"message": exc.message}, status=400)
                self.requests.append((request.method, request.path, body))
                status, answer_body = answer(body, match)
                return web.json_response(answer_body, status=status)
        self.refused.append(f"{request.method} {request.path}: no such endpoint")
        return web.json_response({"message": "not found"}, status=404)


# -- HubSpot: developers.hubspot.com, CRM v3 contacts, search and notes -----------------------

def hubspot() -> Vendor:
    contacts: dict[str, dict] = {}

    def record(contact_id: str) -> dict:
        return {"id": contact_id, "properties": contacts[contact_id],
                "createdAt": "2026-12-01T10:00:00.000Z", "updatedAt": "2026-12-01T10:00:00.000Z",
                "archived": False}

    def search(body, _):
        phone = body["filterGroups"][0]["filters"][0]["value"]
        found = [record(i) for i, c in contacts.items() if c.get("phone") == phone]
        return 200, {"total": len(found), "results": found}

    def create(body, _):
        contact_id = str(51 + len(contacts))
        contacts[contact_id] = dict(body["properties"])
        return 201, record(contact_id)

    def update(body, match):
        contacts[match[1]].update(body["properties"])
        return 200, record(match[1])

    def note(body, _):
        return 201, {"id": "9001", "properties": body["properties"],
                     "createdAt": "2026-12-01T10:00:00.000Z", "archived": False}

    contact_properties = strict({"phone": E164, "firstname": {"type": "string"},
                                 "hubspot_owner_id": {"type": "string"}},
                                optional=("hubspot_owner_id",))  # email, firstname or lastname
    return Vendor(
        headers={"Content-Type": "application/json"},
        unauthorized={"status": "error", "message": "Authentication credentials not found.",
                      "category": "INVALID_AUTHENTICATION"},
        routes=[
            ("POST", "/crm/v3/objects/contacts/search", strict({
                "filterGroups": {"type": "array", "minItems": 1, "maxItems": 5, "items": strict({
                    "filters": {"type": "array", "minItems": 1, "items": strict({
                        "propertyName": {"const": "phone"}, "operator": {"const": "EQ"},
                        "value": E164})}})},
                "properties": {"type": "array", "items": {"type": "string"}},
                "limit": {"type": "integer", "minimum": 1, "maximum": 200}}), search),
            ("POST", "/crm/v3/objects/contacts", strict({"properties": contact_properties}), create),
            # The owner, or the custom properties a portal made for intake facts (text ones).
            ("PATCH", r"/crm/v3/objects/contacts/([0-9]+)", strict({"properties": {
                **strict({"hubspot_owner_id": {"type": "string"},
                          **{name: {"type": "string", "maxLength": 65536}
                             for name in HUBSPOT_INTAKE.values()}},
                         optional=("hubspot_owner_id", *HUBSPOT_INTAKE.values())),
                "minProperties": 1}}), update),
            ("POST", "/crm/v3/objects/notes", strict({
                "properties": strict({
                    "hs_timestamp": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"},
                    "hs_note_body": {"type": "string", "maxLength": 65536},
                    "hubspot_owner_id": {"type": "string"}}, optional=("hubspot_owner_id",)),
                "associations": {"type": "array", "items": strict({
                    "to": strict({"id": {"type": "string"}}),
                    "types": {"type": "array", "items": strict({
                        "associationCategory": {"const": "HUBSPOT_DEFINED"},
                        "associationTypeId": {"const": 202}})}})}}), note),
        ])


# -- GoHighLevel: marketplace.gohighlevel.com, Upsert Contact and Create Note ------------------

def gohighlevel() -> Vendor:
    contacts: dict[str, dict] = {}

    def upsert(body, _):
        existing = next((i for i, c in contacts.items() if c["phone"] == body["phone"]), None)
        contact_id = existing or f"ghl{len(contacts) + 1:04d}"
        contacts.setdefault(contact_id, {}).update(body)
        return 200, {"new": existing is None, "contact": {"id": contact_id, **contacts[contact_id]},
                     "traceId": "trace-1"}

    def note(body, match):
        return 201, {"note": {"id": "note-1", "body": body["body"], "userId": body.get("userId"),
                              "dateAdded": "2026-12-01T10:00:00.000Z", "contactId": match[1]}}

    return Vendor(
        headers={"Version": "2021-07-28", "Content-Type": "application/json",
                 "Accept": "application/json"},
        unauthorized={"statusCode": 401, "message": "Invalid JWT"},
        routes=[
            ("POST", "/contacts/upsert", strict({
                "locationId": {"const": "ve9EPM428h8vShlRW1KT"}, "phone": E164,
                "name": {"type": "string"}, "assignedTo": {"type": "string"},
                "source": {"type": "string"},
                # customFieldsInputStringSchema: the field's id (or key) and a string value.
                "customFields": {"type": "array", "items": strict({
                    "id": {"type": "string", "minLength": 1},
                    "field_value": {"type": "string"}})}},
                optional=("name", "assignedTo", "source", "customFields")), upsert),
            ("POST", r"/contacts/(ghl[0-9]{4})/notes", strict({
                "body": {"type": "string"}, "userId": {"type": "string"}}, optional=("userId",)),
             note),
        ])


OPTIONS = {"hubspot": {"owners": {"dana": "310001", "sam": "310002"}},
           "gohighlevel": {"location_id": "ve9EPM428h8vShlRW1KT",
                           "owners": {"dana": "usr-dana", "sam": "usr-sam"}}}
STAND_INS = {"hubspot": hubspot, "gohighlevel": gohighlevel}


def daemon_for(tmp_path, kind: str, url: str, token: str = TOKEN) -> Daemon:
    (tmp_path / "crm.token").write_text(token)
    config = base_config(tmp_path, owners=OWNERS, **{
        "smtp.port": SMTP_SINK_PORT,
        "crm": [{"name": kind, "type": kind, "token": {"file": "crm.token"},
                 "options": {**OPTIONS[kind], "base_url": url}}]})
    return Daemon(load(write_config(tmp_path, config)))


async def missed_call(daemon: Daemon) -> int:
    now = time.time()
    await daemon.store.record_call(CallRow(
        linkedid="c-1", business_number=BUSINESS_NUMBER, caller_raw=HOMEOWNER, caller=HOMEOWNER,
        caller_name="Jordan Lee", started_at=now - 60, answered_at=None, ended_at=now - 40,
        outcome="missed", reason="no_answer", decision="missed_call_text"), owner_id="dana")
    return (await daemon.store.conversation_for(HOMEOWNER, BUSINESS_NUMBER))["id"]


@pytest.mark.parametrize("kind", ["hubspot", "gohighlevel"])
async def test_a_lead_is_found_or_created_noted_with_its_thread_and_given_its_owner(
        tmp_path, smtp_sink, kind):
    vendor = STAND_INS[kind]()
    async with serving(vendor.app()) as url:
        daemon = daemon_for(tmp_path, kind, url)
        async with in_process(daemon):
            conversation = await missed_call(daemon)
            await eventually(lambda: _count(vendor, "notes", 1), 10, "the missed call's note")
            await daemon.receive_text(InboundText(HOMEOWNER, BUSINESS_NUMBER,
                                                  "Kitchen remodel, can you come Tue?", "m1"), "log")
            await eventually(lambda: _count(vendor, "notes", 2), 10, "the reply's note")
            await daemon.store.assign(conversation, "sam", "cli")
            await eventually(lambda: _count(vendor, "", 7 if kind == "hubspot" else 5), 10,
                             "the new owner recorded")
            log = await daemon.store.delivery_log()

    assert vendor.refused == []
    calls = [(method, path) for method, path, _ in vendor.requests]
    bodies = [body for _, _, body in vendor.requests]
    if kind == "hubspot":
        assert calls == [("POST", "/crm/v3/objects/contacts/search"), ("POST", "/crm/v3/objects/contacts"),
                         ("POST", "/crm/v3/objects/notes"), ("POST", "/crm/v3/objects/contacts/search"),
                         ("POST", "/crm/v3/objects/notes"), ("POST", "/crm/v3/objects/contacts/search"),
                         ("PATCH", "/crm/v3/objects/contacts/51")]
        assert bodies[1]["properties"] == {"phone": HOMEOWNER, "firstname": "Jordan Lee",
                                           "hubspot_owner_id": "310001"}
        notes = [bodies[2]["properties"]["hs_note_body"], bodies[4]["properties"]["hs_note_body"]]
        assert bodies[2]["associations"][0]["to"] == {"id": "51"}
        assert bodies[6] == {"properties": {"hubspot_owner_id": "310002"}}
    else:
        assert calls == [("POST", "/contacts/upsert"), ("POST", "/contacts/ghl0001/notes"),
                         ("POST", "/contacts/upsert"), ("POST", "/contacts/ghl0001/notes"),
                         ("POST", "/contacts/upsert")]
        assert bodies[0] == {"locationId": "ve9EPM428h8vShlRW1KT", "phone": HOMEOWNER,
                             "name": "Jordan Lee", "assignedTo": "usr-dana", "source": "textback"}
        notes = [bodies[1]["body"], bodies[3]["body"]]
        assert bodies[1]["userId"] == "usr-dana"
        assert bodies[4]["assignedTo"] == "usr-sam"
    assert notes[0].startswith(f"Missed call from {HOMEOWNER} to {BUSINESS_NUMBER}")
    assert "Caller: Kitchen remodel, can you come Tue?" in notes[1]
    assert {row["state"] for row in log} == {"delivered"}
    assert {row["endpoint"] for row in log} == {f"crm:{kind}"}


async def _count(vendor: Vendor, path_part: str, at_least: int) -> bool:
    return len([1 for _, path, _ in vendor.requests if path_part in path]) >= at_least


@pytest.mark.parametrize("kind", ["hubspot", "gohighlevel"])
async def test_a_429_is_waited_out_for_its_retry_after(tmp_path, smtp_sink, kind):
    vendor = STAND_INS[kind]()
    vendor.rate_limited = [({"Retry-After": "1"}, {"status": "error", "message":
                            "You have reached your secondly limit.", "errorType": "RATE_LIMIT"})]
    async with serving(vendor.app()) as url:
        daemon = daemon_for(tmp_path, kind, url)
        async with in_process(daemon):
            began = time.monotonic()
            await missed_call(daemon)
            await eventually(lambda: _count(vendor, "notes", 1), 10, "the note after the 429")
            waited = time.monotonic() - began

            async def recorded():  # the note is in; the delivery's row commits just after
                rows = await daemon.store.delivery_log()
                return rows if rows and rows[0]["state"] == "delivered" else None
            [row] = await eventually(recorded, 10, "the delivery recorded")
    assert vendor.refused == [] and waited >= 1.0
    assert (row["state"], row["attempts"], row["last_status"]) == ("delivered", 2, None)


@pytest.mark.parametrize("kind", ["hubspot", "gohighlevel"])
async def test_a_refused_token_is_retried_and_logged_without_the_token(tmp_path, smtp_sink, kind,
                                                                       caplog):
    vendor = STAND_INS[kind]()
    wrong = "pat-na1-99999999-wrong-token-0000000000"
    async with serving(vendor.app()) as url:
        daemon = daemon_for(tmp_path, kind, url, token=wrong)
        async with in_process(daemon):
            await missed_call(daemon)

            async def refused():
                rows = await daemon.store.delivery_log()
                return rows if rows and rows[0]["last_status"] == 401 else None
            [row] = await eventually(refused, 10, "the 401 in the delivery log")
    assert vendor.requests == [] and row["state"] == "pending"
    assert "refused the token" in row["last_error"]
    assert wrong not in caplog.text + repr(row)


def test_an_unknown_adapter_type_is_a_configuration_error(tmp_path):
    (tmp_path / "crm.token").write_text(TOKEN)
    config = base_config(tmp_path, crm=[{"name": "x", "type": "salesforce",
                                          "token": {"file": "crm.token"}}])
    with pytest.raises(ConfigError) as caught:
        load(write_config(tmp_path, config))
    (where, message), = caught.value.problems
    assert where.startswith("crm[0].type")
    assert "no CRM adapter 'salesforce'" in message and "gohighlevel, hubspot" in message


@pytest.mark.parametrize("kind", ["hubspot", "gohighlevel"])
async def test_a_replys_intake_facts_go_to_the_mapped_crm_fields(tmp_path, smtp_sink, kind):
    vendor = STAND_INS[kind]()
    mapping = ({"intake_properties": HUBSPOT_INTAKE} if kind == "hubspot"
               else {"intake_fields": GHL_INTAKE})
    async with serving(vendor.app()) as url:
        (tmp_path / "crm.token").write_text(TOKEN)
        config = base_config(tmp_path, owners=OWNERS, **{
            "smtp.port": SMTP_SINK_PORT, "service_area": {"zip_prefixes": ["112"]},
            "crm": [{"name": kind, "type": kind, "token": {"file": "crm.token"},
                     "options": {**OPTIONS[kind], **mapping, "base_url": url}}]})
        daemon = Daemon(load(write_config(tmp_path, config)))
        async with in_process(daemon):
            await daemon.receive_text(InboundText(
                HOMEOWNER, BUSINESS_NUMBER, "Kitchen and bath, around $75k, we're in 11215",
                "m1"), "log")
            await eventually(lambda: _count(vendor, "notes" if kind == "gohighlevel"
                                            else "contacts/5", 1), 10, "the intake written")
    assert vendor.refused == []
    if kind == "hubspot":
        [patch] = [body for method, _, body in vendor.requests if method == "PATCH"]
        assert patch == {"properties": {"textback_project": "kitchen,bath",
                                        "textback_budget": "~75000", "textback_zip": "11215",
                                        "textback_service_area": "in"}}
    else:
        upsert = next(body for _, path, body in vendor.requests if path == "/contacts/upsert")
        assert sorted(upsert["customFields"], key=lambda f: f["id"]) == sorted([
            {"id": GHL_INTAKE["project"], "field_value": "kitchen,bath"},
            {"id": GHL_INTAKE["budget"], "field_value": "~75000"},
            {"id": GHL_INTAKE["location"], "field_value": "11215"}], key=lambda f: f["id"])


@pytest.mark.parametrize("kind, options", [
    ("hubspot", {"intake_properties": {"colour": "x"}}),
    ("gohighlevel", {"location_id": "ve9EPM428h8vShlRW1KT", "intake_fields": {"zip": "x"}}),
])
def test_a_mapping_of_something_that_is_not_an_intake_field_is_refused(kind, options):
    from textback.crm import adapter_class

    with pytest.raises(ValueError, match="the intake fields are project, budget"):
        adapter_class(kind)(options, TOKEN, None)
