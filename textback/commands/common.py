"""What the command modules share: the config option and its loading, the store opened for one
command, row limits, times and tables for a terminal.

It imports no command module and not textback.cli, so every command module (and cli.py, which
adds their commands to `main`) depends on it and nothing depends back.
"""

from __future__ import annotations

import json
import math
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Iterator, NoReturn
from zoneinfo import ZoneInfo

import click

from textback.config import DEFAULT_CONFIG_PATH, ConfigError, Loaded, load
from textback.fleet_config import DEFAULT_FLEET_PATH, FleetError, load_company, load_fleet

CONFIG_HELP = f"The YAML configuration (default: $TEXTBACK_CONFIG or {DEFAULT_CONFIG_PATH})."
COMPANY_HELP = ("Act for this company of a fleet: its file in the fleet's companies directory, "
                "with the sections it inherits from the fleet's main file (instead of -c).")
FLEET_HELP = f"The fleet's main file, for --company (default: {DEFAULT_FLEET_PATH})."
# `textback run` serves several companies in one process: its -c and --company repeat.
CONFIGS_HELP = ("A company's config file; give -c once per company to serve several companies "
                "in one process (one PostgreSQL database, one web listener dispatching by "
                f"host). Default: $TEXTBACK_CONFIG or {DEFAULT_CONFIG_PATH}.")
COMPANIES_HELP = ("A company of the fleet to serve (its file in the fleet's companies directory, "
                  "with what it inherits from the main file), instead of -c; give it once per "
                  "company to serve several in one process.")
FLEET_ALL_HELP = (f"The fleet's main file (default: {DEFAULT_FLEET_PATH}). Without --company: "
                  "serve every company of the fleet in this process.")
# Where a command's --company and --fleet are kept for load_config (click's context meta).
CHOICE_KEY = "textback.fleet_choice"


@dataclass(frozen=True)
class FleetChoice:
    """What a command was told about a fleet: each --company (none: act on -c's config; only
    `textback run` takes more than one) and the main file (--fleet; None when not given)."""

    companies: tuple[str, ...] = ()
    fleet: Path | None = None

    @property
    def company(self) -> str | None:
        """The one company of a command that acts for one (None: -c's config)."""
        return self.companies[0] if self.companies else None

    @property
    def main_file(self) -> Path:
        return self.fleet or DEFAULT_FLEET_PATH


def fleet_choice() -> FleetChoice:
    """This command's --company and --fleet."""
    context = click.get_current_context(silent=True)
    return context.meta.get(CHOICE_KEY, FleetChoice()) if context else FleetChoice()


def load_config(path: str | None) -> Loaded:
    """The config the command acts on: -c's file, or with --company that company's of the
    fleet. Exits 2, naming each problem's file, key and line, when it is unusable."""
    choice = fleet_choice()
    if choice.company is not None and path is not None:
        raise click.UsageError("give -c FILE or --company ID, not both")
    if choice.company is None and choice.fleet is not None:
        raise click.UsageError("--fleet names the fleet's main file for --company ID: "
                               "give the company too")
    with exits_if_unusable():
        if choice.company is not None:
            return load_company(choice.main_file, choice.company)
        return load(Path(path or os.environ.get("TEXTBACK_CONFIG") or DEFAULT_CONFIG_PATH))


def load_configs(paths: tuple[str, ...]) -> list[Loaded]:
    """The configs `textback run` serves (its options from `config_option(several=True)`):
    each -c file; or each --company of the fleet; or, with --fleet alone, every company of the
    fleet, checked against each other first. Exits 2 as `load_config` does."""
    choice = fleet_choice()
    if paths and (choice.companies or choice.fleet is not None):
        raise click.UsageError("give -c FILE, or --company ID and --fleet MAIN, not both")
    if not choice.companies and choice.fleet is None:
        return [load_config(path) for path in paths or (None,)]
    with exits_if_unusable():
        if choice.companies:
            return [load_company(choice.main_file, company) for company in choice.companies]
        return list(load_fleet(choice.main_file).companies)


