"""`textback webhooks`: the delivery log, a signed test event, a new endpoint secret."""

from __future__ import annotations

import asyncio
import base64
import secrets
import sys
import time

import click

from textback.commands.common import (ROW_LIMIT, as_table, config_option, load_config, local_time,
                                      visible, with_store)


@click.group()
def webhooks() -> None:
    """Outbound webhooks: what was delivered to each endpoint, and tests."""


@webhooks.command("log")
@config_option
@click.option("--endpoint", help="Only this endpoint's deliveries.")
@click.option("--limit", default=50, show_default=True, type=ROW_LIMIT)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def webhooks_log(config_path: str | None, endpoint: str | None, limit: int, as_json: bool) -> None:
    """Deliveries, newest first: endpoint, event, state, tries, last HTTP status and error."""
    loaded = load_config(config_path)
    rows = asyncio.run(with_store(loaded, lambda store: store.delivery_log(limit, endpoint)))
    if not as_table(rows, as_json, "No webhook deliveries."):
        return
    tz = loaded.config.business.timezone
    for row in rows:
        status = row["last_status"] if row["last_status"] is not None else "-"
        click.echo(f"{local_time(row['created_at'], tz)}  {row['endpoint']:<12} {row['type']:<22} "
                   f"{row['event_id']}  {row['state']:<9} tries {row['attempts']:<3} "
                   f"HTTP {status}  {visible(row['last_error'])}")


@webhooks.command("test")
@config_option
@click.argument("name")
def webhooks_test(config_path: str | None, name: str) -> None:
    """Send a signed webhook.test event to endpoint NAME now, and say how it went."""
    from textback.core.events import probe_event
    from textback.hooks.sender import EndpointClient

    loaded = load_config(config_path)
    hooks = loaded.config.webhooks
    endpoint = hooks.endpoint(name) if hooks else None
    if endpoint is None:
        known = ", ".join(e.name for e in hooks.endpoints) if hooks else "none configured"
        raise click.BadParameter(f"no webhook endpoint {name!r} (endpoints: {known})",
                                 param_hint="NAME")
    event = probe_event(name, time.time())

    async def work(store):
        client = EndpointClient(endpoint, loaded.secrets.webhooks[name], loaded.secrets.redactor())
        try:
            attempt = await client.deliver(event.id, event.body)
        finally:
            await client.close()
        await store.record_test_delivery(event, name, attempt.status, attempt.error,
                                         attempt.delivered)
        return attempt

    attempt = asyncio.run(with_store(loaded, work))
    if attempt.delivered:
        click.echo(f"{name}: delivered {event.id} (HTTP {attempt.status}).")
        return
    click.echo(f"{name}: not delivered: {visible(attempt.error)}", err=True)
    sys.exit(1)


@webhooks.command("secret")
def webhooks_secret() -> None:
    """Print a new random endpoint secret (whsec_...) to put in a secret file and the receiver."""
    click.echo("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii"))
