"""textback as a systemd service: the unit (checked by systemd-analyze), sd_notify, the log format."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lab.configs import base_config, write_config
from textback import service
from textback.cli import main
from textback.unit import company_unit, packaged_unit

IN_STATE = {"storage.path": "/var/lib/textback/textback.db",
            "agi.routing_file": "/var/lib/textback/routing.json"}


def install(tmp_path, **overrides):
    path = write_config(tmp_path, base_config(tmp_path, **{**IN_STATE, **overrides}))
    units = tmp_path / "units"
    result = CliRunner().invoke(main, ["install", "--systemd", "-c", str(path), "--unit-dir",
                                       str(units), "--no-create-user"])
    return result, units / "textback.service"


def verify(unit) -> str:
    """systemd-analyze's complaints about our unit (it exits 0 even for unparseable lines)."""
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return "\n".join(line for line in done.stderr.splitlines() if unit.name in line)


def settings(unit) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in unit.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def test_the_unit_is_a_sandboxed_notify_service_that_systemd_accepts(tmp_path):
    result, unit = install(tmp_path)
    assert result.exit_code == 0, result.output
    assert verify(unit) == ""
    s = settings(unit)
    assert s["Type"] == "notify" and s["WatchdogSec"] == "30" and s["Restart"] == "on-failure"
    assert s["RestartPreventExitStatus"] == "2"  # a refused config is not retried every 5 s
    assert s["User"] == "textback" and s["StateDirectory"] == "textback"
    assert s["ProtectSystem"] == "strict" and s["ReadWritePaths"] == "/var/lib/textback"
    assert s["NoNewPrivileges"] == s["PrivateTmp"] == s["ProtectHome"] == "yes"
    assert s["CapabilityBoundingSet"] == "" and "AmbientCapabilities" not in s
    assert s["ExecStart"].endswith(f"-m textback run -c {tmp_path / 'config.yaml'}")


def test_reply_mail_on_port_25_keeps_only_the_capability_to_bind_it(tmp_path):
    result, unit = install(tmp_path, reply_mail={"domain": "reply.acme.example",
                                                 "listen_port": 25})
    assert result.exit_code == 0 and "reply_mail.listen_port 25 is below 1024" in result.output
    assert verify(unit) == ""
    s = settings(unit)
    assert s["CapabilityBoundingSet"] == s["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"


def test_a_database_outside_the_state_directory_is_refused(tmp_path):
    result, unit = install(tmp_path, **{"storage.path": str(tmp_path / "textback.db")})
    assert result.exit_code == 2 and not unit.exists()
    assert "storage.path" in result.output and "/var/lib/textback" in result.output


def test_a_media_directory_outside_the_state_directory_is_refused(tmp_path):
    result, unit = install(tmp_path, **{"media.directory": str(tmp_path / "photos")})
    assert result.exit_code == 2 and not unit.exists()
    assert "media.directory" in result.output and "/var/lib/textback" in result.output


def test_an_interpreter_in_a_home_directory_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.executable", "/home/pat/venv/bin/python")
    result, unit = install(tmp_path)
    assert result.exit_code == 2 and not unit.exists() and "ProtectHome" in result.output


def test_systemd_analyze_does_find_a_broken_unit(tmp_path):
    """The check above can fail: a misspelt value is reported."""
    _, unit = install(tmp_path)
    unit.write_text(unit.read_text().replace("Type=notify", "Type=notifyy"))
    assert "Failed to parse service type" in verify(unit)


def test_the_company_template_runs_one_company_under_the_same_sandbox(tmp_path):
    """textback@.service, as the package ships it, but for this checkout's program: systemd
    accepts an instance of it, which runs that company in a state directory of its own."""
    units = tmp_path / "units"
    units.mkdir()
    program = Path(sys.executable).with_name("textback")
    (units / "textback@.service").write_text(company_unit(str(program)))
    instance = units / "textback@acme-west.service"
    instance.symlink_to("textback@.service")

    def complaints() -> str:  # about the instance or its template, which is where they point
        done = subprocess.run(["systemd-analyze", "verify", str(instance)], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return "\n".join(line for line in done.stderr.splitlines() if "textback@" in line)

    assert complaints() == ""
    template = (units / "textback@.service").read_text()
    (units / "textback@.service").write_text(template.replace("Type=notify", "Type=notifyy"))
    assert "Failed to parse service type" in complaints()  # the check can fail
    (units / "textback@.service").write_text(template)
    s = settings(units / "textback@.service")
    assert s["ExecStart"] == f"{program} run --company %i"
    assert s["StateDirectory"] == "textback/%i" and s["ReadWritePaths"] == "/var/lib/textback/%i"
    assert s["ConditionPathExists"] == "/etc/textback/fleet.yaml"
    # The same sandbox, line for line, as the single install's unit: only these differ.
    differ = {"Description", "ConditionPathExists", "ExecStart", "StateDirectory", "ReadWritePaths"}
    single = settings_of(packaged_unit())
    assert {k: v for k, v in single.items() if k not in differ} \
        == {k: v for k, v in settings_of(company_unit()).items() if k not in differ}
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(instance)],
                          capture_output=True, text=True, timeout=60)
    score = re.search(r"Overall exposure level for textback@acme-west\.service: (\d+\.\d+)",
                      done.stdout)
    assert score and float(score.group(1)) <= 2.0, done.stdout + done.stderr


