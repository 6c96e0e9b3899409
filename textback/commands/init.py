"""`textback init`: a first config for a new install, from prompts or flags.

It writes the config, a random AMI secret (mode 0600) and the manager.conf
snippet to paste. With an AMI login that already works (an admin user, say),
it lists the PBX's PJSIP endpoints so the installer picks the trunk; it never
picks one itself. The texts it writes are in textback.initconfig.
"""

from __future__ import annotations

import asyncio
import grp
import importlib.resources
import ipaddress
import os
import secrets
import socket
import sys
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from pydantic import SecretStr

from ami_listener.connection import AmiError, event_fields, one_shot
from textback import freepbx
from textback.commands.common import PORT
from textback.config import ConfigError, parse
from textback.initconfig import (Answers, Owner, config_text, endpoint_rows, manager_snippet,
                                 parse_owner)
from textback.core.numbers import to_e164
from textback.unit import SERVICE_USER

SECRET_NAME, SELFTEST_SECRET_NAME = "ami.secret", "ami-selftest.secret"
CDR_SECRET_NAME = "cdrdb.secret"
CONFIG_NAME, SNIPPET_NAME = "config.yaml", "manager-textback.conf"


class Asker:
    """A value from its flag, else from a prompt; with --no-input, a missing one is an error
    (the AMI host alone defaults to this machine)."""

    def __init__(self, interactive: bool):
        self.interactive = interactive
        self.missing: list[str] = []

    def ask(self, given, flag: str, question: str, check, default=None, quiet_default=False):
        """`default` is offered at the prompt; without input it is taken only if `quiet_default`."""
        if given is not None:
            try:
                return check(given)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint=flag) from None
        if not self.interactive:
            if quiet_default:
                return check(default)
            self.missing.append(flag)
            return None
        while True:
            answer = click.prompt(question, default=default)
            try:
                return check(answer)
            except ValueError as exc:
                click.echo(f"  {exc}", err=True)


def _name(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 60:
        raise ValueError("the business name must be 1 to 60 characters")
    return value


def _zone(value: str) -> str:
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (an IANA name such as America/New_York)") from None
    return value.strip()


def _numbers(values) -> tuple[str, ...]:
    items = [part for value in ([values] if isinstance(values, str) else values)
             for part in value.replace(";", ",").split(",") if part.strip()]
    numbers = []
    for item in items:
        number = to_e164(item.strip(), None) or to_e164(item.strip(), "US")
        if number is None:
            raise ValueError(f"{item.strip()!r} is not a phone number (write +12125550100)")
        numbers.append(number)
    if not numbers:
        raise ValueError("give at least one business number")
    return tuple(dict.fromkeys(numbers))


def _owners(values) -> tuple[Owner, ...]:
    items = [part for value in ([values] if isinstance(values, str) else values)
             for part in value.split(",") if part.strip()]
    owners: list[Owner] = []
    for item in items:
        owners.append(parse_owner(item, {o.id for o in owners}))
    if not owners:
        raise ValueError("give at least one owner email")
    return tuple(owners)


def _host(value: str) -> str:
    value = value.strip()
    if not value or any(ch.isspace() for ch in value):
        raise ValueError(f"{value!r} is not a host name or address")
    return value


def _permit_for(host: str, port: int) -> str:
    """The address this machine reaches the AMI host from: the one manager.conf must permit."""
    try:
        if ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
            return "127.0.0.1/255.255.255.255"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((host, port))  # UDP: no packet is sent, the route picks the address
            return f"{probe.getsockname()[0]}/255.255.255.255"
    except OSError:
        return "127.0.0.1/255.255.255.255  ; the address textback connects from"


def _list_endpoints(host: str, port: int, user: str, secret_file: Path) -> list[tuple[str, str, str]]:
    secret = SecretStr(secret_file.read_text(encoding="utf-8").strip())
    _, answer = asyncio.run(one_shot(host, port, user, secret, {"Action": "PJSIPShowEndpoints"}))
    return endpoint_rows([event_fields(message) for message in answer])


def _pick_trunk(asker: Asker, given: str | None, endpoints: list[tuple[str, str, str]] | None) -> str | None:
    names = [name for name, _, _ in endpoints or []]
    if endpoints is not None:
        click.echo("PJSIP endpoints on the PBX:")
        for number, (name, state, contacts) in enumerate(endpoints, 1):
            click.echo(f"  {number:>2}. {name:<20} {state:<14} {contacts}")
    if given is not None:
        if endpoints is not None and given not in names:
            raise click.BadParameter(f"{given!r} is not one of the PBX's PJSIP endpoints "
                                     f"({', '.join(names) or 'none'})", param_hint="--trunk")
        return given

    def check(answer: str) -> str:
        answer = answer.strip()
        if endpoints is None:
            if not answer:
                raise ValueError("name the trunk's PJSIP endpoint")
            return answer
        if answer.isdigit() and 1 <= int(answer) <= len(names):
            return names[int(answer) - 1]
        if answer in names:
            return answer
        raise ValueError(f"pick one of 1-{len(names)} or an endpoint name")

    if endpoints is None:
        question = "PJSIP endpoint of the SIP trunk your calls come in on (not checked: no AMI login)"
    else:
        question = "Which endpoint is the SIP trunk your calls come in on? (number or name)"
    return asker.ask(None, "--trunk", question, check)


@click.command()
@click.option("--business-name", help="The business's name, as texts will say it.")
@click.option("--timezone", help="IANA time zone, e.g. America/New_York.")
@click.option("--number", "numbers", multiple=True, help="A business number (repeat, or comma-separated).")
@click.option("--owner", "owners", multiple=True,
              help='An owner: dana@example.com or "Dana Reyes <dana@example.com>" (repeat).')
@click.option("--admin-email", help="Incidents and self-test reports (default: the first owner).")
@click.option("--ami-host", help="Where Asterisk's AMI listens (without input: 127.0.0.1).")
@click.option("--ami-port", type=PORT, default=5038, show_default=True)
@click.option("--ami-username", default="textback", show_default=True)
@click.option("--trunk", help="The PJSIP endpoint of the SIP trunk (checked against the PBX's "
                              "endpoints when --list-as can log in).")
@click.option("--list-as", "list_user", help="An AMI user that already works and may run "
              "PJSIPShowEndpoints (write = system), to list the endpoints; only used for that.")
@click.option("--list-secret-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The secret of the --list-as user.")
@click.option("--smtp-host", default="localhost", show_default=True)
@click.option("--smtp-port", type=PORT, default=25, show_default=True)
@click.option("--database", default="/var/lib/textback/textback.db", show_default=True)
@click.option("--routing-file", default="/var/lib/textback/routing.json", show_default=True)
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path("/etc/textback"), show_default=True, help="Where the files are written.")
@click.option("--freepbx/--no-freepbx", "on_freepbx", default=None,
              help="Write the AMI user into manager_custom.conf and the SMS dialplan into "
                   "extensions_custom.conf, and read the CDR from asteriskcdrdb (default: when "
                   "/etc/freepbx.conf or fwconsole is found).")
