"""Start a real Kannel for a test module: bearerbox, smsbox and fakesmsc (Debian: kannel, kannel-extras).

fakesmsc runs in interactive mode: each line written to its stdin is an MO
text ("sender receiver text words..."), and every MT text bearerbox hands it
is logged as "Got message N: <sender receiver type data>", which the reader
thread collects. The fixture fails, never skips, when Kannel cannot start:
a missing package or a port held by the Debian `kannel` service is a broken
test machine, not a reason to pass.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import IO, Iterator
from urllib.parse import quote, unquote_to_bytes

import pytest

BEARERBOX = Path("/usr/sbin/bearerbox")
SMSBOX = Path("/usr/sbin/smsbox")
FAKESMSC = Path("/usr/lib/kannel/test/fakesmsc")
CONFIG = Path(__file__).with_name("kannel.conf")
ADMIN_PORT, FAKE_SMSC_PORT, SENDSMS_PORT, WEBHOOK_PORT = 15130, 15132, 15133, 15134
PORTS = (15130, 15131, 15132, 15133, 15134)
GOT = re.compile(r"Got message \d+: <(.*)>$")


@dataclass
class MtText:
    """A text bearerbox handed to the fake SMSC."""

    sender: str
    receiver: str
    body: str


@dataclass
class Kannel:
    sendsms_url: str
    password: str
    token: str
    directory: Path
    _fakesmsc: subprocess.Popen
    mt: list[MtText] = field(default_factory=list)

    def inject(self, sender: str, receiver: str, text: str, ucs2: bool = False) -> None:
        """An MO text from a handset, as the SMSC would pass it on (UCS-2 coded if `ucs2`)."""
        assert "\n" not in text
        data = f"ucs2 {quote(text.encode('utf-16-be'))}" if ucs2 else f"text {text}"
        self._fakesmsc.stdin.write(f"{sender} {receiver} {data}\n".encode())
        self._fakesmsc.stdin.flush()

    async def wait_mt(self, count: int, timeout: float = 10.0) -> list[MtText]:
        deadline = time.monotonic() + timeout
        while len(self.mt) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return list(self.mt)

    def log(self, name: str) -> str:
        return (self.directory / name).read_text(errors="replace")


def _decode(line: str) -> MtText:
    sender, receiver, kind, data = line.split(" ", 3)
    if kind == "ucs-2":
        return MtText(sender, receiver, unquote_to_bytes(data.replace("+", " ")).decode("utf-16-be"))
    if kind == "data":
        return MtText(sender, receiver, unquote_to_bytes(data.replace("+", " ")).decode("utf-8"))
    return MtText(sender, receiver, data)


def _collect(stream: IO[bytes], kannel_mt: list[MtText], transcript: Path) -> None:
    with transcript.open("w") as out:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            out.write(line + "\n")
            out.flush()
            match = GOT.search(line)
            if match:
                kannel_mt.append(_decode(match.group(1)))


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait(what: str, ready, timeout: float, directory: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    logs = "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-2000:]
                     for p in sorted(directory.glob("*.log")))
    pytest.fail(f"Kannel did not start: {what} after {timeout:.0f} s\n{logs}")


def _status(password: str) -> str:
    try:
        url = f"http://127.0.0.1:{ADMIN_PORT}/status.txt?password={password}"
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.read().decode(errors="replace")
    except OSError:
        return ""


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="module", name="kannel")
def kannel_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kannel]:
    missing = [str(p) for p in (BEARERBOX, SMSBOX, FAKESMSC) if not p.exists()]
    if missing:
        pytest.fail(f"Kannel is not installed ({', '.join(missing)} missing): "
                    f"apt-get install kannel kannel-extras")
    held = [port for port in PORTS if not _port_free(port)]
    if held:
        pytest.fail(f"ports {held} are in use; if the Debian kannel service holds them: "
                    f"service kannel stop && update-rc.d kannel disable")
    directory = tmp_path_factory.mktemp("kannel")
    password, token = secrets.token_hex(8), secrets.token_hex(16)
    config = directory / "kannel.conf"
    config.write_text(Template(CONFIG.read_text()).substitute(
        DIR=directory, PASSWORD=password, TOKEN=token))
    started: list[subprocess.Popen] = []
    try:
        bearerbox = subprocess.Popen([BEARERBOX, "-v", "4", str(config)], cwd=directory,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(bearerbox)
        _wait("bearerbox admin page", lambda: _status(password), 10, directory)
        fakesmsc = subprocess.Popen(
            [FAKESMSC, "-H", "127.0.0.1", "-r", str(FAKE_SMSC_PORT), "-i", "0", "-v", "0"],
            cwd=directory, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        started.append(fakesmsc)
        smsbox = subprocess.Popen([SMSBOX, "-v", "4", str(config)], cwd=directory,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(smsbox)
        kannel = Kannel(f"http://127.0.0.1:{SENDSMS_PORT}/cgi-bin/sendsms", password, token,
                        directory, fakesmsc)
        threading.Thread(target=_collect, args=(fakesmsc.stdout, kannel.mt,
                                                directory / "fakesmsc.log"), daemon=True).start()
        _wait("the fake SMSC online and smsbox connected",
              lambda: (f"FAKE:{FAKE_SMSC_PORT} (online" in (status := _status(password))
                       and "smsbox:" in status), 15, directory)
        _wait("smsbox sendsms port", lambda: not _port_free(SENDSMS_PORT), 10, directory)
        yield kannel
    finally:
        for process in reversed(started):
            _stop(process)
