"""The systemd unit `textback install --systemd` writes, from the configuration (pure).

The daemon runs as its own system user in a read-only system: it may write
only its state directory, /var/lib/textback, where the database, its lock and
the routing table live. It may bind ports below 1024 only when a listener is
configured on one (reply mail on port 25, usually).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the package's build imports this module with no dependencies installed
    from textback.config import Config

SERVICE_USER = "textback"
STATE_DIRECTORY = PurePosixPath("/var/lib/textback")
WATCHDOG_SECONDS = 30  # a loop stuck this long is killed and restarted
# `textback run`'s exit status for a config or a store it cannot run (cli.py): a person must act
# first, so systemd does not restart it.
CONFIG_REFUSED_STATUS = 2
# Where the Debian package puts the program and where `textback init` writes the config.
PACKAGED_PROGRAM = PurePosixPath("/opt/textback/bin/textback")
PACKAGED_CONFIG = PurePosixPath("/etc/textback/config.yaml")
# A fleet's main file (textback/fleet_config.py), which the template unit's companies are of.
PACKAGED_FLEET = PurePosixPath("/etc/textback/fleet.yaml")


def privileged_ports(config: Config) -> list[tuple[str, int]]:
    """The listeners configured on a port below 1024, which need CAP_NET_BIND_SERVICE."""
    ports = []
    if config.reply_mail is not None:
        ports.append(("reply_mail.listen_port", config.reply_mail.listen_port))
    if config.web is not None:
        ports.append(("web.port", config.web.port))
    if config.gateway.callbacks is not None:
        ports.append(("gateway.callbacks.listen_port", config.gateway.callbacks.listen_port))
    return [(key, port) for key, port in ports if 0 < port < 1024]


def paths_outside_state(config: Config) -> list[tuple[str, Path]]:
    """Configured files the daemon writes that the sandbox would make read-only."""
    written = [("storage.path", config.storage.path), ("agi.routing_file", config.agi.routing_file)]
    if config.media.directory is not None:  # by default beside the database
        written.append(("media.directory", config.media.directory))
    return [(key, path) for key, path in written
            if not PurePosixPath(path).is_relative_to(STATE_DIRECTORY)]


def hidden_by_protect_home(path: str) -> bool:
    """ProtectHome=yes hides these trees from the service: its interpreter must not live there."""
    return any(PurePosixPath(path).is_relative_to(top) for top in ("/home", "/root", "/run/user"))


def render_unit(command: list[str], config: Config) -> str:
    """textback.service for `command` (the interpreter, `-m textback run -c CONFIG`)."""
    return unit_text(" ".join(command), f"textback missed-call text-back for {config.business.name}",
                     bind_low_ports=bool(privileged_ports(config)),
                     origin="Written by `textback install --systemd`; run it again rather than "
                            "editing this file.")


def packaged_unit() -> str:
    """The unit the Debian package ships: the config `textback init` writes, no low ports.

    A config with a listener below 1024 needs `textback install --systemd`, whose unit in
    /etc/systemd/system overrides this one.
    """
    return unit_text(f"{PACKAGED_PROGRAM} run -c {PACKAGED_CONFIG}",
                     "textback missed-call text-back", bind_low_ports=False,
                     origin="Shipped by the textback package; `textback install --systemd` "
                            "writes an override in /etc/systemd/system.",
                     condition=PACKAGED_CONFIG)


def company_unit(program: str = str(PACKAGED_PROGRAM)) -> str:
    """textback@.service, the template the Debian package ships: `textback@acme` runs company
    acme of the fleet (`run --company acme`), under the same sandbox, in a state directory of
    its own, /var/lib/textback/acme, where a fleet puts that company's run lock, photos and
    routing table, so two companies' daemons on one host never share them. %i, not %I: a
    company id may hold `-`, which %I would unescape to `/`."""
    return unit_text(f"{program} run --company %i",
                     "textback missed-call text-back for company %i", bind_low_ports=False,
                     origin="Shipped by the textback package: `systemctl enable --now "
                            "textback@ID` runs company ID of /etc/textback/fleet.yaml.",
                     condition=PACKAGED_FLEET, state="textback/%i")


def unit_text(exec_start: str, description: str, bind_low_ports: bool, origin: str,
              condition: PurePosixPath | None = None, state: str = "textback") -> str:
    """The one unit text, installed by hand or by the package.

    Each sandboxing line was kept only after the daemon, the web inbox, reply mail,
    argon2 sign-in and the MariaDB CDR reader ran under it with systemd as PID 1
    (tests/test_debian_package.py); `systemd-analyze security` scores it 1.2.
    The network stays open: AMI, SMTP, the gateways and the CDR database are reached over it.
    """
    capability = "CAP_NET_BIND_SERVICE" if bind_low_ports else ""
    lines = [
        f"# {origin}",
        "[Unit]",
        f"Description={description}",
        # Asterisk on the same host is started first; textback waits for AMI, so a PBX that is
        # stopped or absent (AMI on another host) does not keep it from running.
        "After=network-online.target asterisk.service",
        "Wants=network-online.target",
    ]
    if condition is not None:
        lines.append(f"ConditionPathExists={condition}")  # written by `textback init`
    lines += [
        "",
        "[Service]",
        # READY=1 once the store is open and AMI has logged in; WATCHDOG=1 from the event loop.
        "Type=notify",
        "NotifyAccess=main",
        f"WatchdogSec={WATCHDOG_SECONDS}",
        # A PBX that is down at boot delays READY; meanwhile the daemon keeps running, so the
        # admin is emailed that AMI is down, instead of a restart loop that mails nobody.
        "TimeoutStartSec=infinity",
        f"ExecStart={exec_start}",
        "Restart=on-failure",
        "RestartSec=5",
        # Exit 2 is a configuration `textback run` refused before starting anything: the start
        # fails at once with the file, key and line in the journal, instead of a restart every
        # 5 s that repeats it and a `systemctl start` that never returns.
        f"RestartPreventExitStatus={CONFIG_REFUSED_STATUS}",
        f"User={SERVICE_USER}",
        f"Group={SERVICE_USER}",
        f"StateDirectory={state}",
        "StateDirectoryMode=0755",  # the AGI script, run by Asterisk, reads routing.json
        "UMask=0027",
        "ProtectSystem=strict",
        f"ReadWritePaths={STATE_DIRECTORY.parent / state}",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "DevicePolicy=closed",
        "PrivateMounts=yes",
        "NoNewPrivileges=yes",
        f"CapabilityBoundingSet={capability}",
    ]
    if capability:
        lines.append(f"AmbientCapabilities={capability}")
    lines += [
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "ProcSubset=pid",
        "KeyringMode=private",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces=yes",
        "RestrictSUIDSGID=yes",
        "RestrictRealtime=yes",
        "RemoveIPC=yes",
        "LockPersonality=yes",
        # lxml, argon2-cffi and cryptography are compiled ahead: nothing maps memory W+X.
        "MemoryDenyWriteExecute=yes",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "SystemCallErrorNumber=EPERM",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # the package's build writes debian/textback.service with this,
    import sys                # and debian/textback@.service with --company

    print(company_unit() if sys.argv[1:] == ["--company"] else packaged_unit(), end="")
