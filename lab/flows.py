"""The call-flow corpus: each function plays one real call flow on the lab PBX.

The lab tests (tests/test_flows_lab.py) and the trace recorder
(lab/record_traces.py) play the same functions, so the unit-test traces in
tests/traces/ are the flows the lab tests check. Each returns the
caller IDs of the inbound calls it placed, as Asterisk shows them
(CallerIDNum), once every SIPp actor is done. Each flow uses its own callers,
so flows sharing one textback database stay independent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from lab.configs import AGI_ROUTED_NUMBER, write_agi_routing_table
from lab.pbx import CARRIER_IP, LabPBX, SippActor

# The lab's DIDs (lab/asterisk/extensions.conf).
OFFICE1_6S = "+12125550100"
RING_GROUP_6S = "+12125550101"
OFFICE1 = "+12125550102"
OFFICE2 = "+12125550103"
RING_GROUP = "+12125550104"
OFFLINE_PHONE = "+12125550105"
VOICEMAIL = "+12125550106"
VOICEMAIL_COUNTS_AS_ANSWERED = "+12125550116"  # same route; its policy says voicemail is answered
IVR = "+12125550107"
IVR_ABANDON_NOT_MISSED = "+12125550117"  # same route; its policy says an IVR abandon is no miss
QUEUE = "+12125550108"
TRANSFER = "+12125550109"
FORWARD_TO_CELL = "+12125550110"
FORWARD_WITH_CONFIRM = "+12125550113"
FREEPBX_QUEUE = "+12125550111"
FREEPBX_RING_GROUP = "+12125550112"
CELL_PHONE = "+19175550199"

WAIT = 40.0  # no lab flow takes this long; a stuck actor fails the flow instead of hanging it


def _play(*actors: SippActor) -> None:
    """Wait for every actor to finish its part; kill any still running, so the next flow can bind its ports."""
    try:
        for actor in actors:
            actor.wait_success(WAIT)
    finally:
        for actor in actors:
            actor.kill()


def together(*flows: Callable[[], list[str]]) -> list[str]:
    """Play flows at the same time (they must use different phones); their callers, in order."""
    with ThreadPoolExecutor(len(flows)) as pool:
        running = [pool.submit(flow) for flow in flows]
    return [caller for flow in running for caller in flow.result()]


# -- 1, 2, 5, 6: one phone -----------------------------------------------------

def no_answer(lab: LabPBX, caller: str = "+16465550101", did: str = OFFICE1,
              phone: str = "office1") -> list[str]:
    """The phone rings until the Dial timeout."""
    ringing = lab.phone(phone, "noanswer")
    _play(lab.call(caller, did), ringing)
    return [caller]


def named_caller(lab: LabPBX, caller: str = "+16465550175",
                 display: str = '"Pat O\'Brien & Zoë \\ Sons"') -> list[str]:
    """No answer, from a caller whose From header carries a name with an apostrophe, a backslash
    and non-ASCII letters (the display name as the carrier sends it; PJSIP keeps it verbatim)."""
    ringing = lab.phone("office1", "noanswer")
    _play(lab.call(caller, OFFICE1_6S, from_header=f"{display} <sip:{caller}@{CARRIER_IP}>"), ringing)
    return [caller]


def caller_hangs_up(lab: LabPBX, caller: str = "+16465550102", after: float = 4.5) -> list[str]:
    """The caller gives up while the phone rings (its Dial timeout is 6 s)."""
    ringing = lab.phone("office1", "noanswer")
    _play(lab.call(caller, OFFICE1_6S, hangup_after=after), ringing)
    return [caller]


def answered(lab: LabPBX, caller: str = "+16465550100", did: str = OFFICE1_6S) -> list[str]:
    """office1 answers after a second and talks."""
    phone = lab.phone("office1", "answer", answer_after=1.0, talk_seconds=1.0)
    _play(lab.call(caller, did, talk_seconds=3.0), phone)
    return [caller]


def busy(lab: LabPBX, caller: str = "+16465550105") -> list[str]:
    """The phone answers 486 Busy Here."""
    phone = lab.phone("office1", "busy")
    _play(lab.call(caller, OFFICE1), phone)
    return [caller]


def offline(lab: LabPBX, caller: str = "+16465550106") -> list[str]:
    """The phone is not registered: Dial fails at once (CHANUNAVAIL) and no leg is created."""
    _play(lab.call(caller, OFFLINE_PHONE))
    return [caller]


# -- 3, 4: ring groups ---------------------------------------------------------

def ring_group_answered(lab: LabPBX, caller: str = "+16465550103", did: str = RING_GROUP) -> list[str]:
    """office1 and office2 ring; office2 answers, so office1's leg is cancelled (cause 26)."""
    first = lab.phone("office1", "noanswer")
    second = lab.phone("office2", "answer", answer_after=1.0, talk_seconds=1.0)
    _play(lab.call(caller, did, talk_seconds=3.0), first, second)
    return [caller]


