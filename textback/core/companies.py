"""Several companies in one `textback run` process: whether their configs can share it, and
which web listeners they share.

Each company keeps its whole daemon (store, workers, gateway, PBX listeners); what the process
shares is the event loop and, per `web:` address, one listener that dispatches by Host
(`textback.web.front`). So two companies must not claim the same thing of the host: a file
(the run lock, the media directory whose unnamed files a company's retention deletes, the
routing table, the push key), a port other than the shared web one, or a Host name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from textback.config import Config


@dataclass(frozen=True)
class SharedListener:
    """One web listener of the process and the companies behind it, by Host name."""

    listen_host: str
    port: int
    hosts: dict[str, str]  # Host name → company id


def web_host(public_url: str) -> str:
    """The Host name a company's web app is served under: its public_url's."""
    return (urlsplit(public_url).hostname or "").lower()


def _files(config: Config) -> dict[str, str]:
    media = config.media.directory or config.storage.path.parent / "media"
    files = {"storage.path (its run lock)": str(config.storage.path),
             "the media directory": str(media),
             "agi.routing_file": str(config.agi.routing_file)}
    if config.pushes():
        files["the push key"] = str(config.push_key_file())
    return files


def _ports(config: Config) -> dict[str, tuple[str, int]]:
    ports = {}
    if config.reply_mail is not None:
        ports["reply_mail"] = (config.reply_mail.listen_host, config.reply_mail.listen_port)
    if config.gateway.callbacks is not None:
        callbacks = config.gateway.callbacks
        ports["gateway.callbacks"] = (callbacks.listen_host, callbacks.listen_port)
    return ports


def shared_process_problems(configs: Sequence[Config]) -> list[str]:
    """What stops these companies from running in one process, one sentence each (none: go)."""
    problems: list[str] = []
    seen_ids: set[str] = set()
    for config in configs:
        if config.company.id in seen_ids:
            problems.append(f"company {config.company.id} is given twice")
        seen_ids.add(config.company.id)
    owners: dict[tuple[str, str], str] = {}
    for config in configs:
        for what, path in _files(config).items():
            other = owners.setdefault((what, path), config.company.id)
            if other != config.company.id:
                problems.append(f"companies {other} and {config.company.id} have the same "
                                f"{what} ({path}): give each its own")
    databases: dict[str, str] = {}
    for config in configs:
        if config.storage.backend == "sqlite":
            other = databases.setdefault(str(config.storage.path), config.company.id)
            if other != config.company.id:
                problems.append(f"companies {other} and {config.company.id} have the same SQLite "
                                f"file: a SQLite store is one company's (several companies share "
                                f"a PostgreSQL database)")
    bound: dict[tuple[str, int], str] = {}
    for config in configs:
        for what, address in _ports(config).items():
            other = bound.setdefault(address, f"{config.company.id}'s {what}")
            if other != f"{config.company.id}'s {what}":
                problems.append(f"{other} and {config.company.id}'s {what} both listen on "
                                f"{address[0]}:{address[1]}")
    for listener in shared_listeners(configs):
        address = (listener.listen_host, listener.port)
        if address in bound:
            problems.append(f"{bound[address]} listens on the web port "
                            f"{address[0]}:{address[1]}")
    hosts: dict[tuple[str, int, str], str] = {}
    for config in configs:
        if config.web is None:
            continue
        key = (config.web.listen_host, config.web.port, web_host(config.web.public_url))
        other = hosts.setdefault(key, config.company.id)
        if other != config.company.id:
            problems.append(f"companies {other} and {config.company.id} have the same web "
                            f"host {key[2]} on {key[0]}:{key[1]}: the front dispatches by Host, "
                            f"so give each its own public_url host name")
    return problems


def shared_listeners(configs: Sequence[Config]) -> list[SharedListener]:
    """One listener per `web:` address, with the companies it serves by Host name."""
    listeners: dict[tuple[str, int], dict[str, str]] = {}
    for config in configs:
        if config.web is not None:
            hosts = listeners.setdefault((config.web.listen_host, config.web.port), {})
            hosts.setdefault(web_host(config.web.public_url), config.company.id)
    return [SharedListener(host, port, hosts) for (host, port), hosts in listeners.items()]
