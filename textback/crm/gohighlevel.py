"""GoHighLevel (API v2, private integration token): upsert the contact by phone with its owner,
add a note.

Documented at marketplace.gohighlevel.com: Upsert Contact (POST
/contacts/upsert, header Version: 2021-07-28, body with locationId, phone,
name, assignedTo; the location's duplicate-contact setting decides the match)
and Create Note (POST /contacts/{contactId}/notes with body and userId). A
reply's intake facts go into the custom fields `options.intake_fields` maps them
to (the upsert's customFields, each {id, field_value}). See docs/crm.md.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from textback.crm import intake_mapping, intake_values, lead_of
from textback.crm.http import call
from textback.crm.notes import note_text

BASE_URL = "https://services.leadconnectorhq.com"
API_VERSION = "2021-07-28"


class GoHighLevel:
    events = ("call.missed", "reply.received", "conversation.assigned")

    def __init__(self, options: dict[str, Any], token: str, http: aiohttp.ClientSession):
        if not options.get("location_id"):
            raise ValueError("the gohighlevel adapter needs options.location_id (the sub-account)")
        self._base = options.get("base_url", BASE_URL).rstrip("/")
        self._location = str(options["location_id"])
        self._owners: dict[str, str] = {k: str(v) for k, v in options.get("owners", {}).items()}
        # intake field (project, budget, timing, location, service_area) -> custom field id
        self._intake = intake_mapping(options, "intake_fields")
        self._headers = {"Authorization": f"Bearer {token}", "Version": API_VERSION,
                         "Content-Type": "application/json", "Accept": "application/json"}
        self._http = http

    async def handle(self, event: dict[str, Any], thread: list[dict[str, Any]]) -> None:
        lead = lead_of(event)
        if lead is None:
            return
        user = self._owners.get(lead.owner_id)
        contact: dict[str, Any] = {"locationId": self._location, "phone": lead.phone,
                                   "source": "textback"}
        if lead.name:
            contact["name"] = lead.name
        if user:
            contact["assignedTo"] = user
        intake = intake_values(event, self._intake)
        if intake:
            contact["customFields"] = [{"id": field, "field_value": value}
                                       for field, value in intake.items()]
        upserted = await call(self._http, "POST", f"{self._base}/contacts/upsert", self._headers,
                              contact)
        if event["type"] == "conversation.assigned":
            return
        note: dict[str, Any] = {"body": note_text(event, thread)}
        if user:
            note["userId"] = user
        await call(self._http, "POST", f"{self._base}/contacts/{upserted['contact']['id']}/notes",
                   self._headers, note)