def ring_group_no_answer(lab: LabPBX, caller: str = "+16465550104") -> list[str]:
    """office1 and office2 ring until the Dial timeout."""
    first, second = lab.phone("office1", "noanswer"), lab.phone("office2", "noanswer")
    _play(lab.call(caller, RING_GROUP), first, second)
    return [caller]


# -- 7, 8: Asterisk answers ------------------------------------------------------

def voicemail(lab: LabPBX, caller: str = "+16465550107", did: str = VOICEMAIL,
              phone: str = "office1") -> list[str]:
    """The phone rings out, then VoiceMail answers; the caller hangs up during the greeting."""
    ringing = lab.phone(phone, "noanswer")
    _play(lab.call(caller, did, talk_seconds=2.0), ringing)
    return [caller]


def ivr_abandoned(lab: LabPBX, caller: str = "+16465550108", did: str = IVR) -> list[str]:
    """The IVR answers and waits for a digit; the caller hangs up in the menu."""
    _play(lab.call(caller, did, talk_seconds=3.5))
    return [caller]


# -- 9: a queue ------------------------------------------------------------------

def queue_abandoned(lab: LabPBX, caller: str = "+16465550109") -> list[str]:
    """The caller waits in the queue while office1 rings, and hangs up before its 5 s timeout."""
    member = lab.phone("office1", "noanswer")
    _play(lab.call(caller, QUEUE, hangup_after=3.5), member)
    return [caller]


def queue_timeout(lab: LabPBX, caller: str = "+16465550110") -> list[str]:
    """Nobody takes the call before the queue's timeout; the dialplan then hangs up."""
    member = lab.phone("office1", "noanswer")
    _play(lab.call(caller, QUEUE), member)
    return [caller]


def queue_answered(lab: LabPBX, caller: str = "+16465550111") -> list[str]:
    """The queue member (office1 itself) answers."""
    member = lab.phone("office1", "answer", answer_after=1.0, talk_seconds=1.0)
    _play(lab.call(caller, QUEUE, talk_seconds=3.0), member)
    return [caller]


# -- 10: transfers -----------------------------------------------------------------

def blind_transfer(lab: LabPBX, caller: str = "+16465550112") -> list[str]:
    """office1 answers, then transfers the caller to extension 202 with a SIP REFER."""
    transferer = lab.phone("office1", "refer", answer_after=1.0, talk_seconds=1.0, transfer_to="202")
    target = lab.phone("office2", "answer", answer_after=1.0, talk_seconds=1.0)
    _play(lab.call(caller, TRANSFER, talk_seconds=15.0), transferer, target)
    return [caller]


def attended_transfer(lab: LabPBX, caller: str = "+16465550113") -> list[str]:
    """office1 answers, keys *2 202, talks to office2, and hangs up: the caller is with office2."""
    transferer = lab.phone("office1", "atxfer", answer_after=1.0, talk_seconds=1.0,
                           transfer_to="202", consult_seconds=1.5)
    target = lab.phone("office2", "answer", answer_after=1.0, talk_seconds=3.0)
    _play(lab.call(caller, TRANSFER, talk_seconds=20.0), transferer, target)
    return [caller]


