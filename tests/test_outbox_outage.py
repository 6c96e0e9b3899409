"""The daemon's outbox worker against a real loopback provider, through outages and rate limits.

The daemon runs its real outbox worker, store and generic `http` gateway; the
provider is a real aiohttp server on loopback, the owner's mail goes to a real
aiosmtpd sink. A long outage is simulated on a fast clock handed to the daemon:
a simulated hour takes a few seconds.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from email.utils import formatdate

import pytest
from aiohttp import web

from lab.configs import BUSINESS_NUMBER, base_config, write_config
from lab.harness import SMTP_SINK_PORT
from tests.providers.common import serving
from textback.config import load
from textback.daemon import Daemon
from textback.gateways import build_gateway
from textback.workers.common import SystemClock
from textback.store import CallRow, PlannedText, Store
from tests.store_helpers import outbox_states

MINUTE = 60.0


class FastClock(SystemClock):
    """Simulated time that runs `speed` times faster than the wall clock, from now on."""

    def __init__(self, speed: float):
        self.speed = speed
        self.start = time.time()

    def now(self) -> float:
        return self.start + (time.time() - self.start) * self.speed

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds / self.speed)

    async def wait(self, event: asyncio.Event, seconds: float) -> None:
        await super().wait(event, seconds / self.speed)

    async def until(self, moment: float) -> None:
        while self.now() < moment:
            await asyncio.sleep(0.005)


@dataclass
class Provider:
    """An SMS API: 503 while `down()` says so, else 200 with an id; `answers` first, if any.

    Keeps every text it took (recipient, clock time) and the most requests it had at once.
    """

    clock: SystemClock
    down: object = lambda: False
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # (status, headers)
    work_seconds: float = 0.0
    taken: list[tuple[str, float]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # wall clock
    refused: int = 0
    in_flight: int = 0
    most_in_flight: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/send", self._send)
        return app

    async def _send(self, request: web.Request) -> web.Response:
        self.arrivals.append(time.monotonic())
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            body = await request.json()
            await asyncio.sleep(self.work_seconds)
            if self.answers:
                status, headers = self.answers.pop(0)
                self.refused += 1
                return web.json_response({"error": "not now"}, status=status, headers=headers)
            if self.down():
                self.refused += 1
                return web.Response(status=503, text="upstream unavailable")
            self.taken.append((body["to"], self.clock.now()))
            return web.json_response({"id": f"msg-{len(self.taken)}"})
        finally:
            self.in_flight -= 1


@pytest.fixture
async def outbox(tmp_path, smtp_sink):
    """Start a daemon's outbox worker (no AMI) against `provider`, with config overrides."""
    started: list[tuple[Daemon, asyncio.Task | None]] = []

    async def start(provider: Provider, url: str, run_worker: bool = True, **overrides) -> Daemon:
        config = base_config(tmp_path, **{
            "smtp.port": SMTP_SINK_PORT, "text.delay_seconds": 0,
            "gateway": {"type": "http", "http": {"url": f"{url}/send", "timeout_seconds": 5}},
            **overrides})
        daemon = Daemon(load(write_config(tmp_path, config)), clock=provider.clock)
        daemon.attach(await Store.open(daemon.config.storage.path), build_gateway(daemon.config, None, daemon.secrets))
        started.append((daemon, asyncio.create_task(daemon.outbox.run()) if run_worker else None))
        return daemon

    yield start
    for daemon, worker in started:
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        await daemon.gateway.close()
        await daemon.store.close()


async def missed_call(store: Store, caller: str, at: float, name: str = "") -> None:
    """A missed call from `caller` ending at `at`, with its text due then."""
    row = CallRow(linkedid=f"call-{caller}", business_number=BUSINESS_NUMBER, caller_raw=caller,
                  caller=caller, caller_name=name, started_at=at - 20, answered_at=None,
                  ended_at=at, outcome="missed", reason="no_answer", decision="missed_call_text")
    await store.record_call(row, PlannedText("dana", f"Sorry we missed you, {caller}", at))


async def conversation_of(store: Store, caller: str) -> int:
    row = CallRow(linkedid=f"earlier-{caller}", business_number=BUSINESS_NUMBER, caller_raw=caller,
                  caller=caller, caller_name="", started_at=time.time() - 600, answered_at=None,
                  ended_at=time.time() - 590, outcome="answered", reason="answered", decision="answered")
    await store.record_call(row, None, owner_id="dana")
    return (await store.conversation_for(caller, BUSINESS_NUMBER))["id"]


