"""Events whose ids commit out of order, on a real PostgreSQL 15: two daemons' transactions
take event ids 1 and 2, and the one holding 2 commits first. The webhook/CRM fan-out and the
Web Push cursor, reading beside them, never step over 1: it is delivered (and pushed) once it
commits, as 2 is."""

from __future__ import annotations

import asyncio
import json

from textback.core import events
from textback.core.events import Event
from textback.store.postgres import PostgresStore

TYPES = (events.REPLY_RECEIVED,)


def reply(n: int) -> Event:
    return Event(id=f"evt_{n}", type=events.REPLY_RECEIVED, order_key=f"conv-{n}",
                 body=json.dumps({"type": events.REPLY_RECEIVED, "data": {"conversation_id": n}}),
                 at=1_800_000_000.0 + n)


async def emit_and_wait(store: PostgresStore, event: Event, took_id: asyncio.Event,
                        commit: asyncio.Event) -> None:
    """A writer's transaction that inserts `event` and commits only once told to."""
    async with store._transaction():
        await store._emit(event)
        took_id.set()
        await commit.wait()


async def event_ids(store: PostgresStore) -> dict[str, int]:
    return {row["event_id"]: row["id"] for row in await store._all("SELECT id, event_id FROM events")}


async def test_an_event_committed_after_a_larger_id_is_still_fanned_out_and_pushed(
        postgres_server, postgres_template):
    url = postgres_server.new_database(template=postgres_template)
    slow, quick, reader = [await PostgresStore.open(url) for _ in range(3)]
    try:
        await reader.start_push_cursors()
        first_taken, first_commit = asyncio.Event(), asyncio.Event()
        slow_writer = asyncio.create_task(emit_and_wait(slow, reply(1), first_taken, first_commit))
        await first_taken.wait()  # the slow transaction holds the smaller id, uncommitted
        second_taken, go = asyncio.Event(), asyncio.Event()
        go.set()
        await emit_and_wait(quick, reply(2), second_taken, go)  # the larger id, committed first
        assert list(await event_ids(reader)) == ["evt_2"]

        # The readers run while the smaller id is still in flight: they wait for it rather
        # than move their cursors past it.
        fanning = asyncio.create_task(reader.fan_out({"crm": TYPES}, since=0))
        pushing = asyncio.create_task(reader.push_events_after(0))
        await asyncio.sleep(0.5)
        assert not fanning.done() and not pushing.done()
        first_commit.set()
        await slow_writer
        assert await asyncio.wait_for(fanning, 10) == 2
        ids = await event_ids(reader)
        assert ids["evt_1"] < ids["evt_2"]  # the order the test is about: 1 committed last
        assert [row["event_id"] for row in await asyncio.wait_for(pushing, 10)] == ["evt_1", "evt_2"]
        log = await reader.delivery_log(endpoint="crm")
        assert sorted(row["event_id"] for row in log) == ["evt_1", "evt_2"]
        assert await reader.fan_out({"crm": TYPES}, since=0) == 0  # and each one once
    finally:
        for store in (slow, quick, reader):
            await store.close()


async def test_a_cursor_never_passes_an_uncommitted_id_even_when_the_reader_is_not_blocked(
        postgres_server, postgres_template):
    """The settled id stops below a transaction holding an event id: read after it commits,
    it is the largest; and an aborted transaction's id holds nobody back."""
    url = postgres_server.new_database(template=postgres_template)
    writer, aborting, reader = [await PostgresStore.open(url) for _ in range(3)]
    try:
        taken, commit = asyncio.Event(), asyncio.Event()
        assert await reader.settled_event_id() == 0
        pending = asyncio.create_task(emit_and_wait(writer, reply(1), taken, commit))
        await taken.wait()
        settled = asyncio.create_task(reader.settled_event_id())
        await asyncio.sleep(0.3)
        assert not settled.done()
        commit.set()
        await pending
        assert await asyncio.wait_for(settled, 10) == (await event_ids(reader))["evt_1"]

        class Abort(Exception):
            pass

        try:
            async with aborting._transaction():
                await aborting._emit(reply(2))
                raise Abort
        except Abort:
            pass
        assert await asyncio.wait_for(reader.settled_event_id(), 10) == (
            await event_ids(reader))["evt_1"]
    finally:
        for store in (writer, aborting, reader):
            await store.close()
