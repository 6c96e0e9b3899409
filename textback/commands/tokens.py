"""`textback token`: bearer tokens for the JSON API, stored hashed; create, list, revoke."""

from __future__ import annotations

import asyncio
import secrets
import sys

import click

from textback.commands.common import as_table, config_option, load_config, local_time, with_store


@click.group()
def token() -> None:
    """Bearer tokens for /api/v1 (a CRM, n8n, Zapier)."""


@token.command("create")
@config_option
@click.option("--name", required=True, help="Who uses it, e.g. crm; shown in logs and sources.")
@click.option("--scope", type=click.Choice(["read", "write"]), required=True,
              help="read: GET only; write: also replies, assignments, outcomes, contacts.")
def token_create(config_path: str | None, name: str, scope: str) -> None:
    """Make a token and print it once: only its hash is stored."""
    from textback.api.routes import TOKEN_PREFIX, token_hash

    loaded = load_config(config_path)
    value = TOKEN_PREFIX + secrets.token_urlsafe(32)
    asyncio.run(with_store(loaded, lambda store: store.add_token(
        name, scope, token_hash(value), value[:len(TOKEN_PREFIX) + 6])))
    click.echo(value)
    click.echo(f"A {scope} token named {name!r}. It is shown only now; keep it in the CRM's "
               f"secret store.", err=True)


@token.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def token_list(config_path: str | None, as_json: bool) -> None:
    """Every token: name, scope, the first characters, created, revoked."""
    loaded = load_config(config_path)
    rows = asyncio.run(with_store(loaded, lambda store: store.api_tokens()))
    if not as_table(rows, as_json, "No API tokens."):
        return
    tz = loaded.config.business.timezone
    for row in rows:
        state = f"revoked {local_time(row['revoked_at'], tz)}" if row["revoked_at"] else "live"
        click.echo(f"{row['name']:<16} {row['scope']:<5} {row['prefix']}…  "
                   f"created {local_time(row['created_at'], tz)}  {state}")


@token.command("revoke")
@config_option
@click.argument("name")
def token_revoke(config_path: str | None, name: str) -> None:
    """Revoke every live token called NAME; requests with it get 401 at once."""
    loaded = load_config(config_path)
    count = asyncio.run(with_store(loaded, lambda store: store.revoke_token(name)))
    if not count:
        click.echo(f"No live token named {name!r}.", err=True)
        sys.exit(1)
    click.echo(f"Revoked {count} token(s) named {name!r}.")
