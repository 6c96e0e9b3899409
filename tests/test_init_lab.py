"""`textback init` against the lab PBX: it lists the PJSIP endpoints through an AMI login that
already works, the installer picks the trunk, and once the snippet is pasted into manager.conf
the result passes `textback check`."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from textback.cli import main

pytestmark = pytest.mark.lab


def uncomment(text: str, first: str) -> str:
    """`text` with the comment marks taken off the block of commented lines starting at `first`."""
    lines = text.splitlines()
    start = lines.index(first)
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith(first[0])), len(lines))
    return "\n".join(lines[:start] + [line[1:] for line in lines[start:end]] + lines[end:]) + "\n"


def init(tmp_path, lab_pbx, *args: str, input: str | None = None):
    return CliRunner().invoke(main, [
        "init", "--dir", str(tmp_path / "etc"), "--database", str(tmp_path / "textback.db"),
        "--routing-file", str(tmp_path / "routing.json"), "--ami-host", lab_pbx.ami_host,
        "--ami-port", str(lab_pbx.ami_port), "--list-as", lab_pbx.admin_user,
        "--list-secret-file", str(lab_pbx.admin_secret_file), *args], input=input)


def test_the_installer_picks_the_trunk_from_the_listing_and_the_result_passes_check(
        tmp_path, lab_pbx, smtp_sink):
    answers = "\n".join(["Acme Remodeling", "", "+12125550100", "dana@example.com",
                         "9", "1"]) + "\n"
    result = init(tmp_path, lab_pbx, "--ami-username", "textback-init",
                  "--smtp-host", "127.0.0.1", "--smtp-port", "15025", input=answers)
    assert result.exit_code == 0, result.output
    listing = result.output[result.output.index("PJSIP endpoints on the PBX:"):]
    assert [line.split()[1] for line in listing.splitlines()[1:5]] == [
        "carrier", "office1", "office2", "office3"]
    assert "pick one of 1-4 or an endpoint name" in result.output  # "9" is refused, then "1"
    config_path = tmp_path / "etc" / "config.yaml"
    config = config_path.read_text()
    assert 'trunks: ["carrier"]' in config
    # The installer turns the self-test on: its config section and its AMI user, both
    # written commented out, are uncommented.
    config_path.write_text(uncomment(config, "#selftest:").replace('"+1..."', '"+12125550177"'))
    snippet = uncomment((tmp_path / "etc" / "manager-textback.conf").read_text(),
                        ";[textback-init-selftest]")
    # Paste the snippet as the installer would, reload, and check the install.
    manager = lab_pbx.instance_dir / "etc" / "manager.conf"
    manager.write_text(manager.read_text() + "\n" + snippet)
    lab_pbx.cli("manager reload")
    check = subprocess.run([sys.executable, "-m", "textback", "check", "-c",
                            str(tmp_path / "etc" / "config.yaml")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"ok    ami: logged in to 127.0.0.1:{lab_pbx.ami_port} as textback-init" in check.stdout
    assert "ok    selftest: AMI user 'textback-init-selftest' logs in" in check.stdout


def test_a_trunk_flag_that_is_no_endpoint_is_refused_with_the_listing(tmp_path, lab_pbx):
    result = init(tmp_path, lab_pbx, "--business-name", "Acme", "--number", "+12125550100",
                  "--owner", "dana@example.com", "--trunk", "carier", "--timezone", "UTC",
                  "--no-input")
    assert result.exit_code == 2
    assert "'carier' is not one of the PBX's PJSIP endpoints (carrier, office1, office2, office3)" \
        in result.output
    assert not (tmp_path / "etc").exists()


def test_without_input_the_trunk_is_never_guessed(tmp_path, lab_pbx):
    result = init(tmp_path, lab_pbx, "--business-name", "Acme", "--number", "+12125550100",
                  "--owner", "dana@example.com", "--timezone", "UTC", "--no-input")
    assert result.exit_code == 2 and "--no-input needs --trunk" in result.output
    assert "carrier" in result.output  # the listing was shown, so the installer can choose


def test_a_login_that_may_not_list_endpoints_says_why(tmp_path, lab_pbx):
    result = CliRunner().invoke(main, [
        "init", "--dir", str(tmp_path / "etc"), "--ami-host", lab_pbx.ami_host,
        "--ami-port", str(lab_pbx.ami_port), "--list-as", lab_pbx.ami_user,
        "--list-secret-file", str(lab_pbx.ami_secret_file), "--business-name", "Acme",
        "--number", "+12125550100", "--owner", "dana@example.com", "--no-input"])
    assert result.exit_code == 1
    assert "could not list the PJSIP endpoints as 'textback': Permission denied" in result.output
    assert "write = system" in result.output
