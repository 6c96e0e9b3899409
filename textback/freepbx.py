"""FreePBX: where `textback init` puts its Asterisk additions, never in FreePBX's own files.

FreePBX writes manager.conf and extensions.conf itself and rewrites them on
every `fwconsole reload`; both end by including a `_custom` file that it never
writes. textback's AMI user and its dialplan go there, in one marked block
that a later `textback init --force` replaces rather than repeats. Pure: texts
in, texts out; the caller reads and writes the files.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

FREEPBX_CONF = Path("/etc/freepbx.conf")
GENERATED = ("manager.conf", "extensions.conf")  # FreePBX's: never written by textback
MANAGER_CUSTOM, EXTENSIONS_CUSTOM = "manager_custom.conf", "extensions_custom.conf"
BEGIN = "; >>> textback: written by `textback init`, which replaces this block when run again"
END = "; <<< textback"
CDR_DATABASE, CDR_TABLE = "asteriskcdrdb", "cdr"


def detected(freepbx_conf: Path = FREEPBX_CONF,
             which: Callable[[str], str | None] = shutil.which) -> bool:
    """FreePBX is installed: its bootstrap config exists, or its CLI is on the PATH."""
    return freepbx_conf.exists() or which("fwconsole") is not None


def with_block(existing: str, content: str) -> str:
    """`existing` with textback's block replaced by `content`, or appended when absent."""
    block = f"{BEGIN}\n{content.rstrip()}\n{END}\n"
    start, end = existing.find(BEGIN), existing.find(END)
    if start != -1 and end > start:
        return existing[:start] + block + existing[end + len(END):].lstrip("\n")
    separator = "" if not existing or existing.endswith("\n\n") else (
        "\n" if existing.endswith("\n") else "\n\n")
    return existing + separator + block


def cdr_grants(user: str, secret: str, host: str = "localhost") -> str:
    """The SQL the installer runs as MariaDB's root: a user that may only read the CDR."""
    return (f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{secret}';\n"
            f"GRANT SELECT ON {CDR_DATABASE}.{CDR_TABLE} TO '{user}'@'{host}';")
