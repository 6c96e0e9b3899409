"""The Debian package on a clean Debian 12, booted with systemd as PID 1.

One machine for the module (lab.machine): the cached bookworm root is copied,
booted with `systemd-nspawn --boot`, and textback is installed with the commands
that open the README's "Install on your own PBX", read from the README itself:

    apt install ./textback_<version>_amd64.deb
    textback init                 (its answers given as flags, as the README says)
    systemctl enable --now textback

It then runs against the lab PBX, which it reaches over the shared loopback.
The tests run in file order on that one machine, each leaving the service up.
On the same machine, a fleet of one company, acme, is then written as docs/fleet.md
says, on the session's PostgreSQL (its socket directory bound into the machine), and
`textback@acme` started, checked, stopped and refused a broken file.
"""

from __future__ import annotations

import http.cookiejar
import json
import re
import sqlite3
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml

from lab.configs import BUSINESS_NUMBER, HOMEOWNER
from lab.harness import SMTP_SINK_PORT, SmtpSink, start_smtp_sink, wait_until
from lab.machine import Machine, bookworm_root, debian_package
from lab.postgres import PostgresServer
from tests.cdr_rows import COLUMNS, moved
from tests.test_cdr_mariadb import FREEPBX_CDR_TABLE, MariaDB, insert_statement
from tests.test_cdr_mariadb import PORT as MARIADB_PORT
from textback.store import MIGRATIONS
from textback.unit import company_unit, packaged_unit

# A fixture may build a package first (lab.machine.debian_package allows 30 minutes: a cache
# miss on busy cores), then boot a machine and install into it.
pytestmark = [pytest.mark.lab, pytest.mark.timeout(2400)]

DELAY = 5.0  # long enough for a restart to come between the call and its text
WEB_PORT = 18088
CONFIG = "/etc/textback/config.yaml"
CDR = "/var/log/asterisk/cdr-csv"
CALLER_DUE, CALLER_DOWN = "+12125550145", "+12125550167"
CALLER_BEFORE, CALLER_DURING = "+12125550178", "+12125550189"
# main before the package existed: the release an installed PBX upgrades from (Makefile too).
UPGRADE_FROM = "75583df"
PASSWORD = "correct horse battery staple"
README = Path(__file__).resolve().parents[1] / "README.md"
# apt unpacks ~130 MB and byte-compiles it: minutes on cores other test runs share.
APT_SECONDS = 900
RESTART_GAP_SECONDS = 20  # longer than a missed call on the lab rings (about 7 s)
PG_SOCKET_DIR = "/run/postgresql"
FLEET = "/etc/textback/fleet.yaml"
ACME = "/etc/textback/companies.d/acme.yaml"
ACME_WEB_PORT = WEB_PORT + 2  # + 1 is the upgrade machine's
ACME_NUMBER = "+12125550162"  # none of the lab's calls dial it
FLEET_PASSWORD = "fleet database password"
REPO_DEBIAN = README.parent / "debian"
FLEET_DOC = README.parent / "docs" / "fleet.md"
TEXT = ("Hi, this is Acme Remodeling. Sorry we missed your call! How can we help?"
        " Reply STOP to opt out.")


@dataclass
class Installed:
    machine: Machine
    deb: Path
    install_seconds: float
    ready_seconds: float
    mail: SmtpSink


def _configure_for_the_lab(machine: Machine, lab_pbx, web_port: int = WEB_PORT) -> None:
    """What an installer edits after `textback init`: the lab's AMI secret, its SIP trunk as
    the gateway, the mail relay, and the web inbox."""
    machine.path("/etc/textback/ami.secret").write_text(lab_pbx.ami_secret_file.read_text())
    path = machine.path(CONFIG)
    config = yaml.safe_load(path.read_text())
    config["text"]["delay_seconds"] = DELAY
    config["ami"].update(ping_interval=2, ping_timeout=2)
    config["gateway"] = {"type": "asterisk", "asterisk": {
        "destination": "pjsip:carrier/sip:{to}@127.0.0.3:5060", "from_uri": "sip:{sender}@127.0.0.1"}}
    config["smtp"].update(host="127.0.0.1", port=SMTP_SINK_PORT)
    config["recovery"] = {"max_age_minutes": 30,
                          "cdr": {"type": "csv", "csv": {"path": f"{CDR}/Master.csv"}}}
    config["web"] = {"listen_host": "127.0.0.1", "port": web_port,
                     "public_url": f"http://127.0.0.1:{web_port}"}
    path.write_text(yaml.safe_dump(config, sort_keys=False))  # keeps its owner and mode


