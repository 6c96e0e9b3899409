"""`textback init` on FreePBX 17: its additions go only into the _custom files FreePBX keeps.

tests/freepbx/ holds FreePBX's own manager.conf (FreePBX/framework) and the
header of its extensions.conf (FreePBX/core, release/17.0), each naming its
source and commit: the files FreePBX owns and rewrites, which textback must
leave byte for byte as they were. The lab tests load them, with what init
wrote, into the lab's Asterisk: the new AMI user logs in, and the dialplan
Asterisk runs is FreePBX's extensions.conf with textback's contexts in it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from pydantic import SecretStr

from ami_listener.connection import one_shot
from textback import freepbx
from textback.cli import main
from textback.config import load

LAYOUT = Path(__file__).parent / "freepbx"
# Empty on a fresh FreePBX 17: its installer creates them (`touch`) before FreePBX fills them.
FREEPBX_OWN_INCLUDES = ("extensions_override_freepbx.conf", "extensions_additional.conf",
                        "manager_additional.conf")


def init(tmp_path, asterisk_dir, *more: str, freepbx_flag: tuple[str, ...] = ("--freepbx",)):
    return CliRunner().invoke(main, [
        "init", "--no-input", *freepbx_flag, "--asterisk-dir", str(asterisk_dir),
        "--dir", str(tmp_path / "etc"), "--business-name", "Acme Remodeling",
        "--timezone", "America/New_York", "--number", "+12125550100", "--owner", "dana@example.com",
        "--trunk", "voipms", "--database", str(tmp_path / "textback.db"),
        "--routing-file", str(tmp_path / "routing.json"), *more])


def freepbx_layout(directory: Path) -> dict[str, bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    for name in freepbx.GENERATED:
        shutil.copy(LAYOUT / name, directory / name)
    (directory / freepbx.MANAGER_CUSTOM).write_text("; the site's own\n[crm]\nsecret = x\n")
    return {name: (directory / name).read_bytes() for name in freepbx.GENERATED}


def include_lines(name: str) -> list[str]:
    """The `#include` lines of FreePBX's own file `name`, as tests/freepbx/ has it."""
    return [line for line in (LAYOUT / name).read_text().splitlines() if line.startswith("#include")]


def test_freepbxs_files_include_the_custom_files_textback_writes():
    assert "#include manager_custom.conf" in include_lines("manager.conf")
    assert "#include extensions_custom.conf" in include_lines("extensions.conf")


def test_freepbx_is_detected_by_its_config_or_its_cli(tmp_path):
    assert freepbx.detected(tmp_path / "nothing", which=lambda name: None) is False
    (tmp_path / "freepbx.conf").write_text("<?php\n")
    assert freepbx.detected(tmp_path / "freepbx.conf", which=lambda name: None) is True
    assert freepbx.detected(tmp_path / "nothing", which=lambda name: "/usr/sbin/fwconsole") is True


def test_init_writes_only_the_custom_files_and_says_what_to_run(tmp_path):
    asterisk = tmp_path / "asterisk"
    generated = freepbx_layout(asterisk)
    result = init(tmp_path, asterisk)
    assert result.exit_code == 0, result.output

    assert {name: (asterisk / name).read_bytes() for name in freepbx.GENERATED} == generated
    manager = (asterisk / freepbx.MANAGER_CUSTOM).read_text()
    assert manager.startswith("; the site's own\n[crm]\nsecret = x\n")  # kept, not replaced
    secret = (tmp_path / "etc" / "ami.secret").read_text().strip()
    assert f"[textback]\nsecret = {secret}\n" in manager
    extensions = (asterisk / freepbx.EXTENSIONS_CUSTOM).read_text()
    assert extensions.startswith(freepbx.BEGIN) and "[textback-sms-in]" in extensions

    assert "fwconsole reload" in result.output
    cdr_secret = (tmp_path / "etc" / "cdrdb.secret").read_text().strip()
    assert f"CREATE USER 'textback'@'localhost' IDENTIFIED BY '{cdr_secret}';" in result.output
    assert "GRANT SELECT ON asteriskcdrdb.cdr TO 'textback'@'localhost';" in result.output
    config = load(tmp_path / "etc" / "config.yaml").config
    assert config.recovery.cdr.type == "mysql"
    assert config.recovery.cdr.mysql.database == "asteriskcdrdb"
    assert config.recovery.cdr.mysql.user == "textback"


def test_init_without_a_flag_finds_freepbx_by_fwconsole_on_the_path(tmp_path, monkeypatch):
    """How an installer runs it on FreePBX 17: plain `textback init`, FreePBX's CLI on the PATH."""
    assert not freepbx.FREEPBX_CONF.exists()  # this host is no FreePBX: detection is by the PATH
    asterisk = tmp_path / "asterisk"
    generated = freepbx_layout(asterisk)
    without = init(tmp_path / "plain", asterisk, freepbx_flag=())
    assert without.exit_code == 0, without.output
    assert not (asterisk / freepbx.EXTENSIONS_CUSTOM).exists() and "fwconsole" not in without.output

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "fwconsole").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "fwconsole").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = init(tmp_path / "freepbx", asterisk, freepbx_flag=())
    assert result.exit_code == 0, result.output
    assert {name: (asterisk / name).read_bytes() for name in freepbx.GENERATED} == generated
    assert "[textback-sms-in]" in (asterisk / freepbx.EXTENSIONS_CUSTOM).read_text()
    assert "[textback]" in (asterisk / freepbx.MANAGER_CUSTOM).read_text()
    assert "fwconsole reload" in result.output


