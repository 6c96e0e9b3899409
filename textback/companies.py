"""Several companies in one `textback run` process (`textback run -c acme.yaml -c bravo.yaml`).

Each company keeps its whole daemon, composed as a daemon of its own is (`Daemon`): its store
opened for its company (row-level security on PostgreSQL), its gateway, PBX listeners and
leases, owners, templates and workers, so every path stays scoped to one company. They share
the event loop and, per `web:` address, one listener dispatching by Host
(`textback.web.front`).

The run lock: the process takes every company's (`storage.path`) before any company starts,
and refuses to start if one is held, so no company is served twice on this host.

A company's part that fails (its `Daemon.serve` raises or returns before the stop) is not
left to fail alone and unseen: it is logged as an error naming the company, every other
company stops cleanly, and `run_companies` raises `CompanyFailed`, so the process exits with
a failure and systemd (`Restart=on-failure`) starts it again. A worker that dies inside a
company is restarted by that company's supervisor as in a daemon of its own; this is for
what the supervisor does not keep alive.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from textback import runlock, service
from textback.supervisor import cancel_and_wait
from textback.config import Loaded
from textback.core.companies import shared_listeners, shared_process_problems
from textback.web.front import WebFront
from textback.web.msp import MspConsole

log = logging.getLogger("textback")


class CompaniesRefused(ValueError):
    """These configs cannot share one process; `problems` says why, one sentence each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class CompanyFailed(RuntimeError):
    """A company's part of the process failed; the others were stopped."""

    def __init__(self, company: str, error: BaseException | None):
        super().__init__(f"company {company} stopped: "
                         f"{error!r}" if error is not None else f"company {company} stopped")
        self.company = company
        self.error = error


async def run_companies(companies: Sequence[Loaded], stop: asyncio.Event,
                        daemon: Callable[..., Any], record_ami: Path | None = None,
                        console: MspConsole | None = None) -> None:
    """Serve every company of `companies` until `stop` is set, each by a `daemon` (the Daemon
    class, which `textback run` alone imports); with `console`, the fleet's MSP console on
    every web listener of the process, under its own host name. Raises CompaniesRefused before anything starts
    when they cannot share a process, runlock.AlreadyRunning when a company is served already,
    and CompanyFailed when one company's part fails (the others stopped)."""
    configs = [loaded.config for loaded in companies]
    problems = shared_process_problems(configs)
    if problems:
        raise CompaniesRefused(problems)
    locks: list[runlock.RunLock] = []
    try:
        for config in configs:
            locks.append(runlock.acquire(config.storage.path))
        fronts = {(listener.listen_host, listener.port):
                  WebFront(listener.listen_host, listener.port, listener.hosts, console=console)
                  for listener in shared_listeners(configs)}
        daemons = [daemon(loaded, record_ami=record_ami,
                          web_front=fronts.get((loaded.config.web.listen_host,
                                                loaded.config.web.port))
                          if loaded.config.web is not None else None)
                   for loaded in companies]
        await _serve_all(daemons, list(fronts.values()), stop)
    finally:
        for lock in locks:
            lock.release()


async def _serve_all(daemons: list[Any], fronts: list[WebFront], stop: asyncio.Event) -> None:
    stopping = asyncio.Event()  # the process's stop, or a company's failure

    async def serve(daemon: Any) -> None:
        service.COMPANY.set(daemon.config.company.id)  # this task's and its children's lines
        await daemon.serve(stopping)

    tasks = {asyncio.create_task(serve(daemon), name=f"company {daemon.config.company.id}"):
             daemon.config.company.id for daemon in daemons}
    stop_waiter = asyncio.create_task(stop.wait())
    failed: tuple[str, BaseException | None] | None = None
    try:
        pending = set(tasks) | {stop_waiter}
        while tasks.keys() & pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if stop_waiter in done:
                stopping.set()
            for task in done & tasks.keys():
                if task.cancelled():
                    error: BaseException | None = asyncio.CancelledError()
                else:
                    error = task.exception()
                if stopping.is_set() and error is None:
                    continue
                company = tasks[task]
                if failed is None:
                    failed = (company, error)
                    log.error("company %s stopped unexpectedly (%r): stopping every company so "
                              "that the service is started again", company, error,
                              exc_info=error)
                stopping.set()
                for front in fronts:
                    front.close(error or RuntimeError(f"company {company} stopped"))
    finally:
        await cancel_and_wait([stop_waiter])
        stopping.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for front in fronts:
            await front.stop()
    if failed is not None:
        raise CompanyFailed(*failed)