def readme_install_commands() -> list[str]:
    """The commands in the first sh block of the README's "Install on your own PBX",
    without their comments."""
    section = README.read_text().split("\n## Install on your own PBX\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [command for line in block.splitlines() if (command := line.split("#", 1)[0].strip())]


def readme_section(title: str) -> str:
    """The README's section `title` (a ### heading), up to the next heading."""
    return README.read_text().split(f"\n### {title}\n", 1)[1].split("\n#", 1)[0]


def test_the_readme_installs_with_the_three_commands_this_module_runs():
    assert readme_install_commands() == ["apt install ./textback_<version>_amd64.deb",
                                         "textback init", "systemctl enable --now textback"]


@pytest.fixture(scope="module")
def installed(lab_pbx, postgres_server, tmp_path_factory):
    deb = debian_package()
    apt_install, init, enable = readme_install_commands()
    version = deb.name.removeprefix("textback_").removesuffix("_amd64.deb")
    machine = Machine(tmp_path_factory.mktemp("bookworm"), "textback-deb")
    mail, controller = start_smtp_sink()
    try:
        lab_pbx.cdr_csv.parent.mkdir(parents=True, exist_ok=True)
        # The session's PostgreSQL is the fleet's database server (docs/fleet.md: a Unix
        # socket on the database's own host, /var/run/postgresql).
        machine.boot(bookworm_root(), read_only={lab_pbx.cdr_csv.parent: CDR,
                                                 postgres_server.root: PG_SOCKET_DIR})
        machine.put(deb, f"/root/{deb.name}")
        started = time.monotonic()
        # As written, without -y and with nothing on stdin: apt may neither ask nor fetch.
        machine.run("sh", "-c", f"cd /root && {apt_install.replace('<version>', version)}",
                    input="", timeout=APT_SECONDS)
        install_seconds = time.monotonic() - started
        _init(machine, lab_pbx, init)
        _configure_for_the_lab(machine, lab_pbx)
        started = time.monotonic()
        machine.run(*enable.split())  # Type=notify: returns at READY
        ready_seconds = time.monotonic() - started
        print(f"\n.deb {deb.stat().st_size / 1e6:.1f} MB; apt install {install_seconds:.1f} s; "
              f"systemctl start -> READY {ready_seconds:.2f} s")
        yield Installed(machine, deb, install_seconds, ready_seconds, mail)
    finally:
        if machine.leader:
            for unit in ("textback", "textback@acme"):
                journal = machine.run("journalctl", "--no-pager", "-u", unit, check=False).stdout
                (machine.log_path.parent / f"{unit}.journal").write_text(journal)
        machine.remove()
        controller.stop()


def _init(machine: Machine, lab_pbx, command: str = "textback init") -> None:
    machine.run(*command.split(), "--no-input", "--business-name", "Acme Remodeling",
                "--timezone", "America/New_York", "--number", BUSINESS_NUMBER,
                "--owner", "Dana Reyes <dana@example.com>", "--ami-port", str(lab_pbx.ami_port),
                "--trunk", "carrier")


def journal(machine: Machine, *args: str) -> str:
    return machine.run("journalctl", "--no-pager", "-u", "textback", *args).stdout


def texts_to(sink, number: str = HOMEOWNER) -> list[dict]:
    return [m for m in sink.messages() if number in m["to"]]


def miss_a_call(lab_pbx, caller: str = HOMEOWNER) -> None:
    phone = lab_pbx.phone("office1", "noanswer")
    lab_pbx.call(caller, BUSINESS_NUMBER).wait(30)
    phone.kill()


def test_the_package_installs_the_program_its_user_and_the_shipped_unit(installed):
    m = installed.machine
    assert re.fullmatch(r"textback_[0-9][0-9A-Za-z.+~]*_amd64\.deb", installed.deb.name)
    assert m.run("readlink", "/usr/bin/textback").stdout.strip() == "/opt/textback/bin/textback"
    assert m.run("readlink", "-f", "/opt/textback/bin/python").stdout.strip() == "/usr/bin/python3.11"
    # pip built the environment and stays behind: nothing is fetched on the PBX.
    assert not m.path("/opt/textback/bin/pip").exists()
    assert m.run("/opt/textback/bin/python", "-m", "pip", "--version", check=False).returncode != 0
    # Compiled once by postinst: the sandboxed service cannot write its own bytecode.
    site = "/opt/textback/lib/python3.11/site-packages"
    assert m.path(f"{site}/textback/__pycache__/daemon.cpython-311.pyc").is_file()
    assert m.path(f"{site}/aiohttp/__pycache__/web.cpython-311.pyc").is_file()
    assert m.path("/usr/share/doc/textback/config.example.yaml").is_file()
    # The version is git's, with the changelog entry the build wrote for it.
    version = m.run("dpkg-query", "-W", "-f=${Version}", "textback").stdout
    assert installed.deb.name == f"textback_{version}_amd64.deb"
    assert re.fullmatch(r"\d+\.\d+\.\d+(\+git\d+\.g[0-9a-f]{7}(\.dirty[0-9a-f]{8})?)?", version)
    changelog = m.run("sh", "-c", "zcat /usr/share/doc/textback/changelog.gz").stdout
    assert changelog.startswith(f"textback ({version}) unstable; urgency=medium\n")
    assert "Built from git commit" in changelog
    # Every file the package's own messages point the installer to is there.
    said = "".join(m.path(f"/var/lib/dpkg/info/textback.{script}").read_text()
                   for script in ("postinst", "prerm", "postrm"))
    named = re.findall(r"/usr/share/doc/textback/[\w.]+", said)
    assert named and all(m.path(path).is_file() for path in named), named
    assert m.path("/lib/systemd/system/textback.service").read_text() == packaged_unit()
    # The fleet's template (textback@acme runs company acme), shipped neither enabled nor started.
    assert m.path("/lib/systemd/system/textback@.service").read_text() == company_unit()
    assert not list(m.path("/etc/systemd/system").rglob("textback@*"))
    assert m.run("stat", "-c", "%U:%G %a", "/var/lib/textback").stdout.split() == ["textback:textback", "755"]
    assert m.run("stat", "-c", "%U:%G %a", CONFIG, "/etc/textback/ami.secret").stdout.split("\n")[:2] \
        == ["root:textback 640", "root:textback 640"]
    # The package never writes Asterisk's files: they come only from `textback install`.
    owned = m.run("dpkg", "-L", "textback").stdout.splitlines()
    assert not [p for p in owned if p.startswith(("/etc/asterisk", "/usr/share/asterisk", "/var/lib/asterisk"))]


def test_lintian_reports_no_error_and_the_readme_explains_each_warning_and_override(installed):
    """build-deb.sh fails on a lintian error; a warning or override the README does not name is a
    new one nobody has looked at (a new wheel's libraries, a changed debhelper)."""
    report = installed.deb.with_suffix(".lintian").read_text()
    tags = {tag: severity for severity, tag
            in re.findall(r"^([EW]): textback: (\S+)", report, re.MULTILINE)}
    said = readme_section("The Debian package")
    assert "E" not in tags.values(), report
    assert tags and not [tag for tag in tags if f"`{tag}`" not in said], report
    overridden = re.findall(r"^textback: (\S+)", (REPO_DEBIAN / "textback.lintian-overrides")
                            .read_text(), re.MULTILINE)
    assert overridden and not [tag for tag in overridden if f"`{tag}`" not in said]


def test_the_service_is_ready_only_after_its_ami_login(installed):
    m = installed.machine
    state = m.show("textback", "ActiveState", "SubState", "Type", "NRestarts", "User")
    assert state == {"ActiveState": "active", "SubState": "running", "Type": "notify",
                     "NRestarts": "0", "User": "textback"}
    lines = journal(m, "-o", "cat").splitlines()
    logged_in = next(i for i, line in enumerate(lines) if "AMI logged in" in line)
    started = next(i for i, line in enumerate(lines) if line.startswith("Started textback.service"))
    assert logged_in < started, "\n".join(lines)


def test_a_missed_call_is_texted(installed, lab_pbx, sink):
    miss_a_call(lab_pbx)
    [text] = wait_until(lambda: texts_to(sink), DELAY + 10, "the text at the carrier")
    assert text["body"] == TEXT and BUSINESS_NUMBER in text["from"]


def test_a_restart_loses_neither_a_due_text_nor_a_call_missed_while_stopped(installed, lab_pbx,
                                                                           sink):
    m = installed.machine
    miss_a_call(lab_pbx, CALLER_DUE)
    wait_until(lambda: "text due at" in journal(m).split(f"call missed: {CALLER_DUE}")[-1], 15,
               "the text to be due")
    before = m.show("textback", "MainPID")["MainPID"]
    m.run("systemctl", "restart", "textback")  # before the text is sent
    assert m.show("textback", "MainPID")["MainPID"] != before

    m.run("systemctl", "stop", "textback")
    miss_a_call(lab_pbx, CALLER_DOWN)  # nobody listens to AMI: only the CDR will know
    m.run("systemctl", "start", "textback")

    for caller in (CALLER_DUE, CALLER_DOWN):
        [text] = wait_until(lambda: texts_to(sink, caller), DELAY + 20, f"the text to {caller}")
        assert text["body"] == TEXT
    time.sleep(DELAY)
    assert len(texts_to(sink, CALLER_DUE)) == len(texts_to(sink, CALLER_DOWN)) == 1
    assert f"call recovered from the CDR: {CALLER_DOWN} calling" in journal(m, "-o", "cat")


def test_the_web_inbox_signs_in_with_argon2_inside_the_sandbox(installed):
    m = installed.machine
    m.path("/root/password").write_text(PASSWORD + "\n")
    m.run("textback", "passwd", "-c", CONFIG, "dana", "--password-file", "/root/password")
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = browser.open(f"http://127.0.0.1:{WEB_PORT}/signin", timeout=10).read().decode()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"account": "dana@example.com", "password": PASSWORD,
                                   "csrf": csrf, "next": "/"}).encode()
    inbox = browser.open(f"http://127.0.0.1:{WEB_PORT}/signin", data=form, timeout=30)
    assert inbox.geturl() == f"http://127.0.0.1:{WEB_PORT}/"
    assert "(212) 555-0123" in inbox.read().decode()  # the homeowner's conversation
    assert "web: dana signed in" in journal(m, "-o", "cat")


