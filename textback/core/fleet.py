"""What the daemons of a fleet on one PostgreSQL agree on without talking: which advisory lock
stands for a PBX, what a wake-up notification says, and which texts a daemon holding some of
the PBXs may send.

Pure values: the lock key of a PBX is derived from its AMI address alone, so every daemon
configured for that PBX computes the same key, whatever its host, start time or config file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Collection, Sequence

# The NOTIFY channel every daemon LISTENs on; payloads are "<table>:<id>" (ids only: the
# listener reads the row itself, from the store, as its worker would anyway).
WAKE_CHANNEL = "textback_wake"
# The tables whose new rows a worker is waiting for, as the trigger names them.
WAKE_TABLES = ("outbox", "alerts", "notices", "events", "media")


# The advisory locks of claimers (two int4 keys: this class, a daemon's id), apart from the
# PBXs' (one bigint key): a daemon holds its own while it runs, and its rows in flight are
# recovered only once it is free ("txbc").
CLAIMER_LOCK_CLASS = 0x74786263
# The advisory locks (two int4 keys: this class, a hash) a check-then-write holds to its
# transaction's end, so that two daemons' run one after the other ("txbt", Connection._in_turn).
IN_TURN_LOCK_CLASS = 0x74786274
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


@dataclass(frozen=True)
class Senders:
    """Which texts a daemon may claim, by the business number each goes from.

    With the asterisk gateway a text goes through the AMI of the PBX serving its number (the
    first PBX for a number none serves), and in a fleet only the daemon holding that PBX's
    lease has its AMI: such a daemon claims the texts of the numbers of the PBXs it holds.
    `only` lists them (None: every number but those in `never`, the form used when the first
    PBX is among them, which also takes the numbers no PBX serves)."""

    only: tuple[str, ...] | None = None
    never: tuple[str, ...] = ()

    @property
    def none(self) -> bool:
        """No text at all: this daemon holds none of the PBXs."""
        return self.only == ()

    def include(self, number: str) -> bool:
        """Does a text from business number `number` go from these senders?"""
        return number in self.only if self.only is not None else number not in self.never


EVERY_SENDER = Senders()


def senders_through(pbx_numbers: Sequence[Sequence[str]], through: Collection[int]) -> Senders:
    """The texts that go through the PBXs at positions `through` of `pbx_numbers` (each PBX's
    business numbers, in the config's order; the first PBX also serves every number none
    lists, as the asterisk gateway sends them)."""
    if 0 in through:
        return Senders(None, tuple(sorted(number for index, numbers in enumerate(pbx_numbers)
                                          if index not in through for number in numbers)))
    return Senders(tuple(sorted(number for index in sorted(through)
                                for number in pbx_numbers[index])))
