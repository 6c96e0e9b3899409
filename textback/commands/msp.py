"""`textback msp-password`: set a fleet's MSP admin's console password (its argon2id hash, in
the file fleet.yaml names for that admin)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click

from textback.commands.common import unusable
from textback.config import ConfigError
from textback.core.msp import password_problem
from textback.fleet_config import DEFAULT_FLEET_PATH, read_main

HASH_FILE_MODE = 0o640  # root and the service's group read it; nobody else


def _read_password() -> str:
    """From stdin when it is not a terminal (its first line), else asked twice, unechoed."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("New password", hide_input=True, confirmation_prompt=True)


def write_atomically(path: Path, text: str, mode: int) -> None:
    """`text` in `path`, whole or not at all: a temporary file beside it, made `mode` before a
    byte is written, flushed to disk, then renamed over it. Its group is the old file's, else
    its directory's (`install -d -g textback`: the service's group, which reads it)."""
    group = (path if path.exists() else path.parent).stat().st_gid
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(descriptor, mode)
        os.fchown(descriptor, -1, group)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@click.command("msp-password")
@click.argument("admin_id", metavar="ID")
@click.option("--fleet", type=click.Path(dir_okay=False, path_type=Path),
              help=f"The fleet's main file (default: {DEFAULT_FLEET_PATH}).")
def msp_password(admin_id: str, fleet: Path | None) -> None:
    """Set the MSP console password of admin ID (of the fleet's `msp.admins`): its argon2id
    hash is written to the admin's password_hash_file (mode 0640). The password is read from
    stdin when it is not a terminal, else asked twice. The running process reads the hashes at
    its start: restart its service for the new password to count."""
    from argon2 import PasswordHasher

    try:
        main = read_main(fleet or DEFAULT_FLEET_PATH)
    except ConfigError as exc:
        unusable(exc.described())
    if main.msp is None:
        raise click.ClickException(f"{main.source} has no msp: section; add the console and its "
                                   "admins first (docs/fleet.md, MSP admins)")
    admin = main.msp.admin(admin_id)
    if admin is None:
        ids = ", ".join(a.id for a in main.msp.admins)
        raise click.BadParameter(f"no MSP admin {admin_id!r}; admins: {ids}", param_hint="ID")
    password = _read_password()
    problem = password_problem(password, admin.admin())
    if problem is not None:
        raise click.ClickException(f"{problem}; nothing was changed.")
    path = admin.password_hash_file
    if not path.parent.is_dir():
        raise click.ClickException(f"{path.parent} is not a directory; nothing was changed.")
    # argon2-cffi's default type is argon2id (RFC 9106's first recommendation).
    write_atomically(path, PasswordHasher().hash(password) + "\n", HASH_FILE_MODE)
    click.echo(f"Password set for MSP admin {admin_id} in {path}; restart the fleet's process "
               "for it to count.")
