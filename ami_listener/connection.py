"""A resilient AMI connection around panoramisk 1.4.

panoramisk does the framing and action/response matching; this wrapper
closes its gaps:

* Keepalive. panoramisk's ping is fire-and-forget and never notices a
  half-open TCP connection. Here a Ping must be answered within
  `ping_timeout`, or the transport is aborted so panoramisk reconnects;
  unless bytes kept arriving meanwhile. Then the link is alive and the
  answer waits behind the events still to be read (a burst of calls, a
  busy host): aborting would throw those events away, so the reader is
  told it is behind and the link is kept.
* Backoff. Reconnect delays double up to `reconnect_max`, and reset after
  a successful login.
* Login failures are reported (panoramisk only retries silently). A peer
  that accepts TCP but sends no banner or no Login answer within
  `login_timeout` is dropped and retried with backoff (panoramisk would wait
  forever).
* One bad message never loses the rest of a read, and a repeated header is
  never a list. panoramisk turns a repeated header into a list, and a list
  where an id belongs (a repeated Event or ActionID) raises inside its read
  handler, losing every message after it in that TCP chunk. A message that
  repeats a header naming one thing (an id: SINGLE_VALUED) is dropped with
  one log line. Any other repeated header keeps its first value, with one
  log line: Asterisk writes its own fields before any free text (AppData, a
  UserEvent's fields), so a line a value smuggled in always comes after the
  genuine one. Only the channel variables (`ChanVariable`, `DestChanVariable`,
  ...: one line per variable) stay lists. A dropped message of a logged-in
  link is told to `on_dropped`: it may have been a call's Newchannel or
  Hangup, so the daemon lists the channels again, as after a login.
* Names as the caller sent them. Asterisk C-escapes (ast_escape_c) the
  caller and connected-line names and the channel variables' values in every
  channel snapshot of an event (main/manager_channels.c): `O'Brien` arrives
  as `O\\'Brien`. event_fields() undoes exactly that, once, in those fields.
* Ready is more than logged in. AMI answers logins while Asterisk is still
  loading its modules; a MessageSend then fails with "Message technology
  not found". `ready` waits for the FullyBooted event, which Asterisk sends
  right after the login when it has finished starting, or to every session
  once it does (only to a user that reads `system` events). Without one
  within `boot_wait` seconds of the login, it is assumed, with a warning.
* No silent re-sends. panoramisk queues unanswered actions and re-sends
  them after a reconnect (on FullyBooted). A re-sent MessageSend would be a
  second text, so pending actions fail at once with AmiDisconnected instead.
* Decoding. panoramisk decodes each TCP chunk on its own, dropping any
  UTF-8 character split across chunks; here an incremental decoder keeps
  them. A peer that never ends a message cannot grow the buffer unbounded.
* Header injection. Action values containing CR or LF are refused.
* Originate always goes out with `Async: true`; panoramisk cannot match a
  synchronous Originate's response (its issue #90).
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import re
import ssl
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message
from pydantic import SecretStr

log = logging.getLogger("textback.ami")
# panoramisk logs every reconnect attempt at ERROR; this module reports them once, with the backoff.
logging.getLogger("textback.ami.panoramisk").setLevel(logging.CRITICAL)

EOM = "\r\n\r\n"
MAX_BUFFER = 1 << 20
# Headers that name one thing: a message carrying one of them twice is not trusted.
SINGLE_VALUED = frozenset({"event", "response", "actionid", "uniqueid", "linkedid", "destuniqueid",
                           "destlinkedid", "channel", "destchannel", "userevent"})
# The one header Asterisk repeats: a channel's variables (manager.conf channelvars), one line
# each, for every channel snapshot in an event ("DestChanVariable", "LocalOneChanVariable", ...).
LIST_VALUED_SUFFIX = "chanvariable"

# ast_escape_c's escapes (main/utils.c escape_sequences), undone. A backslash followed by
# anything else is left as it came: ast_escape_c never writes one, so it was not escaped.
_C_ESCAPE = re.compile(r"\\([abfnrtv\\'\"?])")
_C_UNESCAPED = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
                "\\": "\\", "'": "'", '"': '"', "?": "?"}
# Events that carry CallerIDName or ConnectedLineName written raw, not from a channel snapshot
# (main/manager.c OriginateResponse, apps/app_meetme.c MeetmeList, apps/app_queue.c QueueEntry).
_RAW_NAME_EVENTS = frozenset({"OriginateResponse", "MeetmeList", "QueueEntry"})


class AmiError(Exception):
    """Asterisk answered an action with an error."""


class AmiDisconnected(AmiError):
    """The action could not be sent, or the connection dropped before an answer."""


class AmiTimeout(AmiError):
    """No answer in time; the action may or may not have been carried out."""


class LoginRefused(AmiError):
    pass


def event_fields(message: Message) -> dict[str, Any]:
    """A panoramisk Message as a plain dict, keys as Asterisk wrote them, names unescaped.

    Read from the (key, value) pairs the Message keeps by lower-cased key: its
    Mapping interface (items()) costs a Python call per header, which was a
    third of the cost of an event (tests/test_ami_wire.py checks the two agree).
    """
    return unescaped_names(dict(message._store.values()))


def unescaped_names(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` with Asterisk's C-escaping undone, once, where Asterisk applies it.

    ast_manager_build_channel_state_string_prefix (main/manager_channels.c)
    escapes with ast_escape_c_alloc the caller ID name, the connected line
    name and each channel variable's value of every channel snapshot it
    writes, under any prefix ("CallerIDName", "DestConnectedLineName",
    "LocalOneChanVariable"...). Nothing else in an event is escaped, and a
    few events write a name raw (_RAW_NAME_EVENTS; the Status event's
    EffectiveConnectedLineName). Takes a recorded trace's raw event too.
    """
    event = fields.get("Event")
    if event.__class__ is str and event in _RAW_NAME_EVENTS:
        return fields
    keys = fields.keys()
    names, variables = _escaped_names & keys, _escaped_variables & keys
    if not _classified.issuperset(keys):
        new_names, new_variables = _classify(keys - _classified)
        names |= new_names
        variables |= new_variables
    for name in names:
        value = fields[name]
        if value.__class__ is str and "\\" in value:
            fields[name] = _unescape_c(value)
    for name in variables:
        value = fields[name]
        if value.__class__ is list:
            fields[name] = [_unescape_variable(v) if "\\" in v else v for v in value]
        elif "\\" in value:
            fields[name] = _unescape_variable(value)
    return fields