# -- 11, 12: calls over the trunk that are not a missed inbound call -----------------

def forwarded_to_cell(lab: LabPBX, caller: str = "+16465550114") -> list[str]:
    """The DID forwards over the trunk to the owner's cell phone, which answers."""
    cell = lab.phone("cell", "answer", answer_after=1.0, talk_seconds=1.0)
    _play(lab.call(caller, FORWARD_TO_CELL, talk_seconds=3.0), cell)
    return [caller]


def forwarded_to_cell_voicemail_with_confirm(lab: LabPBX, caller: str = "+16465550128") -> list[str]:
    """Forwarded with "confirm calls": the cell's voicemail answers but never presses 1, so
    Asterisk hangs that leg up and the caller goes on to the office voicemail."""
    cell = lab.phone("cell", "answer", answer_after=1.0, talk_seconds=10.0)
    _play(lab.call(caller, FORWARD_WITH_CONFIRM, talk_seconds=2.0), cell)
    return [caller]


def outbound_call(lab: LabPBX) -> list[str]:
    """office1 calls a cell phone out through the carrier."""
    cell = lab.phone("cell", "answer", answer_after=0.5, talk_seconds=1.0)
    _play(lab.call("201", CELL_PHONE, source="office1", talk_seconds=3.0), cell)
    return []


def internal_call(lab: LabPBX) -> list[str]:
    """office1 calls extension 202 (office2)."""
    office2 = lab.phone("office2", "answer", answer_after=0.5, talk_seconds=1.0)
    _play(lab.call("201", "202", source="office1", talk_seconds=3.0), office2)
    return []


# -- 13, 14: who is calling ------------------------------------------------------------

def withheld_caller_ids(lab: LabPBX) -> list[str]:
    """Four callers with no number to call back, at once, to the offline phone."""
    calls = [
        lab.call("anonymous", OFFLINE_PHONE, from_header='"Anonymous" <sip:anonymous@anonymous.invalid>'),
        lab.call("", OFFLINE_PHONE),  # no user part: Asterisk shows <unknown>
        lab.call("Restricted", OFFLINE_PHONE, from_header='"Restricted" <sip:Restricted@127.0.0.3>'),
        lab.call("201", OFFLINE_PHONE),  # an extension number, as a misconfigured trunk sends
    ]
    _play(*calls)
    return ["anonymous", "<unknown>", "Restricted", "201"]


def two_callers_at_once(lab: LabPBX) -> list[str]:
    """Two callers ring two phones at the same time; nobody answers."""
    return together(lambda: no_answer(lab, "+16465550115", OFFICE1, "office1"),
                    lambda: no_answer(lab, "+16465550116", OFFICE2, "office2"))


def same_caller_twice(lab: LabPBX, caller: str = "+16465550117") -> list[str]:
    """One caller tries twice in a row."""
    return offline(lab, caller) + offline(lab, caller)


# -- 15: FreePBX shapes: Local channels between the trunk and the phones -----------------

def freepbx_queue_answered(lab: LabPBX, caller: str = "+16465550118") -> list[str]:
    """Queue member Local/201@from-queue/n rings office1, which answers."""
    phone = lab.phone("office1", "answer", answer_after=1.0, talk_seconds=1.0)
    _play(lab.call(caller, FREEPBX_QUEUE, talk_seconds=3.0), phone)
    return [caller]


def freepbx_queue_voicemail(lab: LabPBX, caller: str = "+16465550119") -> list[str]:
    """office1 does not answer; the Local member falls to voicemail and answers for it."""
    phone = lab.phone("office1", "noanswer")
    _play(lab.call(caller, FREEPBX_QUEUE, talk_seconds=2.0), phone)
    return [caller]


def freepbx_ring_group_answered(lab: LabPBX, caller: str = "+16465550120") -> list[str]:
    """A ring group of Local channels; office2 answers through its Local channel."""
    first = lab.phone("office1", "noanswer")
    second = lab.phone("office2", "answer", answer_after=1.0, talk_seconds=1.0)
    _play(lab.call(caller, FREEPBX_RING_GROUP, talk_seconds=3.0), first, second)
    return [caller]