@click.option("--asterisk-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("/etc/asterisk"), show_default=True,
              help="Where the _custom files are (with --freepbx).")
@click.option("--force", is_flag=True, help="Replace files that already exist.")
@click.option("--no-input", is_flag=True, help="Never prompt: a value without its flag is an error.")
def init(business_name, timezone, numbers, owners, admin_email, ami_host, ami_port, ami_username,
         trunk, list_user, list_secret_file, smtp_host, smtp_port, database, routing_file,
         on_freepbx: bool | None, asterisk_dir: Path, directory: Path, force: bool,
         no_input: bool) -> None:
    """Write a first config, a random AMI secret and the manager.conf snippet to paste.

    Asks for what its flags do not give. Exits 2 when a value is missing
    (with --no-input) or wrong, 1 when the endpoint listing fails or a file
    exists (without --force).
    """
    asker = Asker(interactive=not no_input)
    name = asker.ask(business_name, "--business-name", "Business name", _name)
    zone = asker.ask(timezone, "--timezone", "Time zone", _zone, default="America/New_York")
    dids = asker.ask(numbers or None, "--number", "Business number(s), comma-separated", _numbers)
    people = asker.ask(owners or None, "--owner", "Owner email(s), comma-separated", _owners)
    host = asker.ask(ami_host, "--ami-host", "AMI host", _host, default="127.0.0.1",
                     quiet_default=True)
    endpoints = None
    if list_user:
        if list_secret_file is None:
            raise click.BadParameter("give the --list-as user's secret file", param_hint="--list-secret-file")
        try:
            endpoints = _list_endpoints(host, ami_port, list_user, list_secret_file)
        except (AmiError, OSError) as exc:
            click.echo(f"textback: could not list the PJSIP endpoints as {list_user!r}: {exc} "
                       f"(it needs write = system for PJSIPShowEndpoints)", err=True)
            sys.exit(1)
    chosen = _pick_trunk(asker, trunk, endpoints)
    if asker.missing:
        click.echo(f"textback: --no-input needs {', '.join(asker.missing)}", err=True)
        sys.exit(2)
    if on_freepbx is None:
        on_freepbx = freepbx.detected()
    directory = directory.resolve()
    paths = {key: directory / file for key, file in (
        ("config", CONFIG_NAME), ("secret", SECRET_NAME), ("selftest", SELFTEST_SECRET_NAME),
        ("snippet", SNIPPET_NAME))}
    if on_freepbx:
        paths["cdr"] = directory / CDR_SECRET_NAME
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not force:
        click.echo(f"textback: {', '.join(existing)} already exist(s); --force replaces them", err=True)
        sys.exit(1)
    answers = Answers(
        business_name=name, timezone=zone, numbers=dids, owners=people,
        admin_email=admin_email or people[0].email, ami_host=host, ami_port=ami_port,
        ami_username=ami_username, trunk=chosen, permit=_permit_for(host, ami_port),
        secret_file=str(paths["secret"]), selftest_secret_file=str(paths["selftest"]),
        smtp_host=smtp_host, smtp_port=smtp_port, database=database, routing_file=routing_file,
        cdr_secret_file=str(paths["cdr"]) if on_freepbx else None)
    secret, selftest_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    text = config_text(answers)
    directory.mkdir(parents=True, exist_ok=True)
    snippet = manager_snippet(answers, secret, selftest_secret)
    cdr_secret = secrets.token_urlsafe(32)
    for key, content in (("secret", secret + "\n"), ("selftest", selftest_secret + "\n"),
                         ("snippet", snippet), ("cdr", cdr_secret + "\n")):
        if key in paths:
            _write_private(paths[key], content)
    try:  # what `textback check` reads first; a failure here is a bug in this command
        parse(text, source=str(paths["config"]), base=directory)
    except ConfigError as exc:
        raise click.ClickException(f"the config written would not load:\n{exc}") from None
    paths["config"].write_text(text, encoding="utf-8")
    service_group = _share_with_service(*(paths[key] for key in ("config", "secret", "selftest", "cdr")
                                          if key in paths))
    if service_group:
        click.echo(f"Made the config and secrets readable by group {service_group} (mode 0640), "
                   f"whose service reads them.")
    if on_freepbx:
        _write_freepbx_files(asterisk_dir, snippet, answers.ami_username, cdr_secret)
        return
    click.echo(f"Wrote {paths['config']}\n      {paths['secret']} (mode 0600)\n"
               f"      {paths['snippet']} (mode 0600: it holds the secret)\n"
               f"Next: paste {paths['snippet'].name} into manager.conf, "
               f"`asterisk -rx \"manager reload\"`, choose an SMS gateway in the config, then "
               f"`textback check -c {paths['config']}`.")