# Header names sorted once each into escaped names, escaped variables, or neither: set
# operations in C per event rather than a Python test per header. A peer inventing header
# names cannot grow these past _CLASSIFIED_MAX; later names are sorted every time.
_classified: set[str] = set()
_escaped_names: set[str] = set()
_escaped_variables: set[str] = set()
_CLASSIFIED_MAX = 4096


def _classify(names: set[str]) -> tuple[set[str], set[str]]:
    """(escaped names, escaped variables) among `names`, remembered while there is room."""
    escaped_names = {name for name in names if name.endswith(("CallerIDName", "ConnectedLineName"))
                     and name != "EffectiveConnectedLineName"}
    escaped_variables = {name for name in names if name.endswith("ChanVariable")}
    if len(_classified) + len(names) <= _CLASSIFIED_MAX:
        _classified.update(names)
        _escaped_names.update(escaped_names)
        _escaped_variables.update(escaped_variables)
    return escaped_names, escaped_variables


def _unescape_c(text: str) -> str:
    return _C_ESCAPE.sub(lambda match: _C_UNESCAPED[match.group(1)], text)


def _unescape_variable(item: str) -> str:
    """'NAME=value' with its value unescaped (Asterisk writes the name as it is)."""
    name, equals, value = item.partition("=")
    return name + equals + _unescape_c(value)


