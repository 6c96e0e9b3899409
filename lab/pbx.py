"""The lab PBX: a real Asterisk, run from a cached Debian sid chroot, driven by SIPp.

Tests and demos need the event shapes and SIP behaviour of a real Asterisk,
not a mock.  Debian 12 has no asterisk package, so `build-root.sh` builds a
minimal sid root once and caches it; each `LabPBX` renders its own config
tree into a per-instance directory inside that root and chroots Asterisk into
it.  The SIPp "actors" (the carrier and the office phones) run on the host on
loopback aliases, each in its own process group so `stop()` can always kill
them.

Standard library only.
"""

from __future__ import annotations

import atexit
import fcntl
import itertools
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent
REPO_DIR = LAB_DIR.parent
BUILD_ROOT_SCRIPT = LAB_DIR / "build-root.sh"
TEMPLATE_DIR = LAB_DIR / "asterisk"
SCENARIO_DIR = LAB_DIR / "sipp"
PRODUCT_DIALPLAN = REPO_DIR / "dialplan" / "textback.conf"
ROUTING_AGI = REPO_DIR / "agi_scripts" / "textback_route.py"
# Where the shipped dialplan expects the routing table; the lab points it into the instance.
PRODUCT_ROUTING_TABLE = "/var/lib/textback/routing.json"
# The root's own interpreter runs the routing AGI (build-root.sh includes python3).
PYTHON_IN_ROOT = "/usr/bin/python3"

# Held while a lab runs: the ports and actor addresses are machine-wide.
LOCK_FILE = Path("/run/textback-lab.lock")

# Inside the chroot: one directory per running lab, named after its owner PID.
INSTANCES_IN_ROOT = Path("/srv/textback-lab")
ASTERISK_IN_ROOT = "/usr/sbin/asterisk"

CARRIER_IP = "127.0.0.3"
CARRIER_SIP_PORT = 5060  # the carrier AOR contact: where the message sink listens
CARRIER_SMS_PORT = 5071  # the carrier's text-sending UAC
CARRIER_PSTN_PORT = 5072  # the carrier's far side: calls the PBX sends out land here
# Where each phone listens.  "cell" is a phone beyond the carrier (the owner's
# cell phone, or anyone an office phone calls out to), reached over the trunk.
PHONES = {"office1": ("127.0.0.2", 5060), "office2": ("127.0.0.4", 5060),
          "cell": (CARRIER_IP, CARRIER_PSTN_PORT)}
# Where calls come from: the carrier (inbound) or an office phone (outbound, internal).
CALL_SOURCES = {"carrier": CARRIER_IP, "office1": "127.0.0.2"}
PHONE_SCENARIOS = {
    "noanswer": "phone-noanswer.xml",
    "answer": "phone-answer.xml",
    "busy": "phone-busy.xml",
    "refer": "phone-refer.xml",
    "atxfer": "phone-atxfer.xml",
}
# SDP media ports, one per actor, so actors sharing an IP never collide.
MEDIA_PORTS = {"sms": 16010, "sink": 16020, "office1": 16030, "office2": 16040, "cell": 16050}
# Calls may run side by side: each takes the next block of this range (room for 200 at once).
CALL_MEDIA_PORTS = range(16100, 16900, 4)

# SIPp guard: no actor outlives the flow it plays by more than this.
SIPP_GUARD_SECONDS = 120.0
# The message sink runs "forever"; this only stops an orphan whose owner died.
SINK_GUARD_SECONDS = 3600.0
NEVER_MS = 24 * 3600 * 1000


class LabError(RuntimeError):
    """The lab could not do what was asked; the message carries the relevant logs."""


def _ms(seconds: float) -> str:
    return str(max(0, round(seconds * 1000)))


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} not readable)"
    return "\n".join(text.splitlines()[-lines:])


