"""What the daemons of a fleet on one PostgreSQL agree on without talking: which advisory lock
stands for a PBX, and what a wake-up notification says.

Pure values: the lock key of a PBX is derived from its AMI address alone, so every daemon
configured for that PBX computes the same key, whatever its host, start time or config file.
"""

from __future__ import annotations

import hashlib

# The NOTIFY channel every daemon LISTENs on; payloads are "<table>:<id>" (ids only: the
# listener reads the row itself, from the store, as its worker would anyway).
WAKE_CHANNEL = "textback_wake"
# The tables whose new rows a worker is waiting for, as the trigger names them.
WAKE_TABLES = ("outbox", "alerts", "notices", "events", "media")


# The advisory locks of claimers (two int4 keys: this class, a daemon's id), apart from the
# PBXs' (one bigint key): a daemon holds its own while it runs, and its rows in flight are
# recovered only once it is free ("txbc").
CLAIMER_LOCK_CLASS = 0x74786263
# The advisory lock (one bigint key) each event insert holds shared to its commit, and the
# reader of the settled event id takes exclusive for a moment ("txb-evid").
EVENT_IDS_LOCK = 0x7478622D65766964


def pbx_lock_key(host: str, port: int, company: str = "default") -> int:
    """The advisory lock key of the PBX whose AMI listens at `host`:`port`, for `company`'s
    daemons: a signed 64-bit integer (PostgreSQL's bigint), the first 8 bytes of a SHA-256 of
    the address, so that two PBXs collide only by a 2^-64 chance. The host is compared
    case-blind, as DNS compares it. Each company's daemons listen for its own calls, so two
    companies on one PBX hold two leases (the company `default` keeps the key it always had)."""
    scope = "" if company == "default" else f"{company}@"
    address = f"textback-ami:{scope}{host.strip().lower()}:{int(port)}".encode()
    return int.from_bytes(hashlib.sha256(address).digest()[:8], "big", signed=True)


def parse_wake(payload: str) -> tuple[str, int] | None:
    """A notification's payload → (table, row id), or None for anything else (a payload from a
    newer textback, or from someone else on the channel), which the listener ignores."""
    table, _, row_id = payload.partition(":")
    if table not in WAKE_TABLES or not row_id.isdigit():
        return None
    return table, int(row_id)