def freepbx_ring_group_voicemail(lab: LabPBX, caller: str = "+16465550121") -> list[str]:
    """Nobody answers; a Local leg falls to voicemail and Dial reports ANSWER for it."""
    first, second = lab.phone("office1", "noanswer"), lab.phone("office2", "noanswer")
    _play(lab.call(caller, FREEPBX_RING_GROUP, talk_seconds=2.0), first, second)
    return [caller]


# -- routed by textback's AGI ---------------------------------------------------------

def agi_routed_closed(lab: LabPBX, caller: str = "+16465550129") -> list[str]:
    """A day the routing table marks closed: the AGI sends the call to office1 for 6 s, nobody answers."""
    write_agi_routing_table(lab.workdir / "agi-routing", lab, closed_today=True)
    return no_answer(lab, caller, AGI_ROUTED_NUMBER, "office1")


# -- the self-test's call ---------------------------------------------------------

# The uniqueids the self-test's Originate gives its Local halves (ChannelId, OtherChannelId).
SELFTEST_CALL_ID = "textback-selftest-lab"
SELFTEST_CALLER_UNIQUEID = SELFTEST_CALL_ID + "-2"


def selftest_call(lab: LabPBX, caller: str = "+16465550130", ring_phones: bool = False,
                  ring_seconds: float = 8.0) -> list[str]:
    """`textback selftest`'s call: the originate-only user places a Local channel into the
    carrier's context at the AGI-routed DID, with TEXTBACK_SELFTEST set, so the shipped
    dialplan rings nobody; with `ring_phones`, office2 rings out (the route's 5 s when open)."""
    import asyncio

    from lab.ami import AmiClient

    write_agi_routing_table(lab.workdir / "agi-routing", lab)
    ringing = lab.phone("office2", "noanswer") if ring_phones else None

    async def originate() -> None:
        client = await AmiClient.connect(lab.ami_host, lab.ami_port, lab.selftest_user,
                                         lab.selftest_secret_file.read_text().strip())
        try:
            answer = await client.action(
                "Originate", Channel=f"Local/{AGI_ROUTED_NUMBER}@from-carrier/n",
                Application="Wait", Data=f"{ring_seconds:g}",
                CallerID=f'"textback self-test" <{caller}>', Timeout=str(int(ring_seconds * 1000)),
                Variable="TEXTBACK_SELFTEST=1" + (",TEXTBACK_SELFTEST_RING=1" if ring_phones else ""),
                ChannelId=SELFTEST_CALL_ID, OtherChannelId=SELFTEST_CALLER_UNIQUEID, Async="true")
            if answer.get("Response") != "Success":
                raise RuntimeError(f"Originate refused: {answer.get('Message')}")
        finally:
            await client.close()

    asyncio.run(originate())
    time.sleep(ring_seconds + 1.0 if ring_phones else 1.0)
    if ringing is not None:
        _play(ringing)
    return [caller]


# -- 16: the listener starts in the middle of a call --------------------------------------

def listener_joins_while_ringing(lab: LabPBX, start_listener: Callable[[], None],
                                 caller: str = "+16465550122") -> list[str]:
    """office1 rings (6 s Dial timeout); the listener starts 1.5 s in; the caller gives up at 5.5 s."""
    ringing = lab.phone("office1", "noanswer")
    call = lab.call(caller, OFFICE1_6S, hangup_after=5.5)
    time.sleep(1.5)
    start_listener()
    _play(call, ringing)
    return [caller]


def listener_joins_mid_conversation(lab: LabPBX, start_listener: Callable[[], None],
                                    caller: str = "+16465550123") -> list[str]:
    """office1 answers at once; the listener starts a second into the conversation."""
    phone = lab.phone("office1", "answer", answer_after=0.3, talk_seconds=6.0)
    call = lab.call(caller, OFFICE1_6S, talk_seconds=6.0)
    time.sleep(1.3)
    start_listener()
    _play(call, phone)
    return [caller]