def _free_udp_port(ip: str) -> int:
    """A UDP port free on ip now; the kernel picks ephemeral ports at random, so calls started together differ."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((ip, 0))
        return probe.getsockname()[1]


def _udp_socket_inode(ip: str, port: int) -> str | None:
    """Inode of the UDP socket bound to ip:port, from /proc/net/udp."""
    local = f"{socket.inet_aton(ip)[::-1].hex().upper()}:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local:
            return fields[9]
    return None


def _owns_socket(pid: int, inode: str) -> bool:
    target = f"socket:[{inode}]"
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                return True
        except OSError:
            continue
    return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _pids_with_cmdline_containing(needle: str) -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and needle in _cmdline(int(entry))]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_dead(pids: list[int], timeout: float = 5.0) -> None:
    """Wait until killed processes (not our children) are gone or zombies, so their ports are free."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                break
            if state == "Z":
                break
            time.sleep(0.01)


def _kill_group(proc: subprocess.Popen, grace: float) -> None:
    """TERM then KILL a process group led by proc (proc must not be reaped yet)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _uri_of(header_value: str) -> str:
    """The URI of a From/To header value: `"x" <sip:a@b>;tag=1` -> `sip:a@b`."""
    match = re.search(r"<([^>]*)>", header_value)
    if match:
        return match.group(1)
    return header_value.split(";", 1)[0].strip()


def parse_sipp_trace(path: Path) -> list[dict]:
    """SIP messages SIPp received, in order, from its -trace_msg log.

    SIPp writes each one as `UDP message received [N] bytes :`, a blank line
    and exactly N bytes, so the byte count (not a separator line) delimits it
    and a body may contain anything.  Each is {"start_line", "headers" (first
    value per lower-cased name), "body" (Content-Length bytes, decoded)}.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    messages = []
    for match in re.finditer(rb"UDP message received \[(\d+)\] bytes :\n\n", data):
        size = int(match.group(1))
        raw = data[match.end() : match.end() + size]
        if len(raw) < size:  # SIPp is still writing it
            break
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("utf-8", "replace").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        length = int(headers.get("content-length", len(body)))
        messages.append(
            {"start_line": lines[0], "headers": headers, "body": body[:length].decode("utf-8", "replace")}
        )
    return messages


class SippActor:
    """One SIPp process playing one lab actor, in its own process group.

    Logs: `screen_log` (SIPp's stdout screen), `error_log` (-trace_err) and
    `message_log` (-trace_msg, every SIP message sent and received).
    """

    def __init__(self, label: str, scenario: str, args: list[str], log_stem: Path, instance_id: str,
                 trace_messages: bool = True):
        self.label = label
        self.screen_log = log_stem.with_name(log_stem.name + ".screen.log")
        self.error_log = log_stem.with_name(log_stem.name + ".errors.log")
        self.message_log = log_stem.with_name(log_stem.name + ".messages.log")
        argv = [
            "sipp", "-sf", str(SCENARIO_DIR / scenario),
            "-nostdin", "-bind_local",
            "-trace_err", "-error_file", str(self.error_log),
            *(["-trace_msg", "-message_file", str(self.message_log)] if trace_messages else []),
            # Unused by the scenarios: marks the process as this lab's, so a
            # later lab can find and reap it if this lab's owner died.
            "-key", "lab_instance", instance_id,
            *args,
        ]
        with open(self.screen_log, "wb") as screen:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=screen, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def wait(self, timeout: float = 30.0) -> int:
        """SIPp's exit code (0: every call succeeded); LabError if still running."""
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise LabError(f"SIPp {self.label} still running after {timeout}s\n{self.diagnostics()}") from None

    def wait_success(self, timeout: float = 30.0) -> None:
        """Wait for SIPp to finish and raise LabError with its logs unless it succeeded."""
        code = self.wait(timeout)
        if code != 0:
            raise LabError(f"SIPp {self.label} exited with {code}\n{self.diagnostics()}")

    def kill(self) -> None:
        _kill_group(self._proc, grace=3.0)

    def wait_listening(self, ip: str, port: int, timeout: float = 10.0) -> None:
        """Block until this SIPp has bound ip:port, so Asterisk never sends into the void."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LabError(f"SIPp {self.label} exited ({self._proc.returncode}) before listening\n{self.diagnostics()}")
            inode = _udp_socket_inode(ip, port)
            if inode and _owns_socket(self._proc.pid, inode):
                return
            time.sleep(0.01)
        raise LabError(f"SIPp {self.label} did not bind {ip}:{port} within {timeout}s\n{self.diagnostics()}")

    def diagnostics(self) -> str:
        """Tails of this actor's logs, for error messages."""
        return (
            f"--- {self.error_log.name}\n{self._errors()}\n"
            f"--- {self.screen_log.name}\n{_tail(self.screen_log, 25)}\n"
            f"--- {self.message_log.name} (tail)\n{_tail(self.message_log, 60)}"
        )

    def _errors(self, entries: int = 10) -> str:
        """SIPp's error log without the expected timeouts of the scenarios' tick loops."""
        try:
            text = self.error_log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no errors logged)"
        # SIPp runs its timestamped entries together without newlines.
        found = [entry.strip() for entry in re.split(r"(?=\d{4}-\d\d-\d\d\t\d)", text)]
        found = [entry for entry in found if entry and not re.search(r"receive timeout on message .*jumping to label", entry)]
        return "\n".join(found[-entries:]) or "(only tick-loop timeouts logged)"


