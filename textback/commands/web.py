"""`textback passwd`: set an owner's password for the web inbox (its argon2 hash in the store)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from textback.commands.common import config_option, load_config, with_store

MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 1024


def _read_password(password_file: Path | None) -> str:
    """From the file, from stdin when it is not a terminal (one line), else asked twice."""
    if password_file is not None:
        lines = password_file.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("New password", hide_input=True, confirmation_prompt=True)


@click.command()
@config_option
@click.argument("owner")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the password from the first line of this file (else stdin or a prompt).")
def passwd(config_path: str | None, owner: str, password_file: Path | None) -> None:
    """Set the web inbox password of OWNER (an owner id); signs out their sessions."""
    from argon2 import PasswordHasher

    loaded = load_config(config_path)
    ids = [o.id for o in loaded.config.owners]
    if owner not in ids:
        raise click.BadParameter(f"no owner {owner!r}; owners: {', '.join(ids)}", param_hint="OWNER")
    password = _read_password(password_file)
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise click.ClickException(f"a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} "
                                   f"characters; nothing was changed.")
    password_hash = PasswordHasher().hash(password)
    asyncio.run(with_store(loaded, lambda store: store.set_password_hash(owner, password_hash)))
    click.echo(f"Password set for {owner}; their other sessions are signed out.")
