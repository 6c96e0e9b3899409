"""Incidents in the store, on both backends: each records the daemon that opened it, tells a
daemon whether it opened it and whether its opener is gone, and is taken over only from a gone
daemon (textback/core/incidents.py decides what each daemon does with them)."""

from __future__ import annotations

from lab.harness import eventually
from tests.conftest import open_store_at

NOW = 1_800_000_000.0


async def opener_gone(store) -> bool:
    [row] = await store.open_incidents()
    return row["opener_gone"]


def by_kind(rows: list[dict]) -> dict[str, dict]:
    return {row["kind"]: row for row in rows}


async def test_an_incident_names_its_daemon_and_is_taken_over_only_once_that_daemon_is_gone(
        store_location):
    """Daemon a opens gateway_failing. Daemon b (a second store: on PostgreSQL a daemon beside
    it, on SQLite the next start of the one daemon) sees it opened by another; on PostgreSQL
    it cannot take it over while a lives. Once a is gone, b takes it over, and it is b's."""
    first = await open_store_at(store_location)
    a = await first.register_claimer("host-a", 101)
    incident = await first.open_incident("gateway_failing", "5 sends in a row failed", NOW)
    assert await first.open_incident("gateway_failing", "again", NOW + 10) is None
    [row] = await first.open_incidents()
    assert (row["id"], row["opened_by"], row["opened_here"], row["opener_gone"],
            row["opened_on"]) == (incident, a, True, False, "host-a")

    second = await open_store_at(store_location)
    try:
        b = await second.register_claimer("host-b", 202)
        [row] = await second.open_incidents()
        fleet = isinstance(store_location, str)
        assert (row["opened_here"], row["opener_gone"]) == (False, not fleet)
        if fleet:  # a lives: its incident is not b's to take
            assert not await second.adopt_incident(incident)
            await first.close()  # a ends: PostgreSQL frees its presence lock as its session ends
            await eventually(lambda: opener_gone(second), 10, "a's session to end")
        assert await second.adopt_incident(incident)
        [row] = await second.open_incidents()
        assert (row["opened_by"], row["opened_here"], row["opener_gone"],
                row["opened_on"]) == (b, True, False, "host-b")
        assert await second.close_incident(incident, NOW + 60)
        assert not await second.adopt_incident(incident)  # closed: nothing to take over
        assert await second.open_incidents() == []
    finally:
        await second.close()
        await first.close()


async def test_a_pbx_incident_is_one_per_kind_and_pbx_whoever_opens_it(store_location):
    """Two daemons that both see PBX south quiet write one incident of it, the first one's;
    the same kind about another PBX is another incident."""
    first, second = await open_store_at(store_location), await open_store_at(store_location)
    try:
        await first.register_claimer("host-a", 101)
        await second.register_claimer("host-b", 202)
        assert await first.open_incident("no_call_events", "PBX south: quiet", NOW, "south")
        assert await second.open_incident("no_call_events", "PBX south: quiet", NOW, "south") is None
        assert await second.open_incident("no_call_events", "PBX north: quiet", NOW, "north")
        rows = await second.open_incidents()
        assert sorted((r["pbx"], r["opened_on"], r["opened_here"]) for r in rows) == [
            ("north", "host-b", True), ("south", "host-a", False)]
    finally:
        await second.close()
        await first.close()


async def test_an_incident_from_a_store_without_a_daemon_is_anyones_to_judge(store):
    """A command's store, or an incident from before daemons were recorded: no daemon opened
    it, so whichever daemon judges its kind may take it over."""
    incident = await store.open_incident("routing_table", "cannot write", NOW)
    [row] = await store.open_incidents()
    assert (row["opened_by"], row["opened_here"], row["opener_gone"], row["opened_on"]) == (
        None, False, True, "")
    await store.register_claimer("host-a", 101)
    assert await store.adopt_incident(incident)
    assert by_kind(await store.open_incidents())["routing_table"]["opened_here"]
