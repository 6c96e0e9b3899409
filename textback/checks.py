"""`textback check`: can this install reach everything it needs? One line per piece."""

from __future__ import annotations

import asyncio
import time

from ami_listener.connection import AmiConnection, AmiError, try_login
from sms_gateway.plugins import PluginError
from textback.core.segments import count_segments
from textback.core.campaign import template_warnings
from textback.cdr import CdrError, build_source
from textback.config import Config, Loaded, PbxConfig
from textback.gateways import build_gateway
from textback.mailer import Mailer
from textback.core.rules import render_for

# What the daemon needs of its AMI user, by action (write class in brackets).
NEEDED_ACTIONS = {"asterisk": ["MessageSend"]}


def template_report(config: Config) -> list[str]:
    """Each template rendered with sample values: length, encoding, segments, and warnings."""
    number = config.numbers[0]
    sample_caller = "+12125550123"
    lines = []
    templates = [*config.text.first_texts(),
                 ("compliance.stop_confirmation", config.compliance.stop_confirmation),
                 ("compliance.start_confirmation", config.compliance.start_confirmation),
                 ("compliance.help_text", config.compliance.help_text)]
    footer = " Reply STOP to opt out." if config.text.reply_stop_footer else ""
    for key, template in templates:
        body = render_for(config, template, number, sample_caller, time.time())
        if key.startswith("text."):
            body += footer
        count = count_segments(body)
        lines.append(f"{key}: {len(body)} characters, {count.encoding}, "
                     f"{count.segments} segment(s)")
        lines.append(f"      {body}")
        if count.non_gsm:
            lines.append(f"      warning: {' '.join(repr(c) for c in count.non_gsm)} force UCS-2 "
                         f"(70 characters a segment instead of 160)")
        if count.segments > 2:
            lines.append(f"      warning: {count.segments} segments; keep a first text to 2 or fewer")
    lines += [f"warning: {warning}" for warning in template_warnings(config)]
    return lines


def media_paths(config: Config) -> str:
    """What happens to photos on this gateway, both ways, in one line for `textback check`.
    Nothing is probed: a SIP MESSAGE with a photo is refused by Asterisk (415, in
    res_pjsip_messaging) before the dialplan, so no event ever reaches textback to detect."""
    kind, web = config.gateway.type, config.web
    if kind in ("twilio", "telnyx"):
        out = (f"an owner's photo goes as MMS through signed links under {web.public_url}/media/"
               " (the provider must reach them)" if web is not None else
               "an owner's photo is NOT texted (the owner is told): MMS needs a `web:` listener "
               "whose public_url the provider can reach")
        return f"homeowners' photos come in through {kind}'s webhook; {out}"
    if kind == "asterisk":
        return ("none either way. Asterisk answers a SIP MESSAGE with a photo (not text/plain) "
                "with 415 before the dialplan runs: the homeowner's carrier is told, but "
                "textback never sees it and cannot tell the owner. An owner's photo is not "
                "texted (the owner is told). For photos, use twilio or telnyx")
    if kind == "kannel":
        return "none either way: Kannel carries SMS only; an owner's photo is not texted (told)"
    if kind == "http":
        http = config.gateway.http
        got = ("come in through the webhook (inbound.media)" if http and http.inbound
               and http.inbound.media else "are not read (no inbound.media)")
        out = (f"an owner's photo goes as MMS ({http.mms.field}) through signed links under "
               f"{web.public_url}/media/" if http and http.mms and web is not None else
               "an owner's photo is not texted (the owner is told)")
        return f"homeowners' photos {got}; {out}"
    return "an owner's photo is texted only if the plugin declares MMS (`mms` limits)"


async def run_checks(loaded: Loaded) -> list[tuple[str, bool, str]]:
    c = loaded.config
    results: list[tuple[str, bool, str]] = [("photos", True, media_paths(c))]
    logins = [await _check_pbx_login(loaded, pbx) for pbx in c.pbx_list()]
    results += logins
    if c.gateway.type == "asterisk" and not all(ok for _, ok, _ in logins):
        results.append(("gateway", False, f"{c.gateway.type}: not checked, AMI is unavailable"))
    else:
        results.append(await _check_gateway(loaded))
    try:
        detail = await Mailer(c.smtp, loaded.secrets.smtp_password).check()
        results.append(("smtp", True, f"reached {detail}"))
    except Exception as exc:  # noqa: BLE001 - every failure is reported in one line
        results.append(("smtp", False, f"{c.smtp.host}:{c.smtp.port}: {type(exc).__name__}: {exc}"))
    if c.storage.backend == "postgresql":
        results += await _check_postgresql(loaded)
    for pbx in c.pbx_list():
        if pbx.recovery is not None:
            results.append(await _check_cdr(loaded, pbx))
    if c.selftest is not None and c.selftest.ami is not None:
        results.append(await _check_selftest_login(loaded))
    return results