async def test_an_hour_long_outage_sends_each_text_once_after_it_or_tells_the_owner(outbox, smtp_sink):
    clock = FastClock(speed=600)  # a simulated minute is 0.1 s
    t0 = clock.now()
    back_at = t0 + 65 * MINUTE
    provider = Provider(clock, down=lambda: clock.now() < back_at)
    async with serving(provider.app()) as url:
        daemon = await outbox(provider, url, **{"text.max_age_minutes": 60})
        store = daemon.store
        # Queued when the outage starts: an owner's reply, and the confirmation of an opt-out.
        replied, stopped = "+12125550140", "+12125550141"
        await store.queue_reply(await conversation_of(store, replied), BUSINESS_NUMBER, replied,
                                "We can come Tuesday at 10.", "owner")
        await store.suppress(stopped, "sms")
        await store.queue_reply(await conversation_of(store, stopped), BUSINESS_NUMBER, stopped,
                                "You are unsubscribed.", "optout_confirmation")
        # Missed calls during the hour (minutes 0 and 2 are older than 60 minutes when it ends),
        # and one after it.
        callers = {minute: f"+1212555{minute + 200:04d}" for minute in (0, 2, 10, 30, 50, 64, 70)}
        for minute, caller in callers.items():
            await clock.until(t0 + minute * MINUTE)
            await missed_call(store, caller, clock.now(), name="Jo\r\nBcc: x" if minute == 0 else "")
        await clock.until(t0 + 80 * MINUTE)

    sent = [caller for caller, _ in provider.taken]
    assert sorted(sent) == sorted(callers[m] for m in (10, 30, 50, 64, 70))  # each exactly once
    assert provider.refused > 20  # it kept trying through the hour
    taken_at = dict(provider.taken)
    for minute in (10, 30, 50, 64):  # within about one retry interval of the provider's return
        assert taken_at[callers[minute]] - back_at < 1.5 * MINUTE, f"minute {minute}"
    assert taken_at[callers[70]] - (t0 + 70 * MINUTE) < 0.5 * MINUTE  # due after it: at once
    assert await outbox_states(store) == {"sent": 5, "expired": 4}

    mails = {m.message["Subject"]: m for m in smtp_sink.wait_for(4, 10)}
    assert sorted(mails) == sorted([
        f"Call back {callers[0]}: the text to them was not sent",
        f"Call back {callers[2]}: the text to them was not sent",
        f"Not sent to {replied}: your reply",
        f"{stopped} opted out; no confirmation was texted"])
    first = mails[f"Call back {callers[0]}: the text to them was not sent"]
    assert first.recipients == ["dana@example.com"]
    body = first.message.get_content()
    assert f"{callers[0]} (Jo Bcc: x) called {BUSINESS_NUMBER} on " in body
    assert f"{BUSINESS_NUMBER} on " in body and ": nobody picked up." in body and "HTTP 503" in body
    assert "five minutes" in mails[f"{stopped} opted out; no confirmation was texted"].message.get_content()


async def test_texts_go_out_in_parallel_up_to_the_configured_limit(outbox):
    provider = Provider(SystemClock(), work_seconds=0.1)
    async with serving(provider.app()) as url:
        daemon = await outbox(provider, url, **{"gateway.max_concurrent_sends": 4})
        began = time.monotonic()
        for index in range(12):
            await missed_call(daemon.store, f"+1212555{300 + index:04d}", time.time())
        daemon.wake_outbox()
        while len(provider.taken) < 12 and time.monotonic() - began < 10:
            await asyncio.sleep(0.01)
        took = time.monotonic() - began
    assert len({caller for caller, _ in provider.taken}) == 12 == len(provider.taken)
    assert provider.most_in_flight == 4
    assert took < 12 * 0.1 / 2  # one at a time would take 1.2 s


@pytest.mark.parametrize("form", ["delta-seconds", "HTTP-date"])
async def test_a_retry_after_holds_every_send_on_the_gateway(outbox, form):
    provider = Provider(SystemClock())
    # An HTTP-date has whole seconds: ask for the second after next, at least one second away.
    value = "2" if form == "delta-seconds" else formatdate(int(time.time()) + 2, usegmt=True)
    wait = 2.0 if form == "delta-seconds" else int(time.time()) + 2 - time.time()
    provider.answers = [(429, {"Retry-After": value})]
    async with serving(provider.app()) as url:
        daemon = await outbox(provider, url, **{"gateway.max_concurrent_sends": 1})
        for index in range(4):
            await missed_call(daemon.store, f"+1212555{400 + index:04d}", time.time())
        daemon.wake_outbox()
        began = time.monotonic()
        while len(provider.taken) < 4 and time.monotonic() - began < 10:
            await asyncio.sleep(0.01)
        # The provider has the last text before the worker has its answer and commits it.
        while await outbox_states(daemon.store) != {"sent": 4} and time.monotonic() - began < 15:
            await asyncio.sleep(0.01)
    assert len({caller for caller, _ in provider.taken}) == 4 == len(provider.taken)
    refused_at, *later = provider.arrivals
    assert later[0] - refused_at >= wait - 0.3  # nothing, not even another text, went sooner
    assert await outbox_states(daemon.store) == {"sent": 4}


async def test_the_rate_limit_spaces_sends_out(outbox):
    provider = Provider(SystemClock())
    async with serving(provider.app()) as url:
        daemon = await outbox(provider, url, **{"gateway.max_sends_per_second": 10})
        for index in range(6):
            await missed_call(daemon.store, f"+1212555{500 + index:04d}", time.time())
        daemon.wake_outbox()
        began = time.monotonic()
        while len(provider.taken) < 6 and time.monotonic() - began < 10:
            await asyncio.sleep(0.01)
    assert len(provider.taken) == 6
    # Six starts 0.1 s apart span 0.5 s (less a busy machine's jitter); unpaced, a few ms.
    assert provider.arrivals[-1] - provider.arrivals[0] >= 0.4


async def test_stopping_lets_the_sends_under_way_finish_and_be_recorded(outbox):
    provider = Provider(SystemClock(), work_seconds=0.5)
    async with serving(provider.app()) as url:
        daemon = await outbox(provider, url, run_worker=False)
        await missed_call(daemon.store, "+12125550600", time.time())
        worker = asyncio.create_task(daemon.outbox.run())
        while provider.in_flight == 0:
            await asyncio.sleep(0.01)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        assert await outbox_states(daemon.store) == {"sent": 1}
    assert len(provider.taken) == 1
