"""`pipx install .`, the README's install for distributions other than Debian 12.

Debian's own pipx (Debian 12 refuses a system-wide pip, PEP 668) installs the
checkout into a virtual environment of its own, from PyPI. The installed
command then writes a first config that loads.
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(1200)  # pipx itself is given 900 s: building the wheels on busy cores
def test_pipx_install_of_the_checkout_gives_a_working_textback(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin")}
    done = subprocess.run(["/usr/bin/pipx", "install", str(REPO)], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    textback = tmp_path / "bin" / "textback"
    assert os.path.realpath(textback).startswith(str(tmp_path / "pipx" / "venvs" / "textback"))

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    shown = subprocess.run([str(textback), "--version"], env=env, capture_output=True, text=True)
    assert shown.returncode == 0 and version in shown.stdout

    config_dir = tmp_path / "config"
    init = subprocess.run([str(textback), "init", "--no-input", "--dir", str(config_dir),
                           "--business-name", "Acme Remodeling", "--timezone", "America/New_York",
                           "--number", "+12125550100", "--owner", "dana@example.com",
                           "--trunk", "carrier", "--database", str(tmp_path / "textback.db"),
                           "--routing-file", str(tmp_path / "routing.json")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stdout + init.stderr
    config = yaml.safe_load((config_dir / "config.yaml").read_text())
    assert config["business"]["name"] == "Acme Remodeling"
    assert config["inbound"]["trunks"] == ["carrier"]
