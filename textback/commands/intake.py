"""`textback intake "TEXT"`: the intake facts one homeowner text yields, and why, as
`textback explain` does for a call, so an installer can tune `intake.projects` and
`service_area` against real replies without a store or a running daemon."""

from __future__ import annotations

import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import click

from textback.commands.common import config_option, load_config, visible


@click.command()
@config_option
@click.option("--format", "form", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="table for reading, json for a program.")
@click.option("--caller", default=None, help="The homeowner's number: its area code is the "
                                             "weakest hint of where they are.")
@click.option("--at", "at_text", default=None, metavar="YYYY-MM-DDTHH:MM",
              help="Read the text as if it came then, in the business's time zone "
                   "(default: now); relative words (Tuesday, next month) count from it.")
@click.argument("text")
def intake(config_path: str | None, form: str, caller: str | None, at_text: str | None,
           text: str) -> None:
    """The project, budget, timing, location and service area in TEXT, each with the words
    it came from and why; nothing leaves this machine."""
    from textback.core.numbers import parse_address

    config = load_config(config_path).config
    at = time.time()
    if at_text is not None:
        try:
            moment = datetime.fromisoformat(at_text)
        except ValueError:
            raise click.BadParameter(f"{visible(at_text)!r} is not YYYY-MM-DDTHH:MM",
                                     param_hint="--at") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(config.business.timezone))
        at = moment.timestamp()
    number = None
    if caller is not None:
        number = parse_address(caller, config.numbers[0].region).number
        if number is None:
            raise click.BadParameter(f"{visible(caller)!r} is not a valid phone number",
                                     param_hint="--caller")
    facts = config.extract_intake(text, at, number)
    if form == "json":
        click.echo(json.dumps({"labels": facts.labels(), "fields": facts.as_dict()},
                              indent=2, ensure_ascii=False))
        return
    if not facts:
        click.echo("nothing found: no project, budget, timing or place in this text")
        return
    click.echo(f"labels        {visible(facts.labels())}")
    for fact in facts:
        click.echo(f"{fact.name:13} {visible(fact.value)}")
        click.echo(f"{'':13} why: {visible(fact.why)}")
