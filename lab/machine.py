"""A clean Debian 12 machine booted with systemd as PID 1 (systemd-nspawn --boot).

The root comes from lab/build-bookworm-root.sh (cached); each Machine boots a
copy of it, so installs never change the cache. It shares the host's network
(no --private-network): the service inside reaches the lab PBX on loopback.
Commands run inside through nsenter into the container's namespaces, as an
admin's shell would. The machine is stopped through its own systemd-nspawn
process alone (SIGTERM: an orderly poweroff), never by name matching.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _last_line(command: list[str], timeout: float) -> Path:
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def bookworm_root() -> Path:
    """The cached clean Debian 12 root (built on first use: needs the network then)."""
    return _last_line([str(REPO / "lab/build-bookworm-root.sh")], timeout=1200)


def debian_package(revision: str | None = None) -> Path:
    """textback's .deb of the working tree, or of `revision` (cached by git tree)."""
    return _last_line([str(REPO / "tools/build-deb.sh"), *([revision] if revision else [])],
                      timeout=1800)


class Machine:
    def __init__(self, workdir: Path, name: str):
        self.name = f"{name}-{os.getpid()}"
        self.root = workdir / "root"
        self.log_path = workdir / "nspawn.log"
        self._nspawn: subprocess.Popen | None = None
        self.leader: int | None = None

    def boot(self, template: Path, timeout: float = 90.0,
             read_only: dict[Path, str] | None = None) -> "Machine":
        """Boot a copy of `template`; `read_only` maps host directories to where the machine
        sees them (the lab PBX's CDR, as if Asterisk ran on the same host)."""
        subprocess.run(["cp", "-a", "--reflink=auto", str(template), str(self.root)], check=True)
        binds = [f"--bind-ro={host}:{inside}" for host, inside in (read_only or {}).items()]
        # --keep-unit and --register=no: no host systemd or machined is needed.
        self._nspawn = subprocess.Popen(
            ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--console=passive",
             f"--machine={self.name}", *binds, "-D", str(self.root)],
            stdin=subprocess.DEVNULL, stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._nspawn.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited:\n{self.log_path.read_text()[-3000:]}")
            self.leader = self.leader or self._find_leader()
            if self.leader:
                state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return self
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not boot in {timeout} s:\n"
                           f"{self.log_path.read_text()[-3000:]}")

    def _find_leader(self) -> int | None:
        """The container's PID 1, as the host numbers it: a child of our systemd-nspawn."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
            if (fields.get("PPid", "").strip() == str(self._nspawn.pid)
                    and fields.get("NSpid", "").split()[-1:] == ["1"]):
                return int(entry.name)
        return None

    def run(self, *argv: str, check: bool = True, timeout: float = 120.0,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run `argv` inside the machine, as root, with a clean environment."""
        done = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-p", "--",
             "/usr/bin/env", "-i", f"PATH={PATH}", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive",
             *argv], capture_output=True, text=True, timeout=timeout, input=input)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {done.returncode}:\n"
                                 f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return done

    def put(self, source: Path, inside: str) -> str:
        """Copy a host file into the machine; returns its path there."""
        target = self.root / inside.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return inside

    def path(self, inside: str) -> Path:
        """A file of the machine, seen from the host."""
        return self.root / inside.lstrip("/")

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, *(f"-p{p}" for p in properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def poweroff(self, timeout: float = 60.0) -> None:
        """SIGTERM to our own systemd-nspawn: it powers the container off in order."""
        if self._nspawn is None or self._nspawn.poll() is not None:
            return
        self._nspawn.send_signal(signal.SIGTERM)
        try:
            self._nspawn.wait(timeout)
        except subprocess.TimeoutExpired:
            self._nspawn.kill()
            self._nspawn.wait(10)

    def remove(self) -> None:
        self.poweroff()
        shutil.rmtree(self.root, ignore_errors=True)
