"""Record the AMI events of every lab call flow into tests/traces/<name>.jsonl.

    python -m lab.record_traces              # every trace (about two minutes)
    python -m lab.record_traces voicemail    # just these

Each trace is what the product's AMI user sees, written by the product's own
AMI connection (the same code as `textback run --record-ami`): one JSON
object per event with "_t", the seconds since it connected. Flows 16 connect
mid-call and record the CoreShowChannels listing the daemon reconciles
with. The unit tests (tests/test_tracker.py) replay these files; regenerate
them with this script, never by hand.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from ami_listener.connection import AmiConnection
from lab import flows
from lab.pbx import LabPBX

TRACE_DIR = Path(__file__).resolve().parent.parent / "tests" / "traces"
# After the last actor is done: long enough for the last Hangup events to arrive.
SETTLE_SECONDS = 1.0

Flow = Callable[[LabPBX], list[str]]
MidCallFlow = Callable[[LabPBX, Callable[[], None]], list[str]]

# Trace name -> the flow it records.
TRACES: dict[str, Flow] = {
    "noanswer": lambda lab: flows.no_answer(lab, "+12125550123", flows.OFFICE1_6S),
    "named_caller": flows.named_caller,
    "answered": lambda lab: flows.answered(lab, "+12125550123"),
    "ringgroup": lambda lab: flows.ring_group_answered(lab, "+12125550124", flows.RING_GROUP_6S),
    "caller_hung_up": flows.caller_hangs_up,
    "too_short": lambda lab: flows.caller_hangs_up(lab, "+16465550124", after=1.0),
    "ringgroup_noanswer": flows.ring_group_no_answer,
    "busy": flows.busy,
    "unavailable": flows.offline,
    "voicemail": flows.voicemail,
    "ivr_abandoned": flows.ivr_abandoned,
    "queue_abandoned": flows.queue_abandoned,
    "queue_timeout": flows.queue_timeout,
    "queue_answered": flows.queue_answered,
    "blind_transfer": flows.blind_transfer,
    "attended_transfer": flows.attended_transfer,
    "forwarded_to_cell": flows.forwarded_to_cell,
    "forwarded_confirm_voicemail": flows.forwarded_to_cell_voicemail_with_confirm,
    "outbound": flows.outbound_call,
    "internal": flows.internal_call,
    "withheld_caller_ids": flows.withheld_caller_ids,
    "two_callers_at_once": flows.two_callers_at_once,
    "same_caller_twice": flows.same_caller_twice,
    "freepbx_queue_answered": flows.freepbx_queue_answered,
    "freepbx_queue_voicemail": flows.freepbx_queue_voicemail,
    "freepbx_ringgroup_answered": flows.freepbx_ring_group_answered,
    "freepbx_ringgroup_voicemail": flows.freepbx_ring_group_voicemail,
    "agi_routed_closed": flows.agi_routed_closed,
    "selftest": flows.selftest_call,
    "selftest_ring_phones": lambda lab: flows.selftest_call(lab, "+16465550131", ring_phones=True),
}
MID_CALL_TRACES: dict[str, MidCallFlow] = {
    "mid_call_ringing": flows.listener_joins_while_ringing,
    "mid_call_answered": flows.listener_joins_mid_conversation,
}


async def _listen(lab: LabPBX, path: Path) -> AmiConnection:
    """Log in as the product's AMI user, recording every event to `path`, and list the channels."""
    secret = SecretStr(lab.ami_secret_file.read_text().strip())
    connection = AmiConnection(lab.ami_host, lab.ami_port, lab.ami_user, secret,
                               on_event=lambda event: None, record_to=path)
    connection.start()
    await connection.wait_logged_in(10)
    await connection.action({"Action": "CoreShowChannels"}, timeout=10)
    return connection


async def record(lab: LabPBX, name: str) -> None:
    path = TRACE_DIR / f"{name}.jsonl"
    path.unlink(missing_ok=True)
    if name in TRACES:
        connection = await _listen(lab, path)
        await asyncio.to_thread(TRACES[name], lab)
    else:
        loop = asyncio.get_running_loop()
        started: list[AmiConnection] = []

        def start_listener() -> None:
            started.append(asyncio.run_coroutine_threadsafe(_listen(lab, path), loop).result())

        await asyncio.to_thread(MID_CALL_TRACES[name], lab, start_listener)
        [connection] = started
    await asyncio.sleep(SETTLE_SECONDS)
    await connection.close()
    print(f"{path.relative_to(TRACE_DIR.parent.parent)}: {sum(1 for _ in path.open())} events")


async def main(names: list[str]) -> None:
    unknown = set(names) - set(TRACES) - set(MID_CALL_TRACES)
    if unknown:
        raise SystemExit(f"unknown trace(s) {', '.join(sorted(unknown))}; "
                         f"known: {', '.join([*TRACES, *MID_CALL_TRACES])}")
    lab = LabPBX(Path(tempfile.mkdtemp(prefix="textback-traces-")))
    lab.start()
    try:
        for name in names or [*TRACES, *MID_CALL_TRACES]:
            await record(lab, name)
    finally:
        lab.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