async def _check_postgresql(loaded: Loaded) -> list[tuple[str, bool, str]]:
    """The PostgreSQL database storage.url names: reached, its server, its schema, the
    company (read only: `textback run` migrates it and adds the company); and a warning line
    when the role escapes row-level security, which keeps companies apart."""
    from textback.store.postgres.connection import describe_database
    password = loaded.secrets.storage_password
    try:
        detail, warning = await describe_database(
            loaded.config.storage.url, password.get_secret_value() if password else None,
            loaded.config.company.id)
    except Exception as exc:  # noqa: BLE001 - every failure is reported in one line
        return [("database", False, f"{loaded.config.storage.url}: {type(exc).__name__}: {exc}")]
    return [("database", True, detail)] + ([("database", True, f"warning: {warning}")]
                                          if warning else [])


def _pbx_label(config: Config, name: str, pbx: PbxConfig) -> str:
    """A check's name: `ami`, or `ami branch` when the config lists several PBXs."""
    return f"{name} {pbx.id}" if config.pbxs else name


async def _check_pbx_login(loaded: Loaded, pbx: PbxConfig) -> tuple[str, bool, str]:
    """One line per PBX: its AMI user logs in, or why not."""
    a, label = pbx.ami, _pbx_label(loaded.config, "ami", pbx)
    try:
        version = await try_login(a.host, a.port, a.username, loaded.secrets.ami_of(pbx.id),
                                  use_tls=a.tls, tls_verify=a.tls_verify)
    except (AmiError, ValueError) as exc:
        return (label, False, str(exc))
    served = f"; serves {', '.join(pbx.numbers)}" if loaded.config.pbxs else ""
    return (label, True, f"logged in to {a.host}:{a.port} as {a.username} (AMI {version}){served}")


async def _check_selftest_login(loaded: Loaded) -> tuple[str, bool, str]:
    """The originate-only user the self-test places its call as: a wrong secret shows now,
    not at the next scheduled run."""
    a, user = loaded.config.selftest_pbx().ami, loaded.config.selftest.ami.username
    try:
        await try_login(a.host, a.port, user, loaded.secrets.selftest_ami,
                        use_tls=a.tls, tls_verify=a.tls_verify)
    except (AmiError, ValueError) as exc:
        return ("selftest", False, f"AMI user {user!r}: {exc}")
    return ("selftest", True, f"AMI user {user!r} logs in (it needs write = originate)")


async def _check_cdr(loaded: Loaded, pbx: PbxConfig | None = None) -> tuple[str, bool, str]:
    """The CDR that a PBX's calls missed while AMI was down are recovered from (default: the
    first PBX's): readable, in the expected layout."""
    pbx = pbx or loaded.config.pbx_list()[0]
    label = _pbx_label(loaded.config, "cdr", pbx)
    source = build_source(pbx.recovery, loaded.secrets.pbx_cdr.get(pbx.id))
    try:
        records = await source.records_since(time.time() - 86400)
    except CdrError as exc:
        return (label, False, str(exc))
    return (label, True, f"{source.description}: {len(records)} row(s) of the last day readable")


async def _check_gateway(loaded: Loaded) -> tuple[str, bool, str]:
    c = loaded.config
    pbx = c.pbx_list()[0]  # the asterisk gateway's AMI rights, checked on the first PBX's user
    a = pbx.ami
    ami = AmiConnection(a.host, a.port, a.username, loaded.secrets.ami_of(pbx.id),
                        on_event=lambda event: None, use_tls=a.tls, tls_verify=a.tls_verify)
    try:
        gateway = build_gateway(c, ami, loaded.secrets)
    except PluginError as exc:
        return ("gateway", False, f"plugin: {exc}")
    try:
        if c.gateway.type == "asterisk":
            ami.start()
            await ami.wait_logged_in(5)
            listing = await ami.action({"Action": "ListCommands"})
            allowed = {key.lower() for key in listing}
            missing = [a for a in NEEDED_ACTIONS["asterisk"] if a.lower() not in allowed]
            if missing:
                return ("gateway", False, f"AMI user {a.username!r} may not use "
                                          f"{', '.join(missing)}: add 'message' to its write= in manager.conf")
        return ("gateway", True, await gateway.check())
    except (AmiError, asyncio.TimeoutError, OSError) as exc:
        return ("gateway", False, f"{c.gateway.type}: {exc or type(exc).__name__}")
    except Exception as exc:  # noqa: BLE001 - a provider check may fail in any way; one line each
        return ("gateway", False, f"{c.gateway.type}: {type(exc).__name__}: {exc}")
    finally:
        await ami.close()
        if hasattr(gateway, "close"):
            await gateway.close()
