"""`textback consent NUMBER`: one number's consent ledger, for the business, a carrier or a lawyer."""

from __future__ import annotations

import asyncio

import click

from textback.commands.common import config_option, load_config, read_store, visible


@click.command()
@config_option
@click.option("--format", "form", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True, help="table for reading, csv for a spreadsheet, json for a program.")
@click.argument("number")
def consent(config_path: str | None, form: str, number: str) -> None:
    """Every fact the consent ledger holds for NUMBER, in time order: its calls, each text and
    its words, each keyword and when it was honoured, each opt-out and its channel."""
    from textback.core import consent as ledger
    from textback.core.numbers import parse_address

    loaded = load_config(config_path)
    e164 = parse_address(number, loaded.config.numbers[0].region).number
    if e164 is None:
        raise click.BadParameter(f"{visible(number)!r} is not a valid phone number",
                                 param_hint="NUMBER")
    rows = asyncio.run(read_store(loaded, "consent_record", e164))
    if form == "table":  # a homeowner's words never drive the terminal
        rows = [{**row, "body": visible(row["body"])} for row in rows]
    click.echo(ledger.render(rows, form, loaded.config.business.timezone), nl=False)
