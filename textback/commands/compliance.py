"""`textback compliance 10dlc`: the carrier's campaign form, filled in from the config."""

from __future__ import annotations

import click

from textback.commands.common import config_option, load_config


@click.group()
def compliance() -> None:
    """What carriers and regulators ask of a business that texts."""


@compliance.command("10dlc")
@config_option
def ten_dlc(config_path: str | None) -> None:
    """Print what a 10DLC campaign registration asks (use case, message flow, sample messages,
    keywords and their replies, privacy statement), filled in from the config, to copy into the
    provider's form. Warnings follow for anything the vetting would refuse."""
    from textback.core.campaign import form, template_warnings

    config = load_config(config_path).config
    for field, value in form(config):
        click.echo(f"{field}:")
        click.echo(f"    {value}\n")
    if config.web is None:
        click.echo("warning: no `web:` listener, so no public consent page (/consent) for the "
                   "form's proof-of-consent field; configure `web:` with its public_url")
    for warning in template_warnings(config):
        click.echo(f"warning: {warning}")
