"""Third-party gateways through the `textback.gateways` entry points, with the example plugin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sms_gateway.base import OutgoingText
from sms_gateway.plugins import PluginError, available, load_gateway

EXAMPLE = Path(__file__).parents[1] / "examples" / "textback-gateway-example"


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The example plugin as pip would leave it: its package, and a dist-info with entry points."""
    site = tmp_path / "site"
    dist = site / "textback_gateway_example-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: textback-gateway-example\n"
                                   "Version: 0.1.0\n")
    (dist / "entry_points.txt").write_text(
        "[textback.gateways]\n"
        "spool = textback_gateway_example:create\n"
        "notagateway = builtins:dict\n"
        "missing = textback_no_such_module:create\n"
        "twilio = textback_gateway_example:create\n")
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    monkeypatch.syspath_prepend(str(site))
    return tmp_path


async def test_the_example_plugin_loads_sends_and_checks(installed):
    spool = installed / "outgoing.jsonl"
    gateway = load_gateway("spool", {"path": str(spool)})
    result = await gateway.send(OutgoingText("+12125550100", "+12125550123", "Hi 😀"))
    assert gateway.name == "spool" and result.status == "accepted"
    assert json.loads(spool.read_text()) == {"id": result.gateway_id, "from": "+12125550100",
                                             "to": "+12125550123", "body": "Hi 😀"}
    assert await gateway.check() == f"spool gateway writing to {spool}"


def test_a_plugin_cannot_take_a_built_in_name(installed):
    assert "twilio" not in available() and "spool" in available()
    with pytest.raises(PluginError, match="built-in gateway"):
        load_gateway("twilio", {})


def test_plugin_problems_are_reported_by_name(installed):
    with pytest.raises(PluginError, match=r"no gateway plugin named 'nope'.*spool"):
        load_gateway("nope", {})
    with pytest.raises(PluginError, match="'spool': 'path' .* is required"):
        load_gateway("spool", {})
    with pytest.raises(PluginError, match="'spool': unknown option"):
        load_gateway("spool", {"path": "/tmp/x", "colour": "red"})
    with pytest.raises(PluginError, match="'missing' failed to load: ModuleNotFoundError"):
        load_gateway("missing", {})
    with pytest.raises(PluginError, match="without name, send, check"):
        load_gateway("notagateway", {})
