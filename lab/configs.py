"""Build valid configuration files for tests, with secrets in files beside them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

BUSINESS_NUMBER = "+12125550100"
RING_GROUP_NUMBER = "+12125550101"
HOMEOWNER = "+12125550123"
# The default owner and a boss: a backup owner for escalation, a reader of the monthly report.
DANA_AND_BOSS = [{"id": "dana", "name": "Dana Reyes", "email": "dana@example.com"},
                 {"id": "boss", "name": "Pat Boss", "email": "boss@example.com"}]
# The lab DID routed by textback's own AGI (the shipped [textback-inbound] context), its
# entry in `numbers` (office2 for 5 s when open, office1 for 6 s when closed) and, listed
# third after the two numbers of base_config, its route id.
AGI_ROUTED_NUMBER = "+12125550118"
AGI_ROUTE = {"number": AGI_ROUTED_NUMBER, "owner": "dana", "ring": {
    "targets": "PJSIP/office2", "timeout_seconds": 5,
    "after_hours_targets": "PJSIP/office1", "after_hours_timeout_seconds": 6}}
AGI_ROUTE_ID = "r3-12125550118"
ALWAYS_OPEN = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "24:00"}]

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
        "agi.routing_file": str(lab_pbx.routing_file),  # where the lab's dialplan reads it
        **overrides,
    })
    return write_config(workdir, config)


def agi_routed_hours(closed_today: bool = False) -> dict[str, Any]:
    """Open all week; `closed_today` makes today (in the lab business's time zone) a holiday."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    today = datetime.now(ZoneInfo("America/New_York")).date()
    return {"windows": ALWAYS_OPEN, "holidays": [today.isoformat()] if closed_today else []}


def write_agi_routing_table(workdir: Path, lab_pbx: Any, closed_today: bool = False) -> None:
    """The routing table the daemon would write for AGI_ROUTE (route id AGI_ROUTE_ID), without a daemon."""
    from datetime import date

    from textback.config import parse
    from textback.routing import write_routing_table

    workdir.mkdir(parents=True, exist_ok=True)
    config = base_config(workdir, hours=agi_routed_hours(closed_today),
                         **{"agi.routing_file": str(lab_pbx.routing_file)})
    config["numbers"].append(AGI_ROUTE)
    write_routing_table(parse(yaml.safe_dump(config), base=workdir).config, date.today())