def settings_of(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key: value for key, value in pairs}


@pytest.mark.parametrize("abstract", [False, True])
def test_notify_sends_one_datagram_to_the_socket_systemd_names(tmp_path, abstract):
    name = f"\0textback-test-{os.getpid()}" if abstract else str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(name)
        listener.settimeout(5)
        env = {"NOTIFY_SOCKET": "@" + name[1:] if abstract else name}
        assert service.notify("READY=1\nSTATUS=logged in", env)
        assert listener.recv(4096) == b"READY=1\nSTATUS=logged in"


def test_a_notify_socket_nobody_reads_never_blocks_the_sender(tmp_path, caplog):
    """The socket's queue fills up (a busy or stuck systemd): the event loop must not wait."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(tmp_path / "notify"))
        env = {"NOTIFY_SOCKET": str(tmp_path / "notify")}
        with caplog.at_level(logging.WARNING):
            sent = [service.notify("WATCHDOG=1", env) for _ in range(2000)]
    assert sent[0] and not sent[-1]
    assert "could not tell systemd 'WATCHDOG=1'" in caplog.text


def test_notify_without_systemd_does_nothing_and_a_dead_socket_only_logs(tmp_path, caplog):
    assert service.notify("READY=1", {}) is False
    with caplog.at_level(logging.WARNING):
        assert service.notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False
    assert "could not tell systemd 'READY=1'" in caplog.text


def test_the_watchdog_interval_is_half_of_watchdog_sec_for_this_process_only():
    assert service.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert service.watchdog_interval({"WATCHDOG_USEC": "30000000",
                                      "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert service.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert service.watchdog_interval({}) is None
    assert service.watchdog_interval({"WATCHDOG_USEC": "0"}) is None


def record(message: str, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("textback", logging.ERROR, __file__, 1, message, (), exc_info)


def test_under_systemd_a_line_has_no_timestamp_and_starts_with_its_priority():
    assert service.under_systemd({"INVOCATION_ID": "abc"})
    assert service.under_systemd({"JOURNAL_STREAM": "8:1234"})
    assert not service.under_systemd({})
    journal = service.OneLineFormatter(journal=True)
    assert journal.format(record("text failed")) == "<3>ERROR   textback: text failed"
    terminal = service.OneLineFormatter(journal=False).format(record("text failed"))
    assert terminal[:4].isdigit() and terminal.endswith("ERROR   textback: text failed")


def test_one_event_is_one_line_even_with_a_traceback():
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        import sys
        line = service.OneLineFormatter(journal=True).format(record("failed", sys.exc_info()))
    assert "\n" not in line and "Traceback" in line and "ValueError: bad\\nthing" in line


def test_a_warning_from_python_is_one_formatted_line_too():
    """aiohttp's deprecation warnings, say, would reach the journal raw and over two lines."""
    code = ("import warnings\n"
            "from textback.service import configure_logging\n"
            "configure_logging('INFO', {'JOURNAL_STREAM': '8:1'})\n"
            "warnings.warn('a library says\\nsomething', DeprecationWarning)\n")
    done = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True,
                          text=True, timeout=60)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("<4>WARNING py.warnings: "), done.stderr
    assert "DeprecationWarning: a library says\\nsomething" in lines[0]


@pytest.mark.parametrize("made_by", ["package", "install --systemd"])
def test_the_unit_scores_an_exposure_of_2_or_less(tmp_path, made_by):
    if made_by == "package":
        unit = tmp_path / "textback.service"
        unit.write_text(packaged_unit())
    else:
        result, unit = install(tmp_path)
        assert result.exit_code == 0, result.output
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                          capture_output=True, text=True, timeout=60)
    score = re.search(r"Overall exposure level for textback\.service: (\d+\.\d+)", done.stdout)
    assert score, done.stdout + done.stderr
    assert float(score.group(1)) <= 2.0, done.stdout


def test_the_packaged_unit_waits_for_asterisk_without_needing_it():
    s = {key: value for key, value in (line.split("=", 1) for line in packaged_unit().splitlines()
                                        if "=" in line)}
    assert "asterisk.service" in s["After"].split()
    assert "Requires" not in s and "asterisk" not in s.get("Wants", "")
    assert s["ExecStart"] == "/opt/textback/bin/textback run -c /etc/textback/config.yaml"
    assert s["ConditionPathExists"] == "/etc/textback/config.yaml"
