"""HubSpot (CRM v3, private-app token): find the contact by phone or create it, add a note, set
the owner.

Documented at developers.hubspot.com: contacts (POST /crm/v3/objects/contacts,
PATCH /crm/v3/objects/contacts/{id}), search (POST
/crm/v3/objects/contacts/search with filterGroups; contacts dedupe on email,
so phone is searched first), notes (POST /crm/v3/objects/notes with
hs_timestamp, hs_note_body, hubspot_owner_id and an association of type 202,
note to contact, HUBSPOT_DEFINED). A reply's intake facts go into the contact
properties `options.intake_properties` maps them to (PATCH the contact, each a
single-line text property the portal has). See docs/crm.md.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from textback.crm import intake_mapping, intake_values, lead_of
from textback.crm.http import call
from textback.crm.notes import note_text

BASE_URL = "https://api.hubapi.com"
NOTE_TO_CONTACT = 202


class HubSpot:
    events = ("call.missed", "reply.received", "conversation.assigned")

    def __init__(self, options: dict[str, Any], token: str, http: aiohttp.ClientSession):
        self._base = options.get("base_url", BASE_URL).rstrip("/")
        self._owners: dict[str, str] = {k: str(v) for k, v in options.get("owners", {}).items()}
        # intake field (project, budget, timing, location, service_area) -> contact property
        self._intake = intake_mapping(options, "intake_properties")
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._http = http

    async def handle(self, event: dict[str, Any], thread: list[dict[str, Any]]) -> None:
        lead = lead_of(event)
        if lead is None:
            return
        owner = self._owners.get(lead.owner_id)
        contact = await self._contact(lead.phone, lead.name, owner)
        if event["type"] == "conversation.assigned":
            if owner:
                await self._request("PATCH", f"/crm/v3/objects/contacts/{contact}",
                                    {"properties": {"hubspot_owner_id": owner}})
            return
        properties = {"hs_timestamp": event["timestamp"], "hs_note_body": note_text(event, thread)}
        if owner:
            properties["hubspot_owner_id"] = owner
        await self._request("POST", "/crm/v3/objects/notes", {
            "properties": properties,
            "associations": [{"to": {"id": contact}, "types": [
                {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": NOTE_TO_CONTACT}]}]})
        intake = intake_values(event, self._intake)
        if intake:
            await self._request("PATCH", f"/crm/v3/objects/contacts/{contact}",
                                {"properties": intake})

    async def _contact(self, phone: str, name: str | None, owner: str | None) -> str:
        found = await self._request("POST", "/crm/v3/objects/contacts/search", {
            "filterGroups": [{"filters": [{"propertyName": "phone", "operator": "EQ",
                                           "value": phone}]}],
            "properties": ["phone", "firstname", "hubspot_owner_id"], "limit": 1})
        if found.get("results"):
            return str(found["results"][0]["id"])
        # A contact needs an email, a first or a last name: the number stands in for a name.
        properties = {"phone": phone, "firstname": name or phone}
        if owner:
            properties["hubspot_owner_id"] = owner
        created = await self._request("POST", "/crm/v3/objects/contacts", {"properties": properties})
        return str(created["id"])

    async def _request(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await call(self._http, method, self._base + path, self._headers, body)
