"""Real peers for tests: an SMTP relay sink (aiosmtpd) and the daemon as a real process."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Sequence

from aiosmtpd.controller import Controller

SMTP_SINK_PORT = 15025


def wait_until(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.05):
    """Poll until predicate() is truthy; fail with `what` after timeout. Returns the value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


async def eventually(predicate: Callable[[], Awaitable[object]], timeout: float, what: str,
                     every: float = 0.05):
    """`wait_until` for async predicates, on the running loop. Returns the value."""
    deadline = time.monotonic() + timeout
    while not (value := await predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(every)
    return value


@asynccontextmanager
async def in_process(daemon, timeout: float = 10.0):
    """Run a Daemon on this loop until the block ends, and always stop it.

    A daemon that dies while starting (a port in use, say) fails at once with
    its own error, and one that never stops fails here rather than leaving its
    sockets bound for the next test.
    """
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        deadline = time.monotonic() + timeout
        while not daemon.serving.is_set():
            if task.done():
                task.result()
                raise AssertionError("the daemon returned before it started")
            if time.monotonic() > deadline:
                raise AssertionError(f"the daemon did not start in {timeout:g} s")
            await asyncio.sleep(0.02)
        yield daemon
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout)


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: email.message.EmailMessage


@dataclass
class SmtpSink:
    """Stands in for the company mail relay: accepts and keeps every message."""

    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        with self._lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"

    def wait_for(self, count: int, timeout: float) -> list[Received]:
        wait_until(lambda: len(self.received) >= count, timeout, f"{count} email(s) at the sink")
        return list(self.received)


def start_smtp_sink(port: int = SMTP_SINK_PORT) -> tuple[SmtpSink, Controller]:
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    return sink, controller


# How long `textback run` may take to be ready. It is not a figure of speed (bench/ has those):
# a start on a loaded machine (make test runs two halves at once) takes several seconds.
READY_SECONDS = 45.0


class DaemonProcess:
    """`textback run` as a real process, so tests can SIGKILL it like a crash would."""

    def __init__(self, config_path: Path, log_path: Path, more_configs: Sequence[Path] = ()):
        """`more_configs`: other companies' configs, served by the same process."""
        self.config_path = config_path
        self.more_configs = list(more_configs)
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self, ready_timeout: float = READY_SECONDS,
              ready: str = "AMI logged in") -> "DaemonProcess":
        """Launch and wait until the log shows `ready` (by default: logged in to AMI)."""
        return self.launch().wait_ready(ready_timeout, ready)

    def launch(self) -> "DaemonProcess":
        """Start the process and return at once (to start several at the same moment)."""
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "textback", "run", "-c", str(self.config_path),
             *(arg for path in self.more_configs for arg in ("-c", str(path)))],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        return self

    def wait_ready(self, timeout: float = READY_SECONDS,
                   ready: str = "AMI logged in") -> "DaemonProcess":
        """Wait until the log shows `ready`. A daemon that is not ready in time is stopped
        before the test fails: left running, it would take the next tests' calls and texts."""
        try:
            wait_until(lambda: ready in self.log_since_start() or self._died(),
                       timeout, f"the daemon to log {ready!r}")
        except AssertionError as exc:
            self.stop()
            raise AssertionError(f"{exc}; its log:\n{self.log_since_start()[-4000:]}") from None
        if self._died():
            raise AssertionError(f"textback run exited early:\n{self.log()}")
        return self

    def _died(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_since_start(self) -> str:
        return self.log()[self._offset:]

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as in a power cut or OOM kill."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode if self.process else 0
