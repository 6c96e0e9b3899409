"""`textback msp-password`: set a fleet's MSP admin's console password (its argon2id hash, in
the file fleet.yaml names for that admin)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from textback.commands.common import unusable
from textback.config import ConfigError
from textback.core.msp import password_problem
from textback.durable import write_durably
from textback.fleet_config import DEFAULT_FLEET_PATH, read_main

HASH_FILE_MODE = 0o640  # root and the service's group read it; nobody else


def _read_password() -> str:
    """From stdin when it is not a terminal (its first line), else asked twice, unechoed."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("New password", hide_input=True, confirmation_prompt=True)


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
    # Its group is the old file's, else its directory's (`install -d -g textback`: the
    # service's group, which reads it).
    group = (path if path.exists() else path.parent).stat().st_gid
    write_durably(path, (PasswordHasher().hash(password) + "\n").encode("ascii"), HASH_FILE_MODE,
                  group)
    click.echo(f"Password set for MSP admin {admin_id} in {path}; restart the fleet's process "
               "for it to count.")