def _settle_repeats(message: Message) -> tuple[list[str], list[str]]:
    """Make every repeated header one value, in place: (repeated ids, headers kept first).

    panoramisk made each repeated header a list. A repeated id (SINGLE_VALUED)
    is left for the caller to drop the message; the channel variables stay
    lists; any other header keeps its first value.
    """
    pairs = message._store  # lower-cased name -> (name as written, value), as in event_fields()
    ids: list[str] = []
    kept_first: list[str] = []
    for key in [key for key, (_, value) in pairs.items() if value.__class__ is list]:
        name, value = pairs[key]
        if key.endswith(LIST_VALUED_SUFFIX):
            continue
        if key in SINGLE_VALUED:
            ids.append(name)
        else:
            pairs[key] = (name, value[0])
            kept_first.append(name)
    return sorted(ids), sorted(kept_first)


class _Protocol(AMIProtocol):
    """AMIProtocol with incremental decoding, a bounded buffer and fail-fast on close."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._buffer = ""

    def data_received(self, data: bytes) -> None:
        if self.factory is not None:  # set once panoramisk has the connection; the banner may come first
            self.factory.data_arrived()
        self._buffer += self._decoder.decode(data)
        if self.version is None and self._buffer.startswith("Asterisk Call Manager/"):
            banner, _, self._buffer = self._buffer.partition("\r\n")
            self.version = banner.partition("/")[2].strip()
        *blocks, self._buffer = self._buffer.split(EOM)
        if len(self._buffer) > MAX_BUFFER:
            log.error("AMI peer sent %d bytes without ending a message; reconnecting",
                      len(self._buffer))
            self._buffer = ""
            self.transport.abort()
            return
        for block in blocks:
            block = block.strip()
            if not block:
                continue
            message = Message.from_line(block)
            if message is None:
                self.factory.malformed(block, "no Event or Response")
                continue
            repeated, kept_first = _settle_repeats(message)
            if repeated:
                self.factory.malformed(block, f"repeated {', '.join(repeated)}")
                continue
            if kept_first:
                self.factory.repeated(message, kept_first)
            try:
                self.handle_message(message)
            except Exception as exc:  # noqa: BLE001 - one bad message must not lose the rest
                self.factory.malformed(block, f"{type(exc).__name__} while handling it")

    def close(self) -> None:
        for action in list(self.responses.values()):
            if not action.future.done():
                action.future.set_exception(AmiDisconnected("AMI connection closed"))
        self.responses.clear()
        super().close()


class _Manager(Manager):
    """panoramisk Manager that tells its owner about connection attempts."""

    def __init__(self, owner: "AmiConnection", **config: Any):
        super().__init__(**config)
        self._owner = owner

    def connection_made(self, f: asyncio.Future) -> None:
        if not f.cancelled() and f.exception() is not None:
            self.reconnect_timeout = self._owner._next_backoff(f.exception())
        super().connection_made(f)

    def connection_lost(self, exc: Exception | None) -> None:
        self.reconnect_timeout = self._owner._next_backoff(exc)
        super().connection_lost(exc)

    def login(self, future: asyncio.Future) -> bool:
        # The Login's future fails when the link drops before an answer; panoramisk
        # would raise inside its callback. The reconnect is already under way.
        if future.cancelled() or future.exception() is not None:
            self.authenticated_future = None
            return False
        return super().login(future)

    def dispatch(self, event: Message) -> list[str]:
        """Every event to the owner directly: panoramisk's pattern matching, for a catch-all
        pattern, cost as much as parsing the event. Its own one handler (FullyBooted: the
        actions awaiting a connection) still gets its event."""
        self._owner._dispatch(self, event)
        if event._store.get("event", ("", ""))[1] == "FullyBooted":
            return super().dispatch(event)
        return []

    def data_arrived(self) -> None:
        self._owner.last_data_at = time.monotonic()

    def malformed(self, block: str, why: str) -> None:
        self._owner.malformed += 1
        log.warning("ignored a malformed AMI message (%d bytes, %s)", len(block), why)
        self._owner._tell_dropped(why)

    def repeated(self, message: Message, names: list[str]) -> None:
        self._owner.repeated += 1
        log.warning("AMI %s event repeated %s; kept the first value of each",
                    _printable(message._store.get("event", ("", "?"))[1]),
                    ", ".join(_printable(name) for name in names))


EventHandler = Callable[[dict[str, Any]], None]
DroppedHandler = Callable[[str], None]
LoginHandler = Callable[[], Awaitable[None] | None]
ReadyHandler = Callable[[], Awaitable[None] | None]
StateHandler = Callable[[bool], None]


class AmiConnection:
    def __init__(self, host: str, port: int, username: str, secret: SecretStr, *,
                 on_event: EventHandler, on_login: LoginHandler | None = None,
                 on_state: StateHandler | None = None, on_ready: ReadyHandler | None = None,
                 on_dropped: DroppedHandler | None = None,
                 on_behind: Callable[[], None] | None = None,
                 use_tls: bool = False, tls_verify: bool = True,
                 ping_interval: float = 10.0, ping_timeout: float = 5.0,
                 login_timeout: float = 10.0, reconnect_max: float = 60.0,
                 boot_wait: float = 15.0, record_to: Path | None = None):
        self.host, self.port, self.username = host, port, username
        self._on_event = on_event
        self._on_login = on_login
        self._on_state = on_state  # told True at each login, False when a logged-in link is lost
        self._on_ready = on_ready  # once per login, when Asterisk has finished starting
        # told why, each time a message of a logged-in link is dropped: the event it was may
        # have been a call's, so the caller lists the channels again (as after a login)
        self._on_dropped = on_dropped
        self._on_behind = on_behind  # told each time a Ping's answer waited behind events
        self._boot_wait = boot_wait
        self._boot_timer: asyncio.TimerHandle | None = None
        self._booted = False  # FullyBooted seen on this TCP connection (it may precede the login's answer)
        self._ready = asyncio.Event()
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._login_timeout = login_timeout
        self._login_timer: asyncio.TimerHandle | None = None
        self._reconnect_max = reconnect_max
        self._backoff = 0.5
        self._record = record_to.open("a", encoding="utf-8") if record_to else None
        self._record_start = time.monotonic()
        self.malformed = 0
        self.repeated = 0  # messages that repeated a header not an id: the first value kept
        self.logins = 0
        self.last_data_at = 0.0  # monotonic: the last bytes read from Asterisk
        self.behind = 0  # Pings answered late while events kept arriving: the reader was behind
        self.last_login_error: str | None = None
        self._logged_in = asyncio.Event()
        self._keepalive: asyncio.Task | None = None
        self._closed = False
        tls = _tls_context(use_tls, tls_verify)
        self._manager = _Manager(
            self, host=host, port=port, username=username,
            secret=secret.get_secret_value(), ssl=tls, events="on",
            ping_delay=10**9, ping_interval=10**9, reconnect_timeout=1,
            protocol_factory=_Protocol, loop=asyncio.get_running_loop(),
            on_connect=self._connected, on_disconnect=self._disconnected,
            log=logging.getLogger("textback.ami.panoramisk"),
        )

    @property
    def logged_in(self) -> bool:
        return self._logged_in.is_set()

    @property
    def ready(self) -> bool:
        """Logged in, and Asterisk has finished loading its modules (FullyBooted)."""
        return self._ready.is_set()

    def start(self) -> None:
        self._manager.connect()
        self._keepalive = asyncio.create_task(self._keep_alive(), name="ami-keepalive")

    async def wait_logged_in(self, timeout: float) -> None:
        await asyncio.wait_for(self._logged_in.wait(), timeout)

    async def close(self) -> None:
        self._closed = True
        for timer in (self._login_timer, self._boot_timer):
            if timer is not None:
                timer.cancel()
        keepalive, self._keepalive = self._keepalive, None
        if keepalive is not None:
            keepalive.cancel()
            if keepalive is not asyncio.current_task():  # ended, its Ping's future with it,
                await asyncio.gather(keepalive, return_exceptions=True)  # before the link goes
        self._manager.connection_lost = lambda exc: None  # no reconnect after an orderly close
        self._manager.close()
        if self._record:
            self._record.close()

    async def action(self, fields: dict[str, str], timeout: float = 5.0) -> Message | list[Message]:
        """Send one action and wait for its response; raise AmiError on failure.

        Actions that answer with an event list (CoreShowChannels, ...) return
        the whole list, response first.
        """
        for key, value in fields.items():
            if any(ch in str(key) + str(value) for ch in "\r\n"):
                raise ValueError(f"AMI action field {key!r} contains a line break")
        if not self.logged_in:
            raise AmiDisconnected("not logged in to AMI")
        fields = dict(fields)
        if fields.get("Action", "").lower() == "originate":
            fields["Async"] = "true"  # panoramisk raises KeyError on a synchronous Originate
        future = self._manager.send_action(fields)
        try:
            response = await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            # The answer may still come, or the link close (failing it): nobody waits now.
            future.add_done_callback(_forget)
            raise AmiTimeout(f"no answer to {fields.get('Action')} within {timeout:g} s") from None
        first = response[0] if isinstance(response, list) else response
        if first.get("Response") != "Success":
            raise AmiError(first.get("Message") or first.get("Response") or "error")
        if isinstance(response, list):
            for event in response[1:]:  # e.g. the CoreShowChannels listing a replay must reconcile
                self._write_record(dict(event._store.values()))
        return response

    # -- panoramisk callbacks ------------------------------------------------------

    def _next_backoff(self, exc: BaseException | None) -> float:
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self._reconnect_max)
        if not self._closed:
            reason = exc or ("login refused" if self.last_login_error else "connection closed")
            log.warning("AMI %s:%d unavailable (%s); retrying in %.1f s",
                        self.host, self.port, reason, delay)
        return delay

    def _connected(self, manager: Manager) -> None:
        self._booted = False
        future = manager.authenticated_future
        if future is not None:
            future.add_done_callback(self._login_answered)
            self._login_timer = asyncio.get_running_loop().call_later(
                self._login_timeout, self._login_overdue, manager.protocol)

    def _login_overdue(self, protocol: _Protocol) -> None:
        """TCP is up but no banner or Login answer came: drop the link so it is retried."""
        if self.logged_in or protocol is not self._manager.protocol or protocol.transport is None:
            return
        what = "no banner" if protocol.version is None else "no answer to the Login"
        log.warning("AMI %s:%d accepted the connection but sent %s within %.1f s; reconnecting",
                    self.host, self.port, what, self._login_timeout)
        protocol.transport.abort()

    def _login_answered(self, future: asyncio.Future) -> None:
        if self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None
        if future.cancelled() or future.exception() is not None:
            return
        response = future.result()
        if response.get("Response") == "Success":
            self._backoff = 0.5
            self.logins += 1
            self.last_login_error = None
            self._logged_in.set()
            log.info("AMI logged in to %s:%d as %s", self.host, self.port, self.username)
            self._tell_state(True)
            if self._on_login:
                _run_handler(self._on_login())
            if self._booted:
                self._become_ready()
            else:
                self._boot_timer = asyncio.get_running_loop().call_later(
                    self._boot_wait, self._boot_overdue)
        else:
            self.last_login_error = response.get("Message") or "login refused"
            log.error("AMI login as %r refused by %s:%d: %s",
                      self.username, self.host, self.port, self.last_login_error)

    def _booted_now(self) -> None:
        self._booted = True
        if self.logged_in and not self.ready:
            self._become_ready()

    def _boot_overdue(self) -> None:
        self._boot_timer = None
        if self.logged_in and not self.ready:
            log.warning("AMI: no FullyBooted within %.0f s of the login; sending anyway. Either "
                        "Asterisk is still starting, or the AMI user %r lacks `read = system` "
                        "(textback init's manager.conf block has it)", self._boot_wait, self.username)
            self._become_ready()

    def _become_ready(self) -> None:
        if self._boot_timer is not None:
            self._boot_timer.cancel()
            self._boot_timer = None
        self._ready.set()
        if self._on_ready:
            _run_handler(self._on_ready())

    def _disconnected(self, manager: Manager, exc: Exception | None) -> None:
        self._booted = False
        self._ready.clear()
        if self._boot_timer is not None:
            self._boot_timer.cancel()
            self._boot_timer = None
        if self.logged_in:
            self._logged_in.clear()
            self._tell_state(False)

    def _tell_dropped(self, why: str) -> None:
        if self._on_dropped is None or not self.logged_in:
            return  # before the login, the login's own listing covers whatever was lost
        try:
            self._on_dropped(why)
        except Exception:  # noqa: BLE001 - the connection must carry on whatever the handler does
            log.exception("the AMI dropped-message handler failed")

    def _tell_state(self, logged_in: bool) -> None:
        if self._on_state is None:
            return
        try:
            self._on_state(logged_in)
        except Exception:  # noqa: BLE001 - the connection must carry on whatever the handler does
            log.exception("the AMI state handler failed")

    def _dispatch(self, manager: Manager, message: Message) -> None:
        self._write_record(dict(message._store.values()))  # as Asterisk wrote it: replays unescape
        event = event_fields(message)
        if event.get("Event") == "FullyBooted":
            self._booted_now()
        try:
            self._on_event(event)
        except Exception:
            log.exception("event handler failed on %s", event.get("Event"))

    def _write_record(self, event: dict[str, Any]) -> None:
        """Append one event to the trace file (--record-ami), with its time since connecting."""
        if self._record:
            event_with_time = {"_t": round(time.monotonic() - self._record_start, 6), **event}
            self._record.write(json.dumps(event_with_time) + "\n")
            self._record.flush()

    async def _keep_alive(self) -> None:
        """Ping on a timer; a missing Pong on a silent link means a dead one, so abort and
        reconnect. A link that kept delivering is alive: its Pong is queued behind them."""
        late_in_a_row = 0
        while True:
            await asyncio.sleep(self._ping_interval)
            if not self.logged_in:
                continue
            sent_at = time.monotonic()
            try:
                await self.action({"Action": "Ping"}, timeout=self._ping_timeout)
                if late_in_a_row:
                    log.info("AMI caught up: a Ping was answered in time after %d late one(s)",
                             late_in_a_row)
                late_in_a_row = 0
            except AmiTimeout:
                if self.last_data_at > sent_at:
                    self.behind += 1
                    late_in_a_row += 1
                    if self._on_behind is not None:
                        self._on_behind()
                    if late_in_a_row == 1:  # once per spell: a long burst would log every Ping
                        log.warning("AMI events arrive faster than textback reads them: the Ping's "
                                    "answer is still queued behind them after %.1f s; the link is "
                                    "kept and the events are read in order", self._ping_timeout)
                    continue
                late_in_a_row = 0
                log.warning("AMI did not answer Ping within %.1f s; reconnecting", self._ping_timeout)
                protocol = self._manager.protocol
                if protocol is not None and protocol.transport is not None:
                    protocol.transport.abort()
            except AmiError as exc:
                log.debug("keepalive: %s", exc)


def _forget(future: asyncio.Future) -> None:
    """Retrieve an abandoned action's outcome, so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()


