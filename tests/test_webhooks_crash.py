"""A daemon killed (SIGKILL) with webhook deliveries under way delivers them after its restart."""

from __future__ import annotations

import os
import signal
import time

from lab.configs import BUSINESS_NUMBER, base_config, write_config
from lab.harness import DaemonProcess, eventually
from tests.hooks_receiver import Receiver, endpoint, new_secret
from tests.providers.common import serving
from textback.store import CallRow, Store

CALLERS = ["+12125550141", "+12125550142", "+12125550143"]


def missed(caller: str, linkedid: str) -> CallRow:
    now = time.time()
    return CallRow(linkedid=linkedid, business_number=BUSINESS_NUMBER, caller_raw=caller,
                   caller=caller, caller_name="", started_at=now - 40, answered_at=None,
                   ended_at=now - 20, outcome="missed", reason="no_answer", decision="missed_call_text")


async def event_ids(path) -> list[str]:
    store = await Store.open(path)
    try:
        return [row["event_id"] for row in await store._all("SELECT event_id FROM events ORDER BY id")]
    finally:
        await store.close()


async def test_every_event_arrives_after_a_kill_and_restart_with_the_same_id(tmp_path):
    crm = Receiver(new_secret(), holding=True)  # the first tries hang: in flight at the kill
    async with serving(crm.app()) as url:
        config = base_config(tmp_path, webhooks={"endpoints": [
            endpoint(tmp_path, "crm", f"{url}/hook", crm.secret)]})
        path = write_config(tmp_path, config)
        database = tmp_path / "textback.db"
        store = await Store.open(database)  # events committed before the daemon starts
        for index, caller in enumerate(CALLERS):
            await store.record_call(missed(caller, f"before-{index}"), owner_id="dana")
        await store.close()

        daemon = DaemonProcess(path, tmp_path / "textback.log").launch()
        try:
            await eventually(lambda: _logged(daemon, "textback running"), 15, "the daemon to start")
            await eventually(lambda: _at_least(crm, 3), 10, "three deliveries in flight")
            store = await Store.open(database)  # more, committed while it runs (as the CLI does)
            await store.record_outcome(1, "booked", None, "cli")
            await store.suppress(CALLERS[2], "cli")
            await store.close()
            await eventually(lambda: _at_least(crm, 4), 10, "the new number's event in flight")
            in_flight = {d.id for d in crm.seen}
            os.kill(daemon.process.pid, signal.SIGKILL)
            daemon.process.wait(10)
            assert crm.deliveries == []  # nothing was answered before the kill

            crm.holding = False
            crm.release.set()
            daemon.launch()
            wanted = await event_ids(database)
            await eventually(lambda: _has(crm, wanted), 20, "every event after the restart")
            log = daemon.log_since_start()
        finally:
            daemon.stop()

    assert crm.forged == []
    assert len(wanted) == 5
    assert in_flight <= crm.ids() and set(wanted) == crm.ids()  # the same ids, sent again
    assert "4 webhook deliveries were under way when textback stopped" in log
    outcome = next(d for d in crm.deliveries if d.event["type"] == "outcome.changed")
    first_call = next(d for d in crm.deliveries if d.event["data"].get("call_id") == "before-0")
    assert first_call.at <= outcome.at  # conversation 1: the call before its outcome


async def _logged(daemon: DaemonProcess, text: str) -> bool:
    return text in daemon.log_since_start()


async def _at_least(receiver: Receiver, count: int) -> bool:
    return len(receiver.seen) >= count


async def _has(receiver: Receiver, ids: list[str]) -> bool:
    return set(ids) <= receiver.ids()