@contextmanager
def exits_if_unusable() -> Iterator[None]:
    """A config or a fleet that cannot be used exits 2 (`unusable`), each problem named."""
    try:
        yield
    except ConfigError as exc:
        unusable(exc.described())
    except FleetError as exc:
        unusable(exc.problems)


def unusable(problems: list[str]) -> NoReturn:
    """Exit 2 (a usage error: nothing was started), each problem on its own line."""
    click.echo(f"textback: configuration has {len(problems)} problem(s):", err=True)
    for line in problems:
        click.echo(f"  {line}", err=True)
    sys.exit(2)


def _remember(name: str, as_given=lambda value: value):
    def keep(ctx: click.Context, _param: click.Parameter, value: object) -> None:
        choice = ctx.meta.get(CHOICE_KEY, FleetChoice())
        ctx.meta[CHOICE_KEY] = replace(choice, **{name: as_given(value)})
    return keep


def _companies(value: str | tuple[str, ...] | None) -> tuple[str, ...]:
    """--company as given once (a value or None) or repeated (a tuple): the companies named."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def config_option(command=None, *, several: bool = False):
    """-c FILE, or --company ID [--fleet MAIN]: every command that reads a config takes them,
    and `load_config` reads them, so each command can act for one company of a fleet.

    `@config_option(several=True)` is `textback run`'s: -c and --company may repeat (the
    command receives `config_paths`, a tuple, for `load_configs`), and --fleet alone names
    every company of the fleet."""
    if command is None:
        return lambda command: config_option(command, several=several)
    if several:
        config = click.option("-c", "--config", "config_paths", type=click.Path(dir_okay=False),
                              multiple=True, help=CONFIGS_HELP)
    else:
        config = click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
                              help=CONFIG_HELP)
    for option in reversed([
            config,
            click.option("--company", metavar="ID", multiple=several, expose_value=False,
                         callback=_remember("companies", _companies),
                         help=COMPANIES_HELP if several else COMPANY_HELP),
            click.option("--fleet", type=click.Path(dir_okay=False, path_type=Path),
                         expose_value=False, callback=_remember("fleet"),
                         help=FLEET_ALL_HELP if several else FLEET_HELP)]):
        command = option(command)
    return command


class Seconds(click.FloatRange):
    """A number of seconds within bounds; also refuses nan, which passes FloatRange's bounds
    (it compares false with both)."""

    name = "seconds"

    def convert(self, value, param, ctx):  # noqa: ANN001 - click's signature
        seconds = super().convert(value, param, ctx)
        if math.isnan(seconds):
            self.fail(f"{value!r} is not a number of seconds.", param, ctx)
        return seconds


# Every numeric option has a range, so a value out of it is a usage error (exit 2), never an
# OverflowError from the store or a socket (tests/test_cli_hostile.py checks every option).
ROW_LIMIT = click.IntRange(1, 10_000)
PORT = click.IntRange(1, 65_535)


def local_time(at: float | None, tz: str) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")


def age_of(at: float | None) -> str:
    if at is None:
        return "-"
    seconds = max(0, int(datetime.now().timestamp() - at))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


async def with_store(loaded: Loaded, work) -> object:
    """Open the store, run `work(store)`, and close it again."""
    from textback.store import StoreRefused, open_store

    try:
        store = await open_store(loaded.config.storage, loaded.secrets.storage_password,
                                 loaded.config.company)
    except (StoreRefused, ConnectionError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        return await work(store)
    finally:
        await store.close()


def as_table(rows: list, as_json: bool, empty: str) -> bool:
    """Print rows as JSON, or say there are none; True when a table should follow."""
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return False
    if not rows:
        click.echo(empty)
        return False
    return True


async def read_store(loaded: Loaded, query: str, *args: object) -> object:
    return await with_store(loaded, lambda store: getattr(store, query)(*args))


def visible(text: str) -> str:
    """Caller-written text for a terminal: control and format characters shown, never obeyed.

    A homeowner's text may carry escape sequences (window titles, hyperlinks),
    CR or backspace to overwrite a line, or bidi overrides; each is printed as
    its escape (\\x1b, \\r, \\u202e) instead.
    """
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
