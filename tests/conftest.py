"""Shared fixtures: the lab PBX (lab.fixture), an SMTP relay sink, and lab-ready configs."""

from __future__ import annotations

import pytest

from lab.harness import start_smtp_sink

pytest_plugins = ["lab.fixture"]


@pytest.fixture
def smtp_sink():
    """A real SMTP server (aiosmtpd) standing in for the company mail relay."""
    sink, controller = start_smtp_sink()
    try:
        yield sink
    finally:
        controller.stop()
