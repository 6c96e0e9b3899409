"""`textback init` without a PBX: the flag form with no terminal, the prompt form on stdin,
and what it refuses. The endpoint listing is tested on the lab PBX (tests/test_init_lab.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from textback.cli import main
from textback.config import load
from textback.initconfig import parse_owner

FLAGS = ["--business-name", "Acme Remodeling", "--timezone", "America/Chicago",
         "--number", "+12125550100, (212) 555-0101", "--owner", "Dana Reyes <dana@example.com>",
         "--owner", "dana@other.example", "--ami-host", "127.0.0.1", "--trunk", "carrier"]


def init(tmp_path, *args: str, input: str | None = None):
    return CliRunner().invoke(main, ["init", "--dir", str(tmp_path / "etc"),
                                     "--database", str(tmp_path / "textback.db"),
                                     "--routing-file", str(tmp_path / "routing.json"), *args],
                              input=input)


def test_the_flag_form_writes_a_config_that_loads_a_private_secret_and_the_snippet(tmp_path):
    result = init(tmp_path, *FLAGS, "--no-input")
    assert result.exit_code == 0, result.output
    etc = tmp_path / "etc"
    loaded = load(etc / "config.yaml")
    config = loaded.config
    assert (config.business.name, config.business.timezone) == ("Acme Remodeling", "America/Chicago")
    assert [n.number for n in config.numbers] == ["+12125550100", "+12125550101"]
    assert [(o.id, o.name, o.email) for o in config.owners] == [
        ("dana", "Dana Reyes", "dana@example.com"), ("dana2", "Dana", "dana@other.example")]
    assert config.inbound.trunks == ["carrier"] and config.admin_email == "dana@example.com"
    secret = loaded.secrets.ami.get_secret_value()
    assert len(secret) >= 40
    for name in ("ami.secret", "ami-selftest.secret", "manager-textback.conf"):
        assert stat.S_IMODE((etc / name).stat().st_mode) == 0o600, name
    snippet = (etc / "manager-textback.conf").read_text()
    assert f"[textback]\nsecret = {secret}\n" in snippet
    assert ("read = system,call,user,dialplan\nwrite = message,reporting\n"
            "writetimeout = 5000\n") in snippet
    # The lab's user, whose session tests/test_overload_lab.py shows surviving a full socket,
    # is the one init writes.
    lab_user = (Path(__file__).parents[1] / "lab" / "asterisk" / "manager.conf").read_text()
    assert "write = message,reporting\n" in lab_user and "\nwritetimeout = 5000\n" in lab_user
    assert "permit = 127.0.0.1/255.255.255.255" in snippet
    assert ";write = originate" in snippet  # the self-test user, commented out
    assert (etc / "config.yaml").read_text().count("\n#") > 10  # commented


def test_without_input_every_missing_value_is_named(tmp_path):
    result = init(tmp_path, "--business-name", "Acme", "--no-input")
    assert result.exit_code == 2
    assert "--no-input needs --timezone, --number, --owner, --trunk" in result.output
    assert not (tmp_path / "etc").exists()


def test_the_prompt_form_asks_again_after_a_wrong_answer(tmp_path):
    answers = "\n".join(["Acme Remodeling", "Mars/Olympus", "America/Denver", "555",
                         "+12125550100", "not-an-email", "dana@example.com", "", "carrier"]) + "\n"
    result = init(tmp_path, input=answers)
    assert result.exit_code == 0, result.output
    assert "unknown time zone 'Mars/Olympus'" in result.output
    assert "'555' is not a phone number" in result.output
    assert "'not-an-email' is not an email address" in result.output
    assert "not checked: no AMI login" in result.output
    config = load(tmp_path / "etc" / "config.yaml").config
    assert (config.business.timezone, config.ami.host, config.inbound.trunks) == (
        "America/Denver", "127.0.0.1", ["carrier"])


def test_existing_files_are_kept_unless_forced(tmp_path):
    assert init(tmp_path, *FLAGS, "--no-input").exit_code == 0
    first = (tmp_path / "etc" / "ami.secret").read_text()
    again = init(tmp_path, *FLAGS, "--no-input")
    assert again.exit_code == 1 and "already exist" in again.output
    assert (tmp_path / "etc" / "ami.secret").read_text() == first
    assert init(tmp_path, *FLAGS, "--no-input", "--force").exit_code == 0
    assert (tmp_path / "etc" / "ami.secret").read_text() != first


@pytest.mark.parametrize("flag, value, says", [
    ("--business-name", "", "1 to 60 characters"),
    ("--timezone", "EST5", "unknown time zone"),
    ("--owner", "Dana", "not an email address"),
])
def test_a_wrong_flag_is_refused_by_name(tmp_path, flag, value, says):
    args = list(FLAGS)
    args[args.index(flag) + 1] = value
    result = init(tmp_path, *args, "--no-input")
    assert result.exit_code == 2 and flag in result.output and says in result.output


def test_owner_ids_come_from_the_mailbox_and_stay_unique():
    assert parse_owner("O'Brien <Pat.OBrien+jobs@example.com>", set()).id == "pat.obrienjobs"
    assert parse_owner("sam@example.com", {"sam", "sam2"}).id == "sam3"