def _run_handler(result: Awaitable[None] | None) -> None:
    """A callback may be plain or a coroutine; a coroutine runs as its own task."""
    if asyncio.iscoroutine(result):
        asyncio.ensure_future(result)


async def try_login(host: str, port: int, username: str, secret: SecretStr, *,
                    use_tls: bool = False, tls_verify: bool = True,
                    timeout: float = 5.0) -> str:
    """Log in once and off again, for `textback check`. Returns the AMI version; raises AmiError."""
    version, _ = await one_shot(host, port, username, secret, None, use_tls=use_tls,
                                tls_verify=tls_verify, timeout=timeout)
    return version


async def one_shot(host: str, port: int, username: str, secret: SecretStr,
                   action: dict[str, str] | None, *, use_tls: bool = False,
                   tls_verify: bool = True, timeout: float = 5.0) -> tuple[str, list[Message]]:
    """Log in with events off, send one action, read its answer, log off.

    Returns the AMI version and the answer: its Response, then the events of
    a listing (PJSIPShowEndpoints) up to its EventList Complete. For a user
    that reads no events (the self-test's originate-only user) and for
    `textback init`, which must not leave a connection behind. Raises
    AmiError (LoginRefused when the login is refused).
    """
    fields = [(k, v) for k, v in (action or {}).items()] + [("Username", username),
                                                              ("Secret", secret.get_secret_value())]
    for key, value in fields:
        if any(ch in str(key) + str(value) for ch in "\r\n"):
            raise ValueError(f"AMI field {key!r} contains a line break")
    tls = _tls_context(use_tls, tls_verify) or None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=tls), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        raise AmiDisconnected(f"cannot connect to AMI at {host}:{port}: {exc or 'timed out'}") from None

    async def read_message() -> Message | None:
        raw = await asyncio.wait_for(reader.readuntil(EOM.encode()), timeout)
        message = Message.from_line(raw.decode("utf-8", "replace").strip())
        if message is not None:
            _settle_repeats(message)  # a repeated id stays a list, matching no ActionID
        return message

    try:
        banner = (await asyncio.wait_for(reader.readline(), timeout)).decode("utf-8", "replace")
        if not banner.startswith("Asterisk Call Manager/"):
            raise AmiError(f"{host}:{port} is not an Asterisk manager port (said {banner.strip()[:60]!r})")
        writer.write(f"Action: Login\r\nUsername: {username}\r\n"
                     f"Secret: {secret.get_secret_value()}\r\nEvents: off\r\n\r\n".encode())
        answer = await read_message()
        if answer is None or answer.get("Response") != "Success":
            reason = answer.get("Message") if answer is not None else "no answer"
            raise LoginRefused(f"login as {username!r} refused: {reason}")
        messages: list[Message] = []
        if action is not None:
            lines = "".join(f"{k}: {v}\r\n" for k, v in action.items())
            writer.write(f"{lines}ActionID: textback-1\r\n\r\n".encode())
            while True:
                message = await read_message()
                if message is None or message.get("ActionID") != "textback-1":
                    continue  # an event the login's "Events: off" came too late for
                messages.append(message)
                if len(messages) == 1 and message.get("Response") != "Success":
                    raise AmiError(message.get("Message") or message.get("Response") or "error")
                if messages[0].get("EventList") != "start" or message.get("EventList") == "Complete":
                    break
        writer.write(b"Action: Logoff\r\n\r\n")
        return banner.partition("/")[2].strip(), messages
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
        what = "login" if action is None else f"{action.get('Action')}"
        raise AmiTimeout(f"no {what} answer from AMI at {host}:{port} ({type(exc).__name__})") from None
    except (asyncio.LimitOverrunError, ValueError):  # readline's and readuntil's 64 KiB limit
        raise AmiError(f"{host}:{port} sent an over-long banner or Login answer (over 64 KiB "
                       f"without a line end); not an Asterisk manager port?") from None
    finally:
        writer.close()


def _printable(text: Any) -> str:
    """A peer-written name for a log line: quoted, control characters escaped, cut short."""
    return repr(str(text)[:60])


def _tls_context(use_tls: bool, verify: bool) -> ssl.SSLContext | bool:
    if not use_tls:
        return False
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