class MessageSink(SippActor):
    """The carrier's SMS side: answers every SIP MESSAGE with 202 until killed."""

    def messages(self) -> list[dict]:
        """Texts received so far, in arrival order, retransmissions dropped.

        Each is {"from", "to", "body", "request_uri", "via"}; from/to are the header URIs.
        """
        seen = set()
        texts = []
        for message in parse_sipp_trace(self.message_log):
            if not message["start_line"].startswith("MESSAGE "):
                continue
            headers = message["headers"]
            key = (headers.get("call-id"), headers.get("cseq"))
            if key in seen:
                continue
            seen.add(key)
            texts.append(
                {
                    "from": _uri_of(headers.get("from", "")),
                    "to": _uri_of(headers.get("to", "")),
                    "body": message["body"],
                    "request_uri": message["start_line"].split(" ")[1],
                    "via": headers.get("via", ""),  # which PBX sent it: its SIP port
                }
            )
        return texts


class LabPBX:
    """A started-on-demand Asterisk plus the SIPp actors around it.

    One lab at a time per machine: the ports and actor addresses are fixed.
    """

    ami_host = "127.0.0.1"
    ami_port = 15038
    sip_port = 15060
    ami_user = "textback"
    selftest_user = "textback-selftest"  # write = originate only
    admin_user = "labadmin"
    start_timeout = 60.0
    # A second lab on the machine (another test run) waits this long for the first to stop.
    lock_timeout = 600.0
    lock_file = LOCK_FILE

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.root: Path | None = None
        self.instance_id = f"{os.getpid()}-{secrets.token_hex(3)}"
        self.ami_secret_file = self.workdir / "ami-textback.secret"
        self.admin_secret_file = self.workdir / "ami-labadmin.secret"
        self.selftest_secret_file = self.workdir / "ami-textback-selftest.secret"
        self.admin_secret = ""
        self.start_seconds: float | None = None
        self._asterisk: subprocess.Popen | None = None
        self._lock = None
        self._actors: list[SippActor] = []
        self._actor_numbers = itertools.count(1)
        self._call_media_ports = itertools.cycle(CALL_MEDIA_PORTS)

    # ----------------------------------------------------------------- paths
    @property
    def _conf_in_root(self) -> str:
        return str(INSTANCES_IN_ROOT / self.instance_id / "etc" / "asterisk.conf")

    @property
    def instance_dir(self) -> Path:
        """This lab's config/log/run tree, as seen from the host."""
        if self.root is None:
            raise LabError("lab PBX not started")
        return self.root / INSTANCES_IN_ROOT.relative_to("/") / self.instance_id

    @property
    def routing_file(self) -> Path:
        """Where the lab's dialplan reads textback's routing table: point `agi.routing_file` here."""
        return self.instance_dir / "routing.json"

    @property
    def cdr_csv(self) -> Path:
        """Asterisk's CSV CDR (cdr_csv's Master.csv), as seen from the host."""
        return self.instance_dir / "log" / "cdr-csv" / "Master.csv"

    @property
    def asterisk_log(self) -> Path:
        return self.instance_dir / "log" / "full"

    @property
    def console_log(self) -> Path:
        return self.workdir / "asterisk-console.log"

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Build the root if needed, render configs, start Asterisk, wait until fully booted."""
        if self._asterisk is not None:
            raise LabError("lab PBX already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root = self._build_root()
        atexit.register(self.stop)
        try:
            self._acquire_lock()
            began = time.monotonic()
            self._reap_orphaned_instances()
            self._check_ports_free()
            self._render_config()
            self._launch_asterisk()
            self._wait_ready(began + self.start_timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    def stop_asterisk(self, crash: bool = False) -> None:
        """Stop Asterisk alone, as a PBX restart or upgrade does (or kill it at once, as a crash
        would, with `crash`); actors, configs and logs stay."""
        if self._asterisk is None:
            raise LabError("lab PBX not started")
        _kill_group(self._asterisk, grace=0.0 if crash else 10.0)
        self._asterisk = None

    def start_asterisk(self) -> None:
        """Start Asterisk again in this instance after stop_asterisk(); returns once it is fully booted."""
        if self._asterisk is not None:
            raise LabError("Asterisk already runs")
        began = time.monotonic()
        self._check_ports_free()
        (self.instance_dir / "run" / "asterisk.ctl").unlink(missing_ok=True)
        self._launch_asterisk()
        self._wait_ready(began + self.start_timeout)

    def stop(self) -> None:
        """Kill every SIPp actor and Asterisk by PID, keep the logs, remove the instance tree."""
        for actor in self._actors:
            actor.kill()
        self._actors.clear()
        if self._asterisk is not None:
            _kill_group(self._asterisk, grace=10.0)
            self._asterisk = None
        if self.root is not None and self.instance_dir.exists():
            # Asterisk's /proc was mounted in its own mount namespace, which
            # died with it: nothing to unmount here.
            log_dir = self.instance_dir / "log"
            if log_dir.is_dir():
                shutil.copytree(log_dir, self.workdir / "asterisk-log", dirs_exist_ok=True)
            shutil.rmtree(self.instance_dir, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None
        atexit.unregister(self.stop)

    def _acquire_lock(self) -> None:
        """One lab per machine: wait for another lab (e.g. a parallel test run) to stop."""
        lock = open(self.lock_file, "a+")
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    lock.seek(0)
                    holder = lock.read().strip()
                    lock.close()
                    raise LabError(f"another lab PBX still runs after {self.lock_timeout}s: {holder}") from None
                time.sleep(0.1)
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}, workdir {self.workdir}\n")
        lock.flush()
        self._lock = lock

    def _build_root(self) -> Path:
        log = self.workdir / "build-root.log"
        with open(log, "wb") as stderr:
            result = subprocess.run(
                ["bash", str(BUILD_ROOT_SCRIPT)], stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL
            )
        out = result.stdout.decode(errors="replace").strip().splitlines()
        if result.returncode != 0 or not out:
            raise LabError(f"build-root.sh failed ({result.returncode})\n{_tail(log)}")
        root = Path(out[-1])
        if not (root / ASTERISK_IN_ROOT.lstrip("/")).exists():
            raise LabError(f"build-root.sh printed {root}, which has no {ASTERISK_IN_ROOT}")
        return root

    def _reap_orphaned_instances(self) -> None:
        """Kill and remove labs whose owning process died without stop() (e.g. SIGKILL)."""
        instances = self.root / INSTANCES_IN_ROOT.relative_to("/")
        if not instances.is_dir():
            return
        for directory in instances.iterdir():
            try:
                owner = int((directory / "owner").read_text())
            except (OSError, ValueError):
                continue
            if _pid_alive(owner):
                continue
            orphans = _pids_with_cmdline_containing(directory.name)
            for pid in orphans:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _wait_dead(orphans)
            shutil.rmtree(directory, ignore_errors=True)

    def _check_ports_free(self) -> None:
        probes = [(socket.SOCK_STREAM, self.ami_port), (socket.SOCK_DGRAM, self.sip_port)]
        for kind, port in probes:
            with socket.socket(socket.AF_INET, kind) as probe:
                if kind == socket.SOCK_STREAM:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((self.ami_host, port))
                except OSError as exc:
                    others = "\n".join(
                        f"  pid {pid}: {_cmdline(pid)}" for pid in _pids_with_cmdline_containing("asterisk")
                    )
                    raise LabError(
                        f"{self.ami_host}:{port} is already in use ({exc}); another Asterisk or lab running?\n{others}"
                    ) from None

    def _render_config(self) -> None:
        etc = self.instance_dir / "etc"
        for sub in ("etc", "lib/keys", "agi-bin", "spool", "run", "log/cdr-csv", "cache"):
            (self.instance_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.instance_dir / "owner").write_text(str(os.getpid()))

        textback_secret = secrets.token_urlsafe(24)
        selftest_secret = secrets.token_urlsafe(24)
        self.admin_secret = secrets.token_urlsafe(24)
        for path, secret in ((self.ami_secret_file, textback_secret), (self.admin_secret_file, self.admin_secret),
                             (self.selftest_secret_file, selftest_secret)):
            path.write_text(secret + "\n")
            path.chmod(0o600)

        values = {
            "@@INSTANCE_DIR@@": str(INSTANCES_IN_ROOT / self.instance_id),
            "@@AMI_PORT@@": str(self.ami_port),
            "@@SIP_PORT@@": str(self.sip_port),
            "@@TEXTBACK_SECRET@@": textback_secret,
            "@@ADMIN_SECRET@@": self.admin_secret,
            "@@SELFTEST_SECRET@@": selftest_secret,
        }
        for template in TEMPLATE_DIR.glob("*.conf"):
            text = template.read_text()
            for placeholder, value in values.items():
                text = text.replace(placeholder, value)
            if "@@" in text:
                raise LabError(f"{template.name}: unknown placeholder left after rendering")
            (etc / template.name).write_text(text)

        routing_table = str(INSTANCES_IN_ROOT / self.instance_id / "routing.json")
        (etc / "textback.conf").write_text(
            PRODUCT_DIALPLAN.read_text().replace(PRODUCT_ROUTING_TABLE, routing_table))
        self._install_routing_agi()

    def _install_routing_agi(self) -> None:
        """Install the routing AGI for the root's own Python, as a package install would.

        Asterisk runs chrooted, so the AGI cannot use the host's virtualenv.
        The script goes into the instance's agi-bin with the root's python3 as
        its interpreter; what it imports (textback, pyst2's `asterisk`, six; all
        pure Python) is copied from this checkout and the host's installed
        packages into the instance's python/ directory, which Asterisk's
        PYTHONPATH names, and byte-compiled there by the root's Python.
        """
        import importlib.util

        target = self.instance_dir / "python"
        target.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(REPO_DIR / "textback", target / "textback", ignore=ignore)
        for module in ("asterisk", "six"):
            spec = importlib.util.find_spec(module)
            if spec is None or spec.origin is None:
                raise LabError(f"the routing AGI needs {module!r} (pyst2, six) installed on the host; "
                               f"run `make setup`")
            if spec.submodule_search_locations:
                shutil.copytree(Path(spec.origin).parent, target / module, ignore=ignore)
            else:
                shutil.copyfile(spec.origin, target / Path(spec.origin).name)
        agi = self.instance_dir / "agi-bin" / ROUTING_AGI.name
        _, body = ROUTING_AGI.read_text().split("\n", 1)
        agi.write_text(f"#!{PYTHON_IN_ROOT}\n{body}")
        agi.chmod(0o755)
        result = subprocess.run(
            ["chroot", str(self.root), PYTHON_IN_ROOT, "-m", "compileall", "-q",
             str(INSTANCES_IN_ROOT / self.instance_id / "python")],
            capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
        if result.returncode != 0:
            raise LabError(f"byte-compiling the routing AGI's modules failed: {result.stdout!r} {result.stderr!r}")

    def _launch_asterisk(self) -> None:
        # A private mount namespace holds the chroot's /proc: it can never
        # leak onto the host and vanishes when Asterisk exits.
        argv = [
            "unshare", "--mount", "--propagation", "private", f"--mount-proc={self.root}/proc",
            "chroot", str(self.root),
            ASTERISK_IN_ROOT, "-C", self._conf_in_root, "-f", "-n", "-q",
        ]
        # AGI scripts inherit Asterisk's environment: the routing AGI finds its modules here.
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "PYTHONPATH": str(INSTANCES_IN_ROOT / self.instance_id / "python")}
        with open(self.console_log, "wb") as console:
            self._asterisk = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, start_new_session=True,
                env=env,
            )

    def _wait_ready(self, deadline: float) -> None:
        """Poll for the control socket, then let Asterisk itself say when it is fully booted."""
        control_socket = self.instance_dir / "run" / "asterisk.ctl"
        while not control_socket.exists():
            self._raise_if_exited()
            if time.monotonic() > deadline:
                raise LabError(f"Asterisk made no control socket within {self.start_timeout}s\n{self.diagnostics()}")
            time.sleep(0.02)
        try:
            self.cli("core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
        except (LabError, subprocess.TimeoutExpired) as exc:
            self._raise_if_exited()
            raise LabError(f"Asterisk did not finish booting: {exc}\n{self.diagnostics()}") from None
        with socket.create_connection((self.ami_host, self.ami_port), timeout=5) as ami:
            banner = ami.makefile("rb").readline()
        if not banner.startswith(b"Asterisk Call Manager/"):
            raise LabError(f"unexpected AMI banner {banner!r}\n{self.diagnostics()}")

    def _raise_if_exited(self) -> None:
        if self._asterisk is not None and self._asterisk.poll() is not None:
            raise LabError(f"Asterisk exited with code {self._asterisk.returncode}\n{self.diagnostics()}")

    def diagnostics(self) -> str:
        """The tails of Asterisk's console output and log, for error messages."""
        return (
            f"--- {self.console_log}\n{_tail(self.console_log)}\n"
            f"--- {self.asterisk_log}\n{_tail(self.asterisk_log)}"
        )

    # ---------------------------------------------------------------- control
    def cli(self, command: str, timeout: float = 30.0) -> str:
        """Run an Asterisk CLI command (asterisk -rx inside the chroot); return its output."""
        if self.root is None:
            raise LabError("lab PBX not started")
        result = subprocess.run(
            ["chroot", str(self.root), ASTERISK_IN_ROOT, "-C", self._conf_in_root, "-rx", command],
            capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
        output = result.stdout.decode(errors="replace")
        if result.returncode != 0:
            raise LabError(f"asterisk -rx {command!r} failed ({result.returncode}): {output}{result.stderr.decode(errors='replace')}")
        return output

    # ----------------------------------------------------------------- actors
    def _spawn(self, cls: type[SippActor], label: str, scenario: str, args: list[str],
               trace_messages: bool = True) -> SippActor:
        if self._asterisk is None:
            raise LabError("lab PBX not started")
        stem = self.workdir / "sipp" / f"{next(self._actor_numbers):03d}-{label}"
        stem.parent.mkdir(exist_ok=True)
        actor = cls(label, scenario, args, stem, self.instance_id, trace_messages)
        self._actors.append(actor)
        return actor

    def phone(self, name: str, behaviour: str, answer_after: float = 1.0, talk_seconds: float = 2.0,
              transfer_to: str = "202", consult_seconds: float = 3.0, calls: int = 1) -> SippActor:
        """Start phone `name` for `calls` calls (at once or one after another); returns once it is listening.

        behaviour: "noanswer" (rings until CANCELled), "answer" (answers after
        answer_after s, hangs up after talk_seconds s unless the far end does
        first), "busy" (486), "refer" (answers, talks, then blind-transfers
        the caller to extension `transfer_to` with a SIP REFER) or "atxfer"
        (answers, talks, dials the attended-transfer code *2 and
        `transfer_to` as SIP INFO DTMF, consults for consult_seconds, then
        hangs up, which completes the transfer).
        """
        if name not in PHONES:
            raise ValueError(f"unknown phone {name!r}; lab phones: {sorted(PHONES)}")
        if behaviour not in PHONE_SCENARIOS:
            raise ValueError(f"unknown behaviour {behaviour!r}; one of {sorted(PHONE_SCENARIOS)}")
        ip, port = PHONES[name]
        guard = SIPP_GUARD_SECONDS + answer_after + talk_seconds + consult_seconds
        args = [
            "-i", ip, "-p", str(port), "-mp", str(MEDIA_PORTS[name]),
            "-m", str(calls), "-timeout", f"{guard:.0f}s", "-timeout_error",
        ]
        if behaviour in ("answer", "refer", "atxfer"):  # the scenarios that declare timing variables
            args += ["-set", "answer_ms", _ms(answer_after), "-set", "talk_ms", _ms(talk_seconds)]
        if behaviour == "refer":
            args += ["-key", "transfer_to", transfer_to]
        if behaviour == "atxfer":  # SIPp cannot split a key: one key per DTMF digit
            if not re.fullmatch(r"\d{3}", transfer_to):
                raise ValueError("atxfer phones transfer to a three-digit extension")
            args += ["-set", "consult_ms", _ms(consult_seconds)]
            for position, digit in enumerate(transfer_to, 1):
                args += ["-key", f"digit{position}", digit]
        actor = self._spawn(SippActor, f"{name}-{behaviour}", PHONE_SCENARIOS[behaviour], args)
        actor.wait_listening(ip, port)
        return actor

    def call(self, caller: str, did: str, hangup_after: float | None = None, talk_seconds: float = 2.0,
             source: str = "carrier", from_header: str | None = None) -> SippActor:
        """`source` (the carrier, or an office phone) calls `did` from `caller`.

        hangup_after: CANCEL after ringing that long (None: ring until a final
        answer).  If answered, BYE after talk_seconds unless the far end hangs
        up first.  Rejections (404/480/486/487/503/603) are ACKed and end cleanly.
        from_header: the From header without its tag, for caller IDs that are
        not a plain number (default `<sip:CALLER@source-ip>`, or
        `<sip:source-ip>` with no user part when caller is "").
        Several calls may run at once: each binds a free port.
        """
        ip = CALL_SOURCES[source]
        if from_header is None:
            from_header = f"<sip:{caller}@{ip}>" if caller else f"<sip:{ip}>"
        guard = SIPP_GUARD_SECONDS + (hangup_after or 0.0) + talk_seconds
        args = [
            "-i", ip, "-p", str(_free_udp_port(ip)),
            "-mp", str(next(self._call_media_ports)),
            "-m", "1", "-timeout", f"{guard:.0f}s", "-timeout_error",
            "-key", "from_header", from_header, "-key", "did", did,
            "-set", "ring_limit_ms", _ms(hangup_after) if hangup_after is not None else str(NEVER_MS),
            "-set", "talk_ms", _ms(talk_seconds),
            f"{self.ami_host}:{self.sip_port}",
        ]
        label = re.sub(r"[^\w+.-]", "_", f"call-{caller or 'nobody'}-to-{did}")
        return self._spawn(SippActor, label, "carrier-call.xml", args)

    def rejected_calls(self, callers: list[str], did: str, rate: float) -> SippActor:
        """One SIPp places a call from each caller in turn to `did`, `rate` new calls a second.

        For load: `did` must end each call at once without answering (the offline phone,
        +12125550105); SIPp's exit code says whether every call ended that way. SIP messages
        are not traced (-trace_msg would write every one at hundreds a second); errors are.
        """
        stem = self.workdir / "sipp" / f"callers-{next(self._actor_numbers):03d}.csv"
        stem.parent.mkdir(exist_ok=True)
        stem.write_text("SEQUENTIAL\n" + "".join(f"{caller};\n" for caller in callers))
        ip = CALL_SOURCES["carrier"]
        args = [
            "-i", ip, "-p", str(_free_udp_port(ip)), "-mp", str(next(self._call_media_ports)),
            "-inf", str(stem), "-m", str(len(callers)), "-r", f"{rate:g}", "-rp", "1000",
            "-timeout", f"{SIPP_GUARD_SECONDS + len(callers) / rate:.0f}s", "-timeout_error",
            "-key", "did", did, f"{self.ami_host}:{self.sip_port}",
        ]
        return self._spawn(SippActor, f"calls-{len(callers)}-at-{rate:g}-to-{did}", "carrier-calls-rejected.xml",
                           args, trace_messages=False)

    def message_sink(self) -> MessageSink:
        """Start the carrier's SMS side on 127.0.0.3:5060; returns once it is listening."""
        args = [
            "-i", CARRIER_IP, "-p", str(CARRIER_SIP_PORT), "-mp", str(MEDIA_PORTS["sink"]),
            "-timeout", f"{SINK_GUARD_SECONDS:.0f}s",
        ]
        sink = self._spawn(MessageSink, "message-sink", "carrier-message-sink.xml", args)
        sink.wait_listening(CARRIER_IP, CARRIER_SIP_PORT)
        return sink

    def send_sms(self, sender: str, did: str, body: str, timeout: float = 30.0,
                 from_header: str | None = None, call_id: str | None = None,
                 content_type: str = "text/plain;charset=UTF-8") -> int:
        """The carrier delivers a text (SIP MESSAGE, text/plain UTF-8); returns the final SIP status.

        content_type: the MESSAGE's Content-Type, for a body in another charset or not text;
        `body` then goes out as its surrogate-escaped bytes (str(bytes, "utf-8",
        "surrogateescape") for bytes that are not UTF-8).
        from_header: the From header without its tag, for senders that carriers
        dress up, e.g. `"John Smith" <sip:+12125550123@carrier.example>`.
        With `call_id`, the MESSAGE carries that Call-ID (CSeq is always 1): sent twice, it is
        one text delivered again in a new transaction (a new Via branch), as a carrier re-sends.
        """
        if from_header is None:
            from_header = f"<sip:{sender}@{CARRIER_IP}>"
        args = [
            "-i", CARRIER_IP, "-p", str(CARRIER_SMS_PORT), "-mp", str(MEDIA_PORTS["sms"]),
            "-m", "1", "-timeout", f"{timeout:.0f}s", "-timeout_error",
            "-key", "from_header", from_header, "-key", "did", did, "-key", "body", body,
            "-key", "content_type", content_type,
            *(["-cid_str", call_id] if call_id else []),
            f"{self.ami_host}:{self.sip_port}",
        ]
        actor = self._spawn(SippActor, f"sms-{sender}-to-{did}", "carrier-send-message.xml", args)
        actor.wait(timeout + 5)
        for message in parse_sipp_trace(actor.message_log):
            status = message["start_line"].split(" ")
            if message["start_line"].startswith("SIP/2.0 ") and int(status[1]) >= 200:
                return int(status[1])
        raise LabError(f"no final response to the MESSAGE\n{actor.diagnostics()}")


class SecondLabPBX(LabPBX):
    """A second Asterisk in the same root beside the lab PBX, on AMI and SIP ports of its own,
    with its own instance tree (configs, CDR, logs) and lock: for a daemon that serves two
    PBXs. The SIPp actors' addresses (the carrier, the phones, the message sink) are the
    lab's own and shared: place one PBX's calls at a time."""

    ami_port = 15039
    sip_port = 15061
    lock_file = Path("/run/textback-lab-second.lock")
