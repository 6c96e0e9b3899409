"""The call tracker: AMI events in, finished calls with an outcome and a reason out. No I/O.

An inbound call is opened by the Newchannel of a channel from a configured
trunk endpoint or inbound context. Every channel that shares its linkedid
belongs to it; the uniqueid -> call map follows linkedid changes when bridges
merge. It is over when the trunk channel hangs up; the decision waits `grace`
seconds because Asterisk does not order events of different types.

A call is answered only when a device (a channel that is neither the trunk
channel nor a Local half) is connected to the caller: in the caller's bridge,
or in a bridge joined to it through Local channel pairs. DialEnd ANSWER and
AgentConnect are not enough: a Local channel "answers" when its far half
reaches voicemail, and a cell phone's own voicemail answers the leg a
confirm-calls prompt then rejects, before any bridge with the caller exists.

A call nobody answered gets the reason of the furthest place it reached, in
this order: voicemail, a queue (the caller gave up, or the queue did), a
phone that rang out, was busy or unavailable, the caller hanging up while
phones rang, an IVR menu, and finally not_dialled. The tracker reports what
happened; per-number policy (voicemail counts as answered, short rings)
is applied afterwards by `textback.core.rules`.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Mapping

Event = Mapping[str, str]  # one AMI event; a repeated header (ChanVariable) is a list of its values

ANSWERED = "answered"
MISSED = "missed"

VOICEMAIL = "voicemail"
QUEUE_ABANDONED = "queue_abandoned"
QUEUE_TIMEOUT = "queue_timeout"
NO_ANSWER = "no_answer"
BUSY = "busy"
UNAVAILABLE = "unavailable"
CALLER_HUNG_UP = "caller_hung_up"
IVR_ABANDONED = "ivr_abandoned"
NOT_DIALLED = "not_dialled"

# Dial outcomes (DialEnd DialStatus, or the DIALSTATUS variable when Dial
# could not even create a channel) that say why a ringing leg ended without a human.
_DIAL_REASON = {
    "NOANSWER": NO_ANSWER,
    "BUSY": BUSY,
    "CHANUNAVAIL": UNAVAILABLE,
    "CONGESTION": UNAVAILABLE,
}
_DIAL_PRIORITY = [NO_ANSWER, BUSY, UNAVAILABLE]
# Channel variables the dialplan (the routing AGI, or the installer's own Set) uses to name the route.
_DIALPLAN_VARS = {"TEXTBACK_ROUTE", "TEXTBACK_HOURS"}
# Applications that mean the caller is in a menu, waiting for digits.
_IVR_APPS = {"background", "waitexten", "read"}


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
    route: str = ""  # TEXTBACK_ROUTE as the dialplan set it, "" when it did not
    dialplan_hours: str = ""  # TEXTBACK_HOURS: "open" or "closed" when the routing AGI decided
    selftest: bool = False  # the self-test's own call (see CallTracker.expect_selftest)


@dataclass(frozen=True)
class CallOverdue:
    """A call open longer than the limit with no Hangup seen: the tracker has let it go.

    Its Hangup fell into a gap the channel listing could not close (AMI
    dropped mid-call and CoreShowChannels failed), or the call is really that
    long. The CDR decides it; `as_seen` is the decision from the events the
    tracker had, for when no CDR can.
    """

    call_id: str
    started_at: float
    as_seen: CallFinished


class _Connections:
    """Which channels are joined to which, through bridges and Local pairs (union-find).

    Nodes are 'u:<uniqueid>', 'b:<bridge id>' and 'l:<Local pair name>'. A
    bridge is never forgotten when a channel leaves it, so the answer does
    not depend on the order AMI delivers the enters and leaves. The find is
    iterative, with path compression, and the union by size: a page group
    of thousands of Local channels in one bridge keeps every tree shallow
    and never nears Python's recursion limit.
    """

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}
        self._size: dict[str, int] = {}  # root -> nodes in its component
        self._device: dict[str, str] = {}  # root -> a device channel in that component

    def _root(self, node: str) -> str:
        parent = self._parent.setdefault(node, node)
        if parent == node:
            return node
        root = parent
        while (up := self._parent[root]) != root:
            root = up
        while node != root:  # compress: every node on the path now points at the root
            self._parent[node], node = root, self._parent[node]
        return root

    def join(self, a: str, b: str) -> None:
        root_a, root_b = self._root(a), self._root(b)
        if root_a == root_b:
            return
        size_a, size_b = self._size.get(root_a, 1), self._size.get(root_b, 1)
        if size_a < size_b:
            root_a, root_b = root_b, root_a
        self._parent[root_b] = root_a
        self._size[root_a] = size_a + size_b
        self._size.pop(root_b, None)
        if root_b in self._device:
            self._device.setdefault(root_a, self._device.pop(root_b))

    def add_device(self, node: str, channel: str) -> None:
        self._device.setdefault(self._root(node), channel)

    def device_joined_to(self, node: str) -> str | None:
        return self._device.get(self._root(node))


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
    connections: _Connections = field(default_factory=_Connections)
    dialled: bool = False
    dial_reasons: set[str] = field(default_factory=set)
    voicemail: bool = False
    ivr: bool = False
    queued: bool = False
    queue_status: str = ""  # QUEUESTATUS: empty while waiting, and when the caller hung up there
    ended_at: float | None = None
    decide_at: float | None = None
    dialplan_vars: dict[str, str] = field(default_factory=dict)
    selftest: bool = False
    opened: int = 0  # the order calls were opened in: calls due at one moment finish in it
    # The uniqueids and linkedids that point at this call, forgotten with it.
    keys: list[tuple[dict[str, str], str]] = field(default_factory=list)


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

    def __init__(self, trunks: list[str], contexts: list[str], grace: float = 0.5,
                 max_open: float = 4 * 3600):
        self._trunks = {t.split("/", 1)[-1] for t in trunks}
        self._contexts = set(contexts)
        self._grace = grace
        self._max_open = max_open
        self._calls: dict[str, _Call] = {}
        self._by_uniqueid: dict[str, str] = {}
        self._by_linkedid: dict[str, str] = {}
        self._selftests: set[str] = set()
        # (decide_at, opened, call id) of every call in its grace period, soonest first; an
        # entry whose call has gone or been given another deadline is dropped when reached.
        self._deadlines: list[tuple[float, int, str]] = []
        # (started_at + max_open, opened, call id) of every open call, soonest first: when a
        # call with no Hangup seen is let go. An entry whose call has gone is dropped when reached.
        self._time_limits: list[tuple[float, int, str]] = []
        self._opened = itertools.count()

    def expect_selftest(self, uniqueid: str) -> None:
        """The self-test originates a Local channel whose ';2' half, with this uniqueid, runs
        the inbound context: open a call for it as if it came from the trunk.

        A Local half is never inbound otherwise, and its linkedid is its ';1'
        half's uniqueid, so the self-test names it in advance (Originate's
        OtherChannelId).
        """
        self._selftests.add(uniqueid)

    def forget_selftest(self, uniqueid: str) -> None:
        """The self-test is over: a channel with this uniqueid is no longer expected."""
        self._selftests.discard(uniqueid)

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    @property
    def tracked_channels(self) -> int:
        return len(self._by_uniqueid) + len(self._by_linkedid)

    def is_tracking(self, call_id: str) -> bool:
        """Whether the call is still open here: ringing, talking, or in its grace period."""
        return call_id in self._calls

    def next_deadline(self) -> float | None:
        """When expire() next has something to do: a grace period or a time limit running out."""
        self._drop_stale_deadlines()
        self._drop_stale_time_limits()
        soonest = [queue[0][0] for queue in (self._deadlines, self._time_limits) if queue]
        return min(soonest) if soonest else None

    def feed(self, event: Event, now: float) -> list[CallStarted | CallFinished | CallOverdue]:
        """Apply one event; return what it started, plus every call whose grace has run out."""
        out: list[CallStarted | CallFinished | CallOverdue] = []
        name = event.get("Event", "")
        if name == "Newchannel":
            started = self._maybe_open(event, now)
            if started:
                out.append(started)
        call = self._locate(event)
        if call is not None and call.selftest and (
                event.get("Uniqueid") or event.get("DestUniqueid")) == call.call_id:
            call = None  # the Originate's own ';1' half (and its dial): the rig, not the call
        if call is not None:
            self._pair_local_halves(call, event)
            self._note_dialplan_vars(call, event)
            handler = getattr(self, "_on_" + name, None)
            if handler is not None:
                handler(call, event, now)
            self._check_answered(call, now)
        out.extend(self.expire(now))
        return out

    def expire(self, now: float) -> list[CallFinished | CallOverdue]:
        """Finish every call whose trunk hung up more than `grace` seconds ago, and let go of
        every call open longer than `max_open` with no Hangup seen."""
        finished: list[CallFinished | CallOverdue] = []
        self._drop_stale_deadlines()
        while self._deadlines and self._deadlines[0][0] <= now:
            finished.append(self._finish(self._calls[heapq.heappop(self._deadlines)[2]]))
            self._drop_stale_deadlines()
        self._drop_stale_time_limits()
        while self._time_limits and self._time_limits[0][0] <= now:
            call = self._calls[heapq.heappop(self._time_limits)[2]]
            call.ended_at = now
            finished.append(CallOverdue(call.call_id, call.started_at, self._finish(call)))
            self._drop_stale_time_limits()
        return finished

    def _decide_at(self, call: _Call, at: float) -> None:
        call.decide_at = at
        heapq.heappush(self._deadlines, (at, call.opened, call.call_id))

    def _drop_stale_time_limits(self) -> None:
        """Drop limits of calls that finished, or are in their grace period and will."""
        while self._time_limits:
            call = self._calls.get(self._time_limits[0][2])
            if call is not None and call.decide_at is None:
                return
            heapq.heappop(self._time_limits)

    def _drop_stale_deadlines(self) -> None:
        while self._deadlines:
            at, _, call_id = self._deadlines[0]
            call = self._calls.get(call_id)
            if call is not None and call.decide_at == at:
                return
            heapq.heappop(self._deadlines)

    def reconcile(self, channels: list[Event], now: float) -> list[CallStarted | CallFinished | CallOverdue]:
        """Align with a CoreShowChannels listing taken after (re)connecting.

        Inbound calls already in progress are opened (the listener started
        mid-call) and seeded with what the listing shows: legs that ring,
        bridges, the application each channel runs. Tracked calls whose trunk
        channel is gone are closed: their Hangup fell into the gap while AMI
        was down.
        """
        out: list[CallStarted | CallFinished | CallOverdue] = []
        present = {c.get("Uniqueid", "") for c in channels}
        for call in self._calls.values():
            if call.decide_at is None and call.trunk_uniqueid not in present:
                call.ended_at = now
                self._decide_at(call, now + self._grace)
        for channel in sorted(channels, key=lambda c: c.get("Uniqueid", "")):
            if channel.get("Uniqueid") == channel.get("Linkedid"):
                duration = _seconds(channel.get("Duration", ""))
                started = self._maybe_open({**channel, "Event": "Newchannel"}, now - duration)
                if started:
                    out.append(started)
        for channel in channels:
            call = self._locate(channel)
            if call is None:
                continue
            self._pair_local_halves(call, channel)
            self._note_dialplan_vars(call, channel)
            if channel.get("Uniqueid") != call.trunk_uniqueid:
                call.dialled = True  # any other channel of the call is a leg something dialled
            self._on_Newexten(call, channel, now)  # the application it runs now
            if channel.get("BridgeId"):
                self._on_BridgeEnter(call, {**channel, "BridgeUniqueid": channel["BridgeId"]}, now)
        for call in self._calls.values():
            self._check_answered(call, now)
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
        selftest = uniqueid in self._selftests
        if selftest:
            self._selftests.discard(uniqueid)
        elif not uniqueid or linkedid in self._by_linkedid or uniqueid != linkedid:
            return None  # a leg of a call we know, or a channel created by another call
        elif not self._is_inbound(event):
            return None
        call = _Call(
            call_id=linkedid,
            did=event.get("Exten", ""),
            caller_id=event.get("CallerIDNum", ""),
            caller_name=event.get("CallerIDName", ""),
            trunk_uniqueid=uniqueid,
            trunk_channel=event.get("Channel", ""),
            started_at=now,
            selftest=selftest,
            opened=next(self._opened),
        )
        self._calls[call.call_id] = call
        heapq.heappush(self._time_limits, (now + self._max_open, call.opened, call.call_id))
        self._learn(call, self._by_uniqueid, uniqueid)
        self._learn(call, self._by_linkedid, linkedid)
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
        call = self._calls[call_id]
        for uniqueid, linkedid in pairs:
            if uniqueid and uniqueid not in self._by_uniqueid:
                self._learn(call, self._by_uniqueid, uniqueid)
            if linkedid and linkedid not in self._by_linkedid:
                self._learn(call, self._by_linkedid, linkedid)
        return call

    @staticmethod
    def _learn(call: _Call, table: dict[str, str], key: str) -> None:
        table[key] = call.call_id
        call.keys.append((table, key))

    # -- who is connected to the caller --------------------------------------

    @staticmethod
    def _pair_local_halves(call: _Call, event: Event) -> None:
        """Join each Local half named in the event to its pair: ';1' and ';2' carry one call."""
        for channel_key, uniqueid_key in (("Channel", "Uniqueid"), ("DestChannel", "DestUniqueid")):
            channel, uniqueid = event.get(channel_key, ""), event.get(uniqueid_key, "")
            if uniqueid and channel.lower().startswith("local/"):
                call.connections.join("u:" + uniqueid, "l:" + channel.rsplit(";", 1)[0])

    def _check_answered(self, call: _Call, now: float) -> None:
        if call.answered_at is None:
            device = call.connections.device_joined_to("u:" + call.trunk_uniqueid)
            if device is not None:
                call.answered_at = now
                call.answered_by = device

    @staticmethod
    def _note_dialplan_vars(call: _Call, event: Event) -> None:
        """Keep the route variables the dialplan set on the caller's channel.

        They arrive as ChanVariable headers (manager.conf channelvars) on
        every event of the channel, and as VarSet events when set.
        """
        if event.get("Uniqueid") != call.trunk_uniqueid:
            return
        values = event.get("ChanVariable", [])
        for item in [values] if isinstance(values, str) else values:
            name, _, value = item.partition("=")
            if name in _DIALPLAN_VARS and value:
                call.dialplan_vars[name] = value
        if event.get("Event") == "VarSet":
            name = event.get("Variable", "").lstrip("_")  # "__X" marks a variable the legs inherit
            if name in _DIALPLAN_VARS and event.get("Value"):
                call.dialplan_vars[name] = event["Value"]

    # -- event handlers ------------------------------------------------------

    def _on_NewCallerid(self, call: _Call, event: Event, now: float) -> None:
        if event.get("Uniqueid") == call.trunk_uniqueid and event.get("CallerIDNum"):
            call.caller_id = event["CallerIDNum"]
            call.caller_name = event.get("CallerIDName", call.caller_name)

    def _on_DialBegin(self, call: _Call, event: Event, now: float) -> None:
        call.dialled = True

    def _on_DialEnd(self, call: _Call, event: Event, now: float) -> None:
        call.dialled = True
        reason = _DIAL_REASON.get(event.get("DialStatus", ""))
        if reason:
            call.dial_reasons.add(reason)

    def _on_VarSet(self, call: _Call, event: Event, now: float) -> None:
        variable, value = event.get("Variable", ""), event.get("Value", "")
        if variable == "DIALSTATUS" and value in _DIAL_REASON:
            call.dial_reasons.add(_DIAL_REASON[value])  # also when Dial created no channel at all
        elif variable == "QUEUESTATUS" and value:
            call.queue_status = value  # TIMEOUT, FULL, JOINEMPTY, ...: the queue let the caller go

    def _on_Newexten(self, call: _Call, event: Event, now: float) -> None:
        application = event.get("Application", "").lower()
        if application == "voicemail":
            call.voicemail = True  # on any channel: FreePBX reaches voicemail through Local halves
        elif application == "queue":
            call.queued = True
        elif application in _IVR_APPS and event.get("Uniqueid") == call.trunk_uniqueid:
            call.ivr = True  # only the caller's own channel: a confirm-calls prompt also uses Read

    def _on_BridgeEnter(self, call: _Call, event: Event, now: float) -> None:
        node = "u:" + event.get("Uniqueid", "")
        call.connections.join(node, "b:" + event.get("BridgeUniqueid", ""))
        channel = event.get("Channel", "")
        if event.get("Uniqueid") != call.trunk_uniqueid and not is_local(channel):
            call.connections.add_device(node, channel)

    def _on_Hangup(self, call: _Call, event: Event, now: float) -> None:
        uniqueid = event.get("Uniqueid", "")
        if uniqueid == call.trunk_uniqueid:
            call.ended_at = now
            self._decide_at(call, now + self._grace)

    # -- the decision -------------------------------------------------------

    def _finish(self, call: _Call) -> CallFinished:
        self._calls.pop(call.call_id, None)
        for table, key in call.keys:
            if table.get(key) == call.call_id:
                del table[key]
        if call.answered_at is not None:
            outcome, reason = ANSWERED, ANSWERED
        else:
            outcome, reason = MISSED, _missed_reason(call)
        return CallFinished(
            call_id=call.call_id, did=call.did, caller_id=call.caller_id,
            caller_name=call.caller_name, trunk_channel=call.trunk_channel,
            started_at=call.started_at, ended_at=call.ended_at or call.started_at,
            outcome=outcome, reason=reason,
            answered_at=call.answered_at, answered_by=call.answered_by,
            route=call.dialplan_vars.get("TEXTBACK_ROUTE", ""),
            dialplan_hours=_hours_state(call.dialplan_vars.get("TEXTBACK_HOURS", "")),
            selftest=call.selftest,
        )


def _seconds(duration: str) -> float:
    """CoreShowChannel Duration 'HH:MM:SS' in seconds (0 when absent or odd)."""
    try:
        hours, minutes, seconds = (int(part) for part in duration.split(":"))
    except ValueError:
        return 0.0
    return hours * 3600 + minutes * 60 + seconds


def _hours_state(value: str) -> str:
    """"open" or "closed"; anything else (the AGI's "unknown" on a fallback) leaves the decision to the rules."""
    return value if value in ("open", "closed") else ""


def _missed_reason(call: _Call) -> str:
    """The furthest place an unanswered call reached."""
    if call.voicemail:
        return VOICEMAIL
    if call.queued:
        if call.queue_status == "":
            return QUEUE_ABANDONED  # QueueCallerAbandon cannot tell: Asterisk sends it on timeouts too
        return QUEUE_TIMEOUT
    for reason in _DIAL_PRIORITY:
        if reason in call.dial_reasons:
            return reason
    if call.dialled:
        return CALLER_HUNG_UP
    if call.ivr:
        return IVR_ABANDONED
    return NOT_DIALLED
