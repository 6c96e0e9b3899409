"""The call tracker: AMI events in, finished calls with an outcome out. No I/O.

An inbound call is opened by the Newchannel of a channel from a configured
trunk endpoint or inbound context. Every channel that shares its linkedid
belongs to it; the uniqueid -> call map follows linkedid changes when bridges
merge. The call is answered when a real device channel enters a bridge (not a
Local half, not the trunk channel itself), on AgentConnect, or on DialEnd
ANSWER to a non-Local channel. It is over when the trunk channel hangs up;
the decision waits `grace` seconds because Asterisk does not order events of
different types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

Event = Mapping[str, str]

ANSWERED = "answered"
MISSED = "missed"

# DialEnd statuses that say why a ringing leg ended without a human.
_DIAL_REASON = {
    "NOANSWER": "no_answer",
    "BUSY": "busy",
    "CHANUNAVAIL": "unavailable",
    "CONGESTION": "unavailable",
}
_REASON_PRIORITY = ["no_answer", "busy", "unavailable"]


@dataclass(frozen=True)
class CallStarted:
    call_id: str
    did: str
    caller_id: str
    caller_name: str
    at: float


@dataclass(frozen=True)
class CallFinished:
    call_id: str
    did: str
    caller_id: str
    caller_name: str
    trunk_channel: str
    started_at: float
    ended_at: float
    outcome: str
    reason: str
    answered_at: float | None = None
    answered_by: str | None = None


@dataclass
class _Call:
    call_id: str
    did: str
    caller_id: str
    caller_name: str
    trunk_uniqueid: str
    trunk_channel: str
    started_at: float
    answered_at: float | None = None
    answered_by: str | None = None
    dial_reasons: set[str] = field(default_factory=set)
    open_dials: set[str] = field(default_factory=set)
    dialled: bool = False
    ended_at: float | None = None
    decide_at: float | None = None


def channel_endpoint(channel: str) -> tuple[str, str]:
    """('PJSIP', 'carrier') from 'PJSIP/carrier-0000001a'; ('Local', '100@ctx') for Local halves."""
    tech, _, rest = channel.partition("/")
    if tech.lower() == "local":
        return tech, rest.rsplit("-", 1)[0].split(";")[0]
    return tech, rest.rsplit("-", 1)[0] if "-" in rest else rest


def is_local(channel: str) -> bool:
    return channel.split("/", 1)[0].lower() in ("local", "message")


class CallTracker:
    """Sans-I/O state machine; feed it events and the time they arrived."""

    def __init__(self, trunks: list[str], contexts: list[str], grace: float = 0.5):
        self._trunks = {t.split("/", 1)[-1] for t in trunks}
        self._contexts = set(contexts)
        self._grace = grace
        self._calls: dict[str, _Call] = {}
        self._by_uniqueid: dict[str, str] = {}
        self._by_linkedid: dict[str, str] = {}

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    @property
    def tracked_channels(self) -> int:
        return len(self._by_uniqueid) + len(self._by_linkedid)

    def next_deadline(self) -> float | None:
        deadlines = [c.decide_at for c in self._calls.values() if c.decide_at is not None]
        return min(deadlines, default=None)

    def feed(self, event: Event, now: float) -> list[CallStarted | CallFinished]:
        """Apply one event; return what it started, plus every call whose grace has run out."""
        out: list[CallStarted | CallFinished] = []
        name = event.get("Event", "")
        if name == "Newchannel":
            started = self._maybe_open(event, now)
            if started:
                out.append(started)
        call = self._locate(event)
        if call is not None:
            handler = getattr(self, "_on_" + name, None)
            if handler is not None:
                handler(call, event, now)
        out.extend(self.expire(now))
        return out

    def expire(self, now: float) -> list[CallFinished]:
        """Finish every call whose trunk hung up more than `grace` seconds ago."""
        due = [c for c in self._calls.values() if c.decide_at is not None and c.decide_at <= now]
        due.sort(key=lambda c: c.decide_at)
        return [self._finish(call) for call in due]

    def reconcile(self, channels: list[Event], now: float) -> list[CallStarted | CallFinished]:
        """Align with a CoreShowChannels listing taken after (re)connecting.

        Inbound calls already ringing are opened (the listener started mid-call),
        and tracked calls whose trunk channel is gone are closed: their Hangup
        fell into the gap while AMI was down.
        """
        out: list[CallStarted | CallFinished] = []
        present = {c.get("Uniqueid", "") for c in channels}
        for call in self._calls.values():
            if call.decide_at is None and call.trunk_uniqueid not in present:
                call.ended_at = now
                call.decide_at = now + self._grace
        for channel in sorted(channels, key=lambda c: c.get("Uniqueid", "")):
            if channel.get("Uniqueid") == channel.get("Linkedid"):
                duration = _seconds(channel.get("Duration", ""))
                started = self._maybe_open({**channel, "Event": "Newchannel"}, now - duration)
                if started:
                    out.append(started)
        for channel in channels:
            call = self._locate(channel)
            if (call is not None and channel.get("BridgeId")
                    and channel.get("Uniqueid") != call.trunk_uniqueid
                    and not is_local(channel.get("Channel", ""))):
                self._mark_answered(call, channel.get("Channel", ""), now)
        out.extend(self.expire(now))
        return out

    # -- opening and locating calls ---------------------------------------

    def _is_inbound(self, event: Event) -> bool:
        tech, endpoint = channel_endpoint(event.get("Channel", ""))
        if is_local(event.get("Channel", "")):
            return False
        return endpoint in self._trunks or event.get("Context", "") in self._contexts

    def _maybe_open(self, event: Event, now: float) -> CallStarted | None:
        uniqueid = event.get("Uniqueid", "")
        linkedid = event.get("Linkedid", "") or uniqueid
        if not uniqueid or linkedid in self._by_linkedid or uniqueid != linkedid:
            return None  # a leg of a call we know, or a channel created by another call
        if not self._is_inbound(event):
            return None
        call = _Call(
            call_id=linkedid,
            did=event.get("Exten", ""),
            caller_id=event.get("CallerIDNum", ""),
            caller_name=event.get("CallerIDName", ""),
            trunk_uniqueid=uniqueid,
            trunk_channel=event.get("Channel", ""),
            started_at=now,
        )
        self._calls[call.call_id] = call
        self._by_uniqueid[uniqueid] = call.call_id
        self._by_linkedid[linkedid] = call.call_id
        return CallStarted(call.call_id, call.did, call.caller_id, call.caller_name, now)

    def _locate(self, event: Event) -> _Call | None:
        """The call this event belongs to, learning its new channels and linkedids on the way."""
        pairs = [(event.get("Uniqueid", ""), event.get("Linkedid", "")),
                 (event.get("DestUniqueid", ""), event.get("DestLinkedid", ""))]
        call_id = None
        for uniqueid, linkedid in pairs:
            call_id = call_id or self._by_uniqueid.get(uniqueid) or self._by_linkedid.get(linkedid)
        if call_id is None:
            return None
        for uniqueid, linkedid in pairs:
            if uniqueid:
                self._by_uniqueid.setdefault(uniqueid, call_id)
            if linkedid:
                self._by_linkedid.setdefault(linkedid, call_id)
        return self._calls[call_id]

    # -- event handlers ------------------------------------------------------

    def _mark_answered(self, call: _Call, by: str, now: float) -> None:
        if call.answered_at is None:
            call.answered_at = now
            call.answered_by = by

    def _on_NewCallerid(self, call: _Call, event: Event, now: float) -> None:
        if event.get("Uniqueid") == call.trunk_uniqueid and event.get("CallerIDNum"):
            call.caller_id = event["CallerIDNum"]
            call.caller_name = event.get("CallerIDName", call.caller_name)

    def _on_DialBegin(self, call: _Call, event: Event, now: float) -> None:
        call.dialled = True
        call.open_dials.add(event.get("DestUniqueid", ""))

    def _on_DialEnd(self, call: _Call, event: Event, now: float) -> None:
        call.open_dials.discard(event.get("DestUniqueid", ""))
        status = event.get("DialStatus", "")
        dest = event.get("DestChannel", "")
        if status == "ANSWER" and dest and not is_local(dest):
            self._mark_answered(call, dest, now)
        elif status in _DIAL_REASON:
            call.dial_reasons.add(_DIAL_REASON[status])

    def _on_BridgeEnter(self, call: _Call, event: Event, now: float) -> None:
        channel = event.get("Channel", "")
        if event.get("Uniqueid") != call.trunk_uniqueid and not is_local(channel):
            self._mark_answered(call, channel, now)

    def _on_AgentConnect(self, call: _Call, event: Event, now: float) -> None:
        self._mark_answered(call, event.get("DestChannel") or event.get("Interface", "agent"), now)

    def _on_Hangup(self, call: _Call, event: Event, now: float) -> None:
        uniqueid = event.get("Uniqueid", "")
        if uniqueid == call.trunk_uniqueid:
            call.ended_at = now
            call.decide_at = now + self._grace

    # -- the decision -------------------------------------------------------

    def _finish(self, call: _Call) -> CallFinished:
        self._calls.pop(call.call_id, None)
        for table in (self._by_uniqueid, self._by_linkedid):
            for key in [k for k, v in table.items() if v == call.call_id]:
                del table[key]
        if call.answered_at is not None:
            outcome, reason = ANSWERED, "answered"
        else:
            outcome, reason = MISSED, _missed_reason(call)
        return CallFinished(
            call_id=call.call_id, did=call.did, caller_id=call.caller_id,
            caller_name=call.caller_name, trunk_channel=call.trunk_channel,
            started_at=call.started_at, ended_at=call.ended_at or call.started_at,
            outcome=outcome, reason=reason,
            answered_at=call.answered_at, answered_by=call.answered_by,
        )


def _seconds(duration: str) -> float:
    """CoreShowChannel Duration 'HH:MM:SS' in seconds (0 when absent or odd)."""
    try:
        hours, minutes, seconds = (int(part) for part in duration.split(":"))
    except ValueError:
        return 0.0
    return hours * 3600 + minutes * 60 + seconds


def _missed_reason(call: _Call) -> str:
    for reason in _REASON_PRIORITY:
        if reason in call.dial_reasons:
            return reason
    if call.dialled:
        return "caller_hung_up"
    return "not_dialled"
