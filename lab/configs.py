"""Build valid configuration files for tests, with secrets in files beside them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

BUSINESS_NUMBER = "+12125550100"
RING_GROUP_NUMBER = "+12125550101"
HOMEOWNER = "+12125550123"

# Every DID of the call-flow corpus (lab/flows.py), default policy unless noted.
FLOW_NUMBERS = [
    {"number": f"+121255501{last:02d}", "owner": "dana"} for last in range(14)
] + [
    {"number": "+12125550116", "owner": "dana", "label": "voicemail counts as answered",
     "policy": {"voicemail_counts_as_answered": True}},
    {"number": "+12125550117", "owner": "dana", "label": "an IVR abandon is no miss",
     "policy": {"ivr_abandon_counts_as_missed": False}},
]


def base_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    (tmp_path / "ami.secret").write_text("not-the-real-one\n")
    config: dict[str, Any] = {
        "business": {"name": "Acme Remodeling", "timezone": "America/New_York"},
        "ami": {"host": "127.0.0.1", "port": 15038, "username": "textback",
                "secret": {"file": "ami.secret"}},
        "inbound": {"trunks": ["carrier"]},
        "owners": [{"id": "dana", "name": "Dana Reyes", "email": "dana@example.com"}],
        "numbers": [{"number": BUSINESS_NUMBER, "owner": "dana"},
                    {"number": RING_GROUP_NUMBER, "owner": "dana"}],
        "text": {"delay_seconds": 30,
                 "template": "Hi, this is {business_name}. Sorry we missed your call!"},
        "gateway": {"type": "log"},
        "smtp": {"host": "127.0.0.1", "port": 2525, "security": "none",
                 "sender": "textback@acme.example"},
        "storage": {"path": str(tmp_path / "textback.db")},
        "agi": {"routing_file": str(tmp_path / "routing.json")},
    }
    for dotted, value in overrides.items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return copy.deepcopy(config)


def write_config(tmp_path: Path, config: dict[str, Any], name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def lab_config(workdir: Path, lab_pbx: Any, **overrides: Any) -> Path:
    """A config that runs textback against the lab PBX, with the asterisk gateway."""
    config = base_config(workdir, **{
        "ami.port": lab_pbx.ami_port,
        "ami.secret": {"file": str(lab_pbx.ami_secret_file)},
        "ami.ping_interval": 2,
        "ami.ping_timeout": 2,
        "gateway": {"type": "asterisk", "asterisk": {
            "destination": "pjsip:carrier/sip:{to}@127.0.0.3:5060",
            "from_uri": "sip:{sender}@127.0.0.1",
        }},
        "smtp.port": 15025,
        **overrides,
    })
    return write_config(workdir, config)
