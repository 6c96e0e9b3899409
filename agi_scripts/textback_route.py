#!/usr/bin/env python3
"""AGI: route an inbound call before the phones ring, from textback's routing table.

    exten => _X.,1,AGI(textback_route.py,/var/lib/textback/routing.json,PJSIP/office1,20)
     same => n,Dial(${TEXTBACK_TARGETS},${TEXTBACK_RING_TIMEOUT})

Sets TEXTBACK_ROUTE, TEXTBACK_TARGETS, TEXTBACK_RING_TIMEOUT and
TEXTBACK_HOURS (open or closed) on the channel; textback's AMI user sees them
through manager.conf `channelvars`, so the dialplan and the daemon agree on
the route. The script must never hold up or break a call: if the table is
missing or unreadable, or the number is not in it, it sets the fallback
targets and timeout given as arguments, and it always exits 0.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

FALLBACK_TIMEOUT = "20"


def route_variables(table: dict[str, Any] | None, did: str, now: float,
                    fallback_targets: str, fallback_timeout: str) -> dict[str, str]:
    """The channel variables for a call to `did` at `now`."""
    fallback = {"TEXTBACK_ROUTE": "fallback", "TEXTBACK_TARGETS": fallback_targets,
                "TEXTBACK_RING_TIMEOUT": fallback_timeout, "TEXTBACK_HOURS": "unknown"}
    if not table or table.get("format") != 1:
        return fallback
    route = table["routes"].get(did) or table["routes"].get("+" + did.lstrip("+"))
    if route is None:
        return fallback
    from textback.core.hours import Hours, Window  # the same rules as the daemon's

    spec = route.get("hours") or table  # the number's own hours, else the business's
    hours = Hours(table["timezone"],
                  tuple(Window(tuple(w["days"]), w["start"], w["end"]) for w in spec["windows"]),
                  frozenset(_dates(spec["holidays"])))
    is_open = hours.in_hours(now)
    key = "" if is_open else "after_hours_"
    return {
        "TEXTBACK_ROUTE": route["route"],
        "TEXTBACK_TARGETS": route[f"{key}targets"] or fallback_targets,
        "TEXTBACK_RING_TIMEOUT": str(route[f"{key}timeout"] or fallback_timeout),
        "TEXTBACK_HOURS": "open" if is_open else "closed",
    }


def _dates(values: list[str]):
    from datetime import date

    return (date.fromisoformat(v) for v in values)


def _load(path: str) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def main() -> int:
    from asterisk.agi import AGI

    args = sys.argv[1:]
    table_path = args[0] if args else "/var/lib/textback/routing.json"
    fallback_targets = args[1] if len(args) > 1 else ""
    fallback_timeout = args[2] if len(args) > 2 else FALLBACK_TIMEOUT
    with open(os.devnull, "w") as quiet:  # pyst2 writes its debug output to stderr
        agi = AGI(stderr=quiet)
        did = agi.env.get("agi_extension", "")
        try:
            variables = route_variables(_load(table_path), did, time.time(),
                                        fallback_targets, fallback_timeout)
        except Exception:  # noqa: BLE001 - a broken table must not break the call
            variables = route_variables(None, did, 0, fallback_targets, fallback_timeout)
        for name, value in variables.items():
            # pyst2's _quote does not escape '"'; routing values never contain one (config checks).
            agi.set_variable(name, value.replace('"', ""))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001 - whatever happens, the call goes on
        sys.exit(0)