def test_running_init_again_replaces_its_block_instead_of_adding_one(tmp_path):
    asterisk = tmp_path / "asterisk"
    freepbx_layout(asterisk)
    assert init(tmp_path, asterisk).exit_code == 0
    result = init(tmp_path, asterisk, "--force")
    assert result.exit_code == 0, result.output
    for name in (freepbx.MANAGER_CUSTOM, freepbx.EXTENSIONS_CUSTOM):
        text = (asterisk / name).read_text()
        assert text.count(freepbx.BEGIN) == text.count(freepbx.END) == 1
    secret = (tmp_path / "etc" / "ami.secret").read_text().strip()
    assert f"secret = {secret}\n" in (asterisk / freepbx.MANAGER_CUSTOM).read_text()


def test_without_freepbx_nothing_of_asterisk_is_written(tmp_path):
    asterisk = tmp_path / "asterisk"
    generated = freepbx_layout(asterisk)
    before = sorted(p.name for p in asterisk.iterdir())
    result = init(tmp_path, asterisk, "--no-freepbx")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in asterisk.iterdir()) == before
    assert {name: (asterisk / name).read_bytes() for name in freepbx.GENERATED} == generated
    assert "recovery" not in yaml.safe_load((tmp_path / "etc" / "config.yaml").read_text())


@pytest.mark.lab
def test_the_lab_asterisk_loads_the_freepbx_layout_and_logs_the_user_in(tmp_path, lab_pbx):
    """The lab's manager.conf, ended by the `#include` lines of FreePBX's own (its [general]
    would move the lab's port), with init's block in manager_custom.conf: after
    `manager reload` the new user logs in."""
    etc = lab_pbx.instance_dir / "etc"
    original = (etc / "manager.conf").read_text()
    try:
        (etc / "manager.conf").write_text(original + "\n" + "\n".join(include_lines("manager.conf")) + "\n")
        (etc / "manager_additional.conf").write_text("")
        result = init(tmp_path, etc, "--ami-username", "textback-fpbx",
                      "--ami-port", str(lab_pbx.ami_port))
        assert result.exit_code == 0, result.output
        lab_pbx.cli("manager reload")
        assert "textback-fpbx" in lab_pbx.cli("manager show users")
        secret = SecretStr((tmp_path / "etc" / "ami.secret").read_text().strip())
        _, answer = asyncio.run(one_shot("127.0.0.1", lab_pbx.ami_port, "textback-fpbx", secret,
                                         {"Action": "Ping"}))
        assert any(dict(m.items()).get("Response") == "Success" for m in answer)
    finally:
        (etc / "manager.conf").write_text(original)
        for name in ("manager_additional.conf", freepbx.MANAGER_CUSTOM, freepbx.EXTENSIONS_CUSTOM):
            (etc / name).unlink(missing_ok=True)
        lab_pbx.cli("manager reload")


def context_shown(lab_pbx, context: str) -> bool:
    """Whether the running dialplan has `context`, by the CLI's `dialplan show`."""
    output = lab_pbx.cli(f"dialplan show {context}")
    if f"There is no existence of '{context}' context" in output:
        return False
    assert f"[ Context '{context}' created by 'pbx_config' ]" in output, output
    return True


@pytest.mark.lab
def test_the_lab_asterisk_runs_freepbxs_extensions_conf_with_textbacks_contexts(tmp_path, lab_pbx):
    """The lab's extensions.conf replaced by FreePBX 17's (its header, with its three
    `#include`s), and init's block in extensions_custom.conf: after `dialplan reload` the
    dialplan is FreePBX's, the lab's own contexts are gone, and textback's are there."""
    etc = lab_pbx.instance_dir / "etc"
    original = (etc / "extensions.conf").read_text()
    assert context_shown(lab_pbx, "from-carrier")  # the lab's own dialplan, before
    try:
        shutil.copy(LAYOUT / "extensions.conf", etc / "extensions.conf")
        for name in FREEPBX_OWN_INCLUDES:
            (etc / name).write_text("")
        result = init(tmp_path, etc, "--ami-port", str(lab_pbx.ami_port))
        assert result.exit_code == 0, result.output
        assert (etc / "extensions.conf").read_bytes() == (LAYOUT / "extensions.conf").read_bytes()

        lab_pbx.cli("dialplan reload")
        assert not context_shown(lab_pbx, "from-carrier")  # the lab's file is no longer loaded
        assert context_shown(lab_pbx, "textback-sms-in")
        assert context_shown(lab_pbx, "textback-inbound")
    finally:
        (etc / "extensions.conf").write_text(original)
        for name in (*FREEPBX_OWN_INCLUDES, freepbx.MANAGER_CUSTOM, freepbx.EXTENSIONS_CUSTOM):
            (etc / name).unlink(missing_ok=True)
        lab_pbx.cli("dialplan reload")
    assert context_shown(lab_pbx, "from-carrier")  # and the lab's dialplan is back for the next test