def _write_freepbx_files(asterisk_dir: Path, snippet: str, user: str, cdr_secret: str) -> None:
    """textback's block in FreePBX's _custom files (never in the files FreePBX generates), then
    what the installer runs: the CDR user's SQL and `fwconsole reload`."""
    dialplan = (importlib.resources.files("dialplan") / "textback.conf").read_text(encoding="utf-8")
    for name, content in ((freepbx.MANAGER_CUSTOM, snippet), (freepbx.EXTENSIONS_CUSTOM, dialplan)):
        path = asterisk_dir / name
        existing = path.read_text(encoding="utf-8") if path.exists() else ""
        if name == freepbx.MANAGER_CUSTOM and not path.exists():
            # It holds the secret: readable by Asterisk's user (the directory's owner) alone.
            _write_private(path, freepbx.with_block(existing, content))
            owner = asterisk_dir.stat()
            if os.geteuid() == 0:
                os.chown(path, owner.st_uid, owner.st_gid)
        else:  # an existing file keeps its owner and mode
            path.write_text(freepbx.with_block(existing, content), encoding="utf-8")
        click.echo(f"Wrote textback's block in {path}")
    click.echo(f"FreePBX: {', '.join(freepbx.GENERATED)} are FreePBX's and were not touched.\n"
               f"Recovery reads the CDR database {freepbx.CDR_DATABASE}; as MariaDB's root, run:\n"
               f"  {freepbx.cdr_grants(user, cdr_secret).replace(chr(10), chr(10) + '  ')}\n"
               f"Next: `fwconsole reload` (it loads the AMI user and the dialplan), choose an SMS "
               f"gateway in the config, then `systemctl enable --now textback`.")


def _share_with_service(*paths: Path) -> str | None:
    """Let the service user's group read what the daemon needs, when that user exists (the
    Debian package creates it) and we may give files to it; the snippet stays root's."""
    try:
        gid = grp.getgrnam(SERVICE_USER).gr_gid
    except KeyError:
        return None
    if os.geteuid() != 0:
        return None
    for path in paths:
        os.chown(path, 0, gid)
        path.chmod(0o640)
    return SERVICE_USER


def _write_private(path: Path, content: str) -> None:
    """Create (or replace) `path` readable by its owner alone, from the first byte."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(content)
