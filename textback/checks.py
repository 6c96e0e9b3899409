"""`textback check`: can this install reach everything it needs? One line per piece."""

from __future__ import annotations

import asyncio

from ami_listener.connection import AmiConnection, AmiError, try_login
from textback.config import Loaded
from textback.daemon import build_gateway
from sms_gateway.plugins import PluginError
from textback.mailer import Mailer

# What the daemon needs of its AMI user, by action (write class in brackets).
NEEDED_ACTIONS = {"asterisk": ["MessageSend"]}


async def run_checks(loaded: Loaded) -> list[tuple[str, bool, str]]:
    c = loaded.config
    results: list[tuple[str, bool, str]] = []
    try:
        version = await try_login(c.ami.host, c.ami.port, c.ami.username, loaded.secrets.ami,
                                  use_tls=c.ami.tls, tls_verify=c.ami.tls_verify)
        results.append(("ami", True, f"logged in to {c.ami.host}:{c.ami.port} as "
                                     f"{c.ami.username} (AMI {version})"))
        results.append(await _check_gateway(loaded))
    except (AmiError, ValueError) as exc:
        results.append(("ami", False, str(exc)))
        results.append(("gateway", False, f"{c.gateway.type}: not checked, AMI is unavailable")
                       if c.gateway.type == "asterisk" else await _check_gateway(loaded))
    try:
        detail = await Mailer(c.smtp, loaded.secrets.smtp_password).check()
        results.append(("smtp", True, f"reached {detail}"))
    except Exception as exc:  # noqa: BLE001 - every failure is reported in one line
        results.append(("smtp", False, f"{c.smtp.host}:{c.smtp.port}: {type(exc).__name__}: {exc}"))
    return results


async def _check_gateway(loaded: Loaded) -> tuple[str, bool, str]:
    c = loaded.config
    ami = AmiConnection(c.ami.host, c.ami.port, c.ami.username, loaded.secrets.ami,
                        on_event=lambda event: None, use_tls=c.ami.tls,
                        tls_verify=c.ami.tls_verify)
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
                return ("gateway", False, f"AMI user {c.ami.username!r} may not use "
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