# Not sandbox settings: how the service starts and restarts.
NOT_SANDBOX = {"Type", "NotifyAccess", "WatchdogSec", "TimeoutStartSec", "ExecStart", "Restart",
               "RestartSec", "RestartPreventExitStatus"}
COMPILED = """
import argon2, lxml.html, inscriptis, cryptography.fernet, pydantic, yaml, aiohttp, pymysql
import textback.daemon
assert argon2.PasswordHasher().verify(argon2.PasswordHasher().hash("pw"), "pw")
assert inscriptis.get_text("<p>Kitchen<br>remodel</p>").split() == ["Kitchen", "remodel"]
assert lxml.html.fromstring("<b>ok</b>").text == "ok"
cryptography.fernet.Fernet(cryptography.fernet.Fernet.generate_key()).encrypt(b"x")
print("compiled code ok")
"""


def run_under_the_units_sandbox(machine: Machine, code: str) -> str:
    """`code` run by the machine's systemd as a transient service with every sandbox line of
    the shipped unit (its user among them); returns what it printed."""
    section = packaged_unit().split("[Service]")[1].split("[Install]")[0]
    settings = [line for line in section.splitlines()
                if "=" in line and not line.startswith("#") and line.split("=")[0] not in NOT_SANDBOX]
    assert "MemoryDenyWriteExecute=yes" in settings and "SystemCallFilter=@system-service" in settings
    assert "User=textback" in settings and "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" in settings
    done = machine.run(
        "systemd-run", "--wait", "--pipe", "--quiet", *(f"--property={s}" for s in settings),
        "/opt/textback/bin/python", "-c", code, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_compiled_libraries_run_under_the_units_exact_sandbox(installed):
    """Reply mail (inscriptis, lxml), sign-in (argon2), secrets (cryptography), the CDR reader
    (pymysql): each library with compiled code, run by systemd under every sandbox line of the
    shipped unit, MemoryDenyWriteExecute and the system-call filter among them."""
    assert "compiled code ok" in run_under_the_units_sandbox(installed.machine, COMPILED)


CDR_READER = """
import asyncio, time
from pydantic import SecretStr
from textback.cdr import FreePbxCdr
reader = FreePbxCdr("127.0.0.1", {port}, "asteriskcdrdb", "textback", SecretStr("{secret}"), None)
records = asyncio.run(reader.records_since(time.time() - 600))
print(" ".join(sorted(r.uniqueid for r in records)))
"""


def test_the_cdr_reader_reads_freepbxs_cdr_database_under_the_units_exact_sandbox(
        installed, tmp_path):
    """FreePBX's asteriskcdrdb on a real MariaDB, read over loopback by the packaged textback,
    run under the shipped unit's sandbox, as the user `textback init` tells the admin to create."""
    server = MariaDB(tmp_path)
    try:
        server.start()
        rows = moved("freepbx_queue_voicemail", time.time() - 60)
        server.sql(f"CREATE DATABASE asteriskcdrdb; USE asteriskcdrdb; {FREEPBX_CDR_TABLE};"
                   "CREATE USER 'textback'@'127.0.0.1' IDENTIFIED BY 'cdr-reader';"
                   "GRANT SELECT ON asteriskcdrdb.cdr TO 'textback'@'127.0.0.1';"
                   + "".join(insert_statement(row, BUSINESS_NUMBER) for row in rows))
        printed = run_under_the_units_sandbox(
            installed.machine, CDR_READER.format(port=MARIADB_PORT, secret="cdr-reader"))
    finally:
        server.stop()
    uniqueids = sorted(row[COLUMNS.index("uniqueid")] for row in rows)
    assert len(uniqueids) > 1 and printed.split() == uniqueids, printed


def test_status_inside_the_machine_reports_the_running_daemon(installed):
    done = installed.machine.run("textback", "status", "-c", CONFIG, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in done.stdout.splitlines()
                if re.match(r"\S", line))
    pid = installed.machine.show("textback", "MainPID")["MainPID"]
    assert rows["daemon"].startswith(f"up (pid {pid} ")
    assert rows["AMI"].startswith("logged in")
    assert rows["outbox"].startswith("0 text(s) waiting")
    assert rows["version"] == installed.machine.run(
        "/opt/textback/bin/python", "-c",
        "import importlib.metadata as m; print(m.version('textback'))").stdout.strip()


def test_kill_9_of_the_main_process_is_restarted_by_systemd(installed):
    m = installed.machine
    before = m.show("textback", "MainPID", "NRestarts")
    m.run("sh", "-c", f"kill -9 {before['MainPID']}")  # an admin's kill, not systemd's

    def restarted() -> bool:
        now = m.show("textback", "ActiveState", "MainPID", "NRestarts")
        return (now["ActiveState"] == "active" and now["MainPID"] not in ("0", before["MainPID"])
                and now["NRestarts"] == str(int(before["NRestarts"]) + 1))

    wait_until(restarted, 30, "the service restarted after SIGKILL")
    assert "status=9/KILL" in journal(m, "-o", "cat")


def test_the_journal_holds_one_line_per_event_with_its_priority(installed):
    m = installed.machine
    ours = journal(m, "-o", "cat", "_COMM=textback").splitlines()
    unformatted = [line for line in ours
                   if not re.match(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) +[\w.]+: ", line)]
    assert ours and not unformatted, unformatted
    assert not any(re.match(r"\d{4}-\d\d-\d\d ", line) for line in ours)  # journald stamps it
    warnings = journal(m, "-o", "cat", "-p", "warning", "_COMM=textback").splitlines()
    assert all(not line.startswith("INFO") for line in warnings)


# -- a fleet's company under textback@.service, on the same machine ---------------------------

@dataclass
class Acme:
    machine: Machine
    server: PostgresServer
    database: str
    started_seconds: float = 0.0


@pytest.fixture(scope="module")
def acme(installed, postgres_server):
    """A fleet of one company written as docs/fleet.md says: the main file with the shared
    sections (the fleet's PostgreSQL, its password in a file, the mail relay), acme's own file
    in companies.d, each readable by the textback group as /etc/textback/config.yaml is.
    The company has its own number and web port beside the running textback.service."""
    m = installed.machine
    role = postgres_server.password_role(FLEET_PASSWORD)
    url = postgres_server.new_database(owner=role)
    database = urllib.parse.urlsplit(url).path.lstrip("/")
    ami = yaml.safe_load(m.path(CONFIG).read_text())["ami"]
    m.path("/etc/textback/db.secret").write_text(FLEET_PASSWORD + "\n")
    m.path(FLEET).write_text(f"""\
companies: /etc/textback/companies.d
storage:
  url: postgresql://{role}@/{database}?host={PG_SOCKET_DIR}
  password: {{file: /etc/textback/db.secret}}
smtp: {{host: 127.0.0.1, port: {SMTP_SINK_PORT}, security: none, sender: textback@installer.example}}
admin_email: noc@installer.example
logging: {{level: INFO}}
""")
    m.path(ACME).parent.mkdir()
    m.path(ACME).write_text(f"""\
company: {{id: acme, name: "Acme Remodeling"}}
business: {{name: "Acme Remodeling", timezone: America/New_York}}
ami: {{host: {ami["host"]}, port: {ami["port"]}, username: {ami["username"]}, secret: {{file: /etc/textback/ami.secret}}}}
inbound: {{trunks: [carrier]}}
owners: [{{id: dana, name: Dana Reyes, email: dana@example.com}}]
numbers: [{{number: "{ACME_NUMBER}", owner: dana}}]
text: {{template: "Hi, this is {{business_name}}. Sorry we missed your call!"}}
gateway: {{type: asterisk, asterisk: {{destination: "pjsip:carrier/sip:{{to}}@127.0.0.3:5060", from_uri: "sip:{{sender}}@127.0.0.1"}}}}
web: {{listen_host: 127.0.0.1, port: {ACME_WEB_PORT}, public_url: "http://127.0.0.1:{ACME_WEB_PORT}"}}
""")
    *permissions, _check, _start = fleet_unit_commands()
    for command in permissions:
        m.run("sh", "-c", command)
    return Acme(m, postgres_server, database)


def fleet_unit_commands() -> list[str]:
    """The commands docs/fleet.md gives to start a company's daemon under systemd, once the
    fleet's files are written: the files' group and modes, the check, the start."""
    section = FLEET_DOC.read_text().split("**One daemon per company with systemd**", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_docs_fleet_starts_a_company_with_the_commands_this_module_runs():
    *permissions, check, start = fleet_unit_commands()
    assert [command.split()[:2] for command in permissions] == [
        ["chgrp", "textback"], ["chmod", "0750"], ["chmod", "0640"]]
    assert check == f"textback check --fleet {FLEET}"
    assert start == "systemctl enable --now textback@acme"


def acme_journal(machine: Machine) -> str:
    return machine.run("journalctl", "--no-pager", "-o", "cat", "-u", "textback@acme").stdout


def test_check_fleet_passes_the_fleets_files_inside_the_machine(acme):
    _permissions, check, _start = fleet_unit_commands()[-3:]
    done = acme.machine.run(*check.split())
    assert done.stdout.splitlines() == [
        f"ok    fleet: {FLEET} (shares storage, smtp, admin_email, logging; companies in "
        "/etc/textback/companies.d)",
        f"ok    company acme: {ACME} (1 business number(s), 1 owner(s))"]


def test_textback_at_acme_runs_as_textback_in_its_own_state_directory(acme):
    m = acme.machine
    start = fleet_unit_commands()[-1]
    started = time.monotonic()
    m.run(*start.split())  # Type=notify: returns at READY
    acme.started_seconds = time.monotonic() - started
    print(f"\n{start} -> READY {acme.started_seconds:.2f} s")
    assert m.run("systemctl", "is-enabled", "textback@acme").stdout.strip() == "enabled"
    state = m.show("textback@acme", "ActiveState", "SubState", "NRestarts", "MainPID",
                   "StateDirectory")
    assert state["ActiveState"] == "active" and state["SubState"] == "running", state
    assert state["NRestarts"] == "0" and state["StateDirectory"] == "textback/acme"
    pid = state["MainPID"]
    status = _status_of(m, pid)
    uid = m.run("id", "-u", "textback").stdout.strip()
    assert status["Uid"].split() == [uid] * 4 and uid != "0"
    assert m.run("stat", "-c", "%U:%G %a", "/var/lib/textback/acme").stdout.split() \
        == ["textback:textback", "755"]
    # The company's run lock is in its state directory, held by this daemon.
    holder = json.loads(m.path("/var/lib/textback/acme/textback.db.lock").read_text())
    assert str(holder["pid"]) == pid
    assert "AMI logged in" in acme_journal(m)
    page = urllib.request.urlopen(f"http://127.0.0.1:{ACME_WEB_PORT}/signin", timeout=10)
    assert page.status == 200 and 'name="csrf"' in page.read().decode()
    # It registered itself in the fleet's database as company acme.
    with psycopg.connect(acme.server.url(acme.database)) as connection:
        assert connection.execute("SELECT companies.slug FROM daemons JOIN companies "
                                  "ON companies.id = daemons.company_id").fetchall() == [("acme",)]


def _status_of(machine: Machine, pid: str) -> dict[str, str]:
    """The process's /proc status, as the machine's own /proc numbers it."""
    text = machine.run("cat", f"/proc/{pid}/status").stdout
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_textback_at_acme_stops_cleanly(acme):
    m = acme.machine
    done = m.run("systemctl", "stop", "textback@acme", check=False)
    assert done.returncode == 0, done.stderr
    state = m.show("textback@acme", "ActiveState", "Result", "ExecMainStatus")
    assert state == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    failed = m.run("systemctl", "list-units", "--failed", "--plain", "--no-legend").stdout
    assert "textback" not in failed, failed


def test_a_broken_company_file_fails_the_start_naming_its_file_and_line(acme):
    m = acme.machine
    text = m.path(ACME).read_text()
    m.path(ACME).write_text(text.replace(f"port: {ACME_WEB_PORT},", "port: eighty,"))
    line = 1 + next(i for i, row in enumerate(text.splitlines()) if row.startswith("web:"))
    try:
        done = m.run("systemctl", "start", "textback@acme", check=False, timeout=60)
        assert done.returncode != 0
        assert m.show("textback@acme", "ActiveState")["ActiveState"] == "failed"
        assert f"{ACME}: web.port (line {line}): Input should be a valid integer" \
            in acme_journal(m)
    finally:
        m.path(ACME).write_text(text)
        m.run("systemctl", "reset-failed", "textback@acme", check=False)


# -- upgrade from the previous release, remove, purge: a second machine ----------------------

@dataclass
class Upgrade:
    machine: Machine
    old: Path
    new: Path


@pytest.fixture(scope="module")
def upgrade(installed, lab_pbx, tmp_path_factory):
    """The previous release installed and running, with one call texted; the first machine's
    service stopped, so only this one answers the lab's calls."""
    installed.machine.run("systemctl", "stop", "textback")
    old, new = debian_package(UPGRADE_FROM), debian_package()
    machine = Machine(tmp_path_factory.mktemp("upgrade"), "textback-upgrade")
    try:
        machine.boot(bookworm_root(), read_only={lab_pbx.cdr_csv.parent: CDR})
        for deb in (old, new):
            machine.put(deb, f"/root/{deb.name}")
        machine.run("sh", "-c", f"cd /root && apt install -y ./{old.name}", timeout=APT_SECONDS)
        _init(machine, lab_pbx)
        # What that release's `textback install --systemd` told the installer to do.
        machine.run("chgrp", "textback", CONFIG, "/etc/textback/ami.secret")
        machine.run("chmod", "0640", CONFIG, "/etc/textback/ami.secret")
        _configure_for_the_lab(machine, lab_pbx, web_port=WEB_PORT + 1)
        machine.run("systemctl", "enable", "--now", "textback")
        yield Upgrade(machine, old, new)
    finally:
        if machine.leader:
            (machine.log_path.parent / "textback.journal").write_text(
                machine.run("journalctl", "--no-pager", "-u", "textback", check=False).stdout)
        machine.remove()


def test_an_upgrade_migrates_keeps_the_config_restarts_once_and_loses_no_call(upgrade, lab_pbx,
                                                                               sink):
    m = upgrade.machine
    miss_a_call(lab_pbx, CALLER_BEFORE)
    wait_until(lambda: texts_to(sink, CALLER_BEFORE), DELAY + 10, "the old release's text")
    config = m.path(CONFIG).read_bytes()
    starts = journal(m, "-o", "cat").count("Started textback.service")
    before = m.show("textback", "InvocationID")["InvocationID"]

    # The upgrade's restart is a second or two; a drop-in widens its gap, as a slow start
    # would, so that a whole call rings and ends while neither release listens to AMI.
    dropin = m.path("/etc/systemd/system/textback.service.d/slow-start.conf")
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text(f"[Service]\nExecStartPre=/bin/sleep {RESTART_GAP_SECONDS}\n")
    m.run("systemctl", "daemon-reload")
    stopped = journal(m, "-o", "cat").count("Stopped textback.service")
    with ThreadPoolExecutor(1) as pool:
        upgrading = pool.submit(m.run, "sh", "-c", f"cd /root && apt install -y ./{upgrade.new.name}",
                                timeout=APT_SECONDS)
        wait_until(lambda: upgrading.done() or journal(m, "-o", "cat").count(
            "Stopped textback.service") > stopped, APT_SECONDS, "the upgrade to stop the old release")
        miss_a_call(lab_pbx, CALLER_DURING)
        # Still in the gap: the call was missed while nothing listened, so only the CDR knows it.
        assert m.show("textback", "ActiveState")["ActiveState"] == "activating"
        upgraded = upgrading.result()

    assert m.path(CONFIG).read_bytes() == config
    assert m.show("textback", "InvocationID")["InvocationID"] != before
    assert journal(m, "-o", "cat").count("Started textback.service") == starts + 1, upgraded.stdout
    version = m.run("dpkg-query", "-W", "-f=${Version}", "textback").stdout
    assert version in upgrade.new.name
    with sqlite3.connect(f"file:{m.path('/var/lib/textback/textback.db')}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("SELECT textback_version FROM written_by WHERE schema_version = ?",
                          (len(MIGRATIONS),)).fetchone() == (version,)
    for caller in (CALLER_BEFORE, CALLER_DURING):
        wait_until(lambda: texts_to(sink, caller), DELAY + 20, f"the text to {caller}")
    time.sleep(DELAY)
    assert len(texts_to(sink, CALLER_BEFORE)) == len(texts_to(sink, CALLER_DURING)) == 1
    assert f"call recovered from the CDR: {CALLER_DURING} calling" in journal(m, "-o", "cat")


def test_remove_keeps_config_and_data_and_purge_removes_only_the_config(upgrade):
    m = upgrade.machine
    m.run("textback", "--version")  # as root, who may write bytecode under /opt
    removed = m.run("apt", "remove", "-y", "textback")
    assert "/etc/textback and /var/lib/textback are kept" in removed.stderr + removed.stdout
    assert not m.path("/opt/textback").exists(), removed.stdout + removed.stderr  # nothing left
    assert m.path(CONFIG).is_file() and m.path("/var/lib/textback/textback.db").is_file()

    purged = m.run("apt", "purge", "-y", "textback")
    said = purged.stdout + purged.stderr
    assert "/etc/textback (config and secrets) removed" in said
    assert "Kept: /var/lib/textback" in said
    assert not m.path("/etc/textback").exists()
    assert m.path("/var/lib/textback/textback.db").is_file()
    assert m.run("getent", "passwd", "textback").stdout.startswith("textback:")
