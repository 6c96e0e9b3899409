"""Operations on the real lab PBX: READY and the watchdog over a real notify socket, and the
metrics and health of a daemon that takes a real missed call and loses Asterisk for a while."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time

import aiohttp
import pytest
from click.testing import CliRunner

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, lab_config
from lab.harness import eventually, in_process, wait_until
from textback.cli import main
from textback.config import load
from textback.daemon import Daemon

pytestmark = pytest.mark.lab

WEB_PORT = 18094


async def scrape(path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as client:
        async with client.get(f"http://127.0.0.1:{WEB_PORT}{path}") as response:
            return response.status, await response.text()


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None when it is absent."""
    for line in metrics.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            return float(match.group(2))
    return None


class NotifySocket:
    """systemd's side of sd_notify: a unix datagram socket, read all along by a thread."""

    def __init__(self, path):
        self.datagrams: list[tuple[float, bytes, bool]] = []  # (when, what, AMI logged in then)
        self.daemon: Daemon | None = None
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self._socket.settimeout(0.2)
        self._open = True
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while self._open:
            try:
                data = self._socket.recv(4096)
            except TimeoutError:
                continue
            logged_in = bool(self.daemon and self.daemon.ami and self.daemon.ami.logged_in)
            self.datagrams.append((time.monotonic(), data, logged_in))

    def sent(self, what: bytes) -> list[tuple[float, bytes, bool]]:
        return [d for d in self.datagrams if d[1].startswith(what)]

    def close(self) -> None:
        self._open = False
        self._reader.join()
        self._socket.close()


async def test_ready_after_the_ami_login_watchdog_pings_and_metrics_of_a_real_call(
        tmp_path, lab_pbx, sink, monkeypatch):
    notify = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a ping every 0.2 s
    config = lab_config(tmp_path, lab_pbx, **{
        "text.delay_seconds": 1,
        "web": {"port": WEB_PORT, "public_url": "https://inbox.acme.example"}})
    daemon = notify.daemon = Daemon(load(config))
    try:
        async with in_process(daemon, timeout=20):
            await eventually(lambda: _true(notify.sent(b"READY=1")), 20, "READY=1")
            [(_, ready, logged_in)] = notify.sent(b"READY=1")
            assert ready == b"READY=1\nSTATUS=logged in to AMI; taking calls" and logged_in
            await asyncio.sleep(1.5)
            pings = [when for when, _, _ in notify.sent(b"WATCHDOG=1")]
            assert len(pings) >= 5 and max(b - a for a, b in zip(pings, pings[1:])) < 0.6

            assert await scrape("/healthz") == (200, "ok\n")
            phone = await asyncio.to_thread(lab_pbx.phone, "office1", "noanswer")
            call = await asyncio.to_thread(lab_pbx.call, HOMEOWNER, BUSINESS_NUMBER)
            await asyncio.to_thread(call.wait, 30)
            phone.kill()
            await asyncio.to_thread(wait_until, lambda: sink.messages(), 10, "the text")

            async def texted() -> str | None:
                _, body = await scrape("/metrics")
                accepted = sample(body, "textback_texts_total", status="accepted", gateway="asterisk")
                timed = sample(body, "textback_hangup_to_accepted_seconds_count")
                return body if (accepted, timed) == (1.0, 1.0) else None
            metrics = await eventually(texted, 10, "the accepted text in the metrics")
            assert sample(metrics, "textback_calls_total", outcome="missed",
                          business_number=BUSINESS_NUMBER) == 1.0
            assert 1.0 <= sample(metrics, "textback_hangup_to_accepted_seconds_sum") < 5.0
            assert sample(metrics, "textback_ami_connected") == 1.0
            assert sample(metrics, "textback_ami_last_event_age_seconds") < 10
            assert sample(metrics, "textback_outbox_pending") == 0.0

            await asyncio.to_thread(lab_pbx.stop_asterisk)
            try:
                async def unhealthy() -> str | None:
                    status, body = await scrape("/healthz")
                    return body if status == 503 else None
                assert await eventually(unhealthy, 20, "/healthz to fail") == (
                    "AMI is not logged in: calls are not seen\n")
                assert sample((await scrape("/metrics"))[1], "textback_ami_connected") == 0.0
            finally:
                await asyncio.to_thread(lab_pbx.start_asterisk)

            async def reconnected() -> bool:
                return sample((await scrape("/metrics"))[1], "textback_ami_reconnects_total") == 1.0
            await eventually(reconnected, 30, "the second AMI login")
            assert await scrape("/healthz") == (200, "ok\n")
            assert len(notify.sent(b"READY=1")) == 1  # a reconnect is not a second start
        await asyncio.sleep(0.5)
        assert notify.sent(b"STOPPING=1")
    finally:
        notify.close()


async def _true(value) -> object:
    return value


def _status(path) -> tuple[int, str]:
    """`textback status`'s exit code and its AMI line."""
    result = CliRunner().invoke(main, ["status", "-c", str(path)])
    [ami] = [line[16:] for line in result.output.splitlines() if line.startswith("AMI ")]
    return result.exit_code, ami


async def test_status_follows_each_ami_login_loss_and_reconnect_at_once(tmp_path, lab_pbx):
    """The state used to be written by the 10-second incident check only: for up to 10 s after
    every login, status said "NOT logged in" and exited 1."""
    config = lab_config(tmp_path, lab_pbx)
    daemon = Daemon(load(config))
    async with in_process(daemon, timeout=20):
        async def status_says(state: str, code: int, within: float = 2.0) -> None:
            deadline = time.monotonic() + within
            while (seen := await asyncio.to_thread(_status, config))[1].split(" for ")[0] != state:
                assert time.monotonic() < deadline, f"status still says {seen} after {within} s"
                await asyncio.sleep(0.1)
            assert seen[0] == code, seen

        await eventually(lambda: _true(daemon.ami.logged_in), 20, "the AMI login")
        await status_says("logged in", 0)
        await asyncio.to_thread(lab_pbx.stop_asterisk)
        try:
            await eventually(lambda: _true(not daemon.ami.logged_in), 20, "the link lost")
            await status_says("NOT logged in", 1)
        finally:
            await asyncio.to_thread(lab_pbx.start_asterisk)
        await eventually(lambda: _true(daemon.ami.logged_in), 60, "the AMI login again")
        await status_says("logged in", 0)
        assert daemon.ami.logins == 2
