"""The systemd unit `textback install --systemd` writes, from the configuration (pure).

The daemon runs as its own system user in a read-only system: it may write
only its state directory, /var/lib/textback, where the database, its lock and
the routing table live. It may bind ports below 1024 only when a listener is
configured on one (reply mail on port 25, usually).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from textback.config import Config

SERVICE_USER = "textback"
STATE_DIRECTORY = PurePosixPath("/var/lib/textback")
WATCHDOG_SECONDS = 30  # a loop stuck this long is killed and restarted


def privileged_ports(config: Config) -> list[tuple[str, int]]:
    """The listeners configured on a port below 1024, which need CAP_NET_BIND_SERVICE."""
    ports = []
    if config.reply_mail is not None:
        ports.append(("reply_mail.listen_port", config.reply_mail.listen_port))
    if config.web is not None:
        ports.append(("web.port", config.web.port))
    if config.gateway.webhooks is not None:
        ports.append(("gateway.webhooks.listen_port", config.gateway.webhooks.listen_port))
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
    capability = "CAP_NET_BIND_SERVICE" if privileged_ports(config) else ""
    lines = [
        "# Written by `textback install --systemd`; run it again rather than editing this file.",
        "[Unit]",
        f"Description=textback missed-call text-back for {config.business.name}",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        # READY=1 once the store is open and AMI has logged in; WATCHDOG=1 from the event loop.
        "Type=notify",
        "NotifyAccess=main",
        f"WatchdogSec={WATCHDOG_SECONDS}",
        # A PBX that is down at boot delays READY; meanwhile the daemon keeps running, so the
        # admin is emailed that AMI is down, instead of a restart loop that mails nobody.
        "TimeoutStartSec=infinity",
        f"ExecStart={' '.join(command)}",
        "Restart=on-failure",
        "RestartSec=5",
        f"User={SERVICE_USER}",
        f"Group={SERVICE_USER}",
        "StateDirectory=textback",
        "StateDirectoryMode=0755",  # the AGI script, run by Asterisk, reads routing.json
        "UMask=0027",
        "ProtectSystem=strict",
        f"ReadWritePaths={STATE_DIRECTORY}",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "NoNewPrivileges=yes",
        f"CapabilityBoundingSet={capability}",
    ]
    if capability:
        lines.append(f"AmbientCapabilities={capability}")
    lines += [
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "LockPersonality=yes",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"
