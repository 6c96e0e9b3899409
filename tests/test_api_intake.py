"""Intake facts through the JSON API: read in a thread and the conversation list (filtered by
project type and service area), set as a person's value; every answer checked against the
OpenAPI document (tests/test_api.py's client)."""

from __future__ import annotations

from tests import test_api
from tests.test_api import seed

config_path, tokens, api = test_api.config_path, test_api.tokens, test_api.api


async def test_a_thread_carries_its_intake_and_where_each_fact_came_from(api, tokens):
    daemon, call = api
    conversation = await seed(daemon)  # the homeowner wrote "Kitchen remodel, Tue?"
    status, body, _ = await call("GET", "/conversations/{id}", tokens["dash"], id=conversation)
    assert status == 200
    assert body["intake"]["project"]["value"] == "kitchen"
    assert body["intake"]["project"]["source"] == "extracted"
    assert body["intake"]["timing"]["evidence"] == "Tue"
    [entry] = [e for e in body["intake_history"] if e["field"] == "project"]
    assert entry["cause"] == "Kitchen remodel, Tue?" and entry["author"] == "textback"
    assert entry["message_id"] == body["messages"][-1]["id"]
    assert body["conversation"]["intake_project"] == "kitchen"


async def test_a_person_sets_a_fact_and_the_list_filters_on_project_and_area(api, tokens):
    daemon, call = api
    conversation = await seed(daemon)
    status, body, _ = await call("POST", "/conversations/{id}/intake", tokens["crm"],
                                 json={"field": "budget", "value": "$50k-60k"}, id=conversation)
    assert status == 200
    assert body["intake"]["budget"] == {"value": "50000-60000", "label": "$50k–60k",
                                        "evidence": "$50k-60k", "why": "set by a person",
                                        "source": "person"}
    status, body, _ = await call("POST", "/conversations/{id}/intake", tokens["crm"],
                                 json={"field": "service_area", "value": "out"}, id=conversation)
    assert body["intake"]["service_area"]["value"] == "out"
    _, thread, _ = await call("GET", "/conversations/{id}", tokens["dash"], id=conversation)
    assert thread["intake_history"][-1]["author"] == "api:crm"
    assert thread["conversation"]["intake_labels"].startswith("Kitchen · $50k–60k")

    async def listed(query: str) -> list[int]:
        status, body, _ = await call("GET", f"/conversations{query}", tokens["dash"])
        assert status == 200
        return [c["id"] for c in body["conversations"]]

    assert await listed("?project=kitchen") == [conversation]
    assert await listed("?project=kitchen&area=out") == [conversation]
    assert await listed("?area=in") == []
    assert await listed("?project=bath") == []
    assert await listed("?project=kitch") == []  # a whole type, never a prefix


async def test_a_value_that_cannot_be_read_is_422_and_changes_nothing(api, tokens):
    daemon, call = api
    conversation = await seed(daemon)
    status, body, _ = await call("POST", "/conversations/{id}/intake", tokens["crm"],
                                 json={"field": "budget", "value": "lots"}, id=conversation)
    assert status == 422 and body["error"]["code"] == "not_understood"
    assert "not an amount" in body["error"]["message"]
    status, body, _ = await call("POST", "/conversations/{id}/intake", tokens["crm"],
                                 json={"field": "colour", "value": "red"}, id=conversation)
    assert status == 400 and body["error"]["field"] == "field"
    status, _, _ = await call("POST", "/conversations/{id}/intake", tokens["dash"],
                              json={"field": "budget", "value": "80k"}, id=conversation)
    assert status == 403
    assert (await daemon.store.intake(conversation)).get("budget") is None
