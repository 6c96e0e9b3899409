"""Several companies in one process (`textback.companies`, `textback run -c A -c B`): real
daemons in process on one PostgreSQL database (as a role row-level security binds), one web
listener dispatching by Host. A Host no company is served under is a 404, never a company's
page; a session of A is no session on B, and A's CSRF token is refused by B; configs that
would share a file, a port or a Host are refused before anything starts; one company's part
that fails stops the process (the others stopped cleanly) instead of dying unseen."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
import time
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver

from lab.configs import BUSINESS_NUMBER, base_config, write_config
from lab.harness import SMTP_SINK_PORT
from textback.companies import CompanyFailed, run_companies
from textback import service
from textback.config import load
from textback.core.companies import shared_process_problems
from textback.daemon import Daemon
from textback.service import OneLineFormatter
from textback.web.server import CONTENT_SECURITY_POLICY
from tests.web_helpers import OWNERS, PASSWORDS, form_value, run_cli, set_passwords

WEB_PORT = 18195
SLUGS = ("acme", "bravo")
HOMEOWNERS = {"acme": "+12125550101", "bravo": "+12125550102"}


def base_of(slug: str) -> str:
    return f"http://{slug}.localhost:{WEB_PORT}"


def company_config(tmp_path, slug: str, url: str | None, **overrides):
    home = tmp_path / slug
    home.mkdir(exist_ok=True)
    storage = {"path": str(home / "textback.db")}
    if url is not None:
        storage["url"] = url
    return write_config(home, base_config(home, **{
        "smtp.port": SMTP_SINK_PORT, "owners": OWNERS, "text.delay_seconds": 3600,
        "company": {"id": slug, "name": slug.title()}, "storage": storage,
        "web": {"port": WEB_PORT, "public_url": base_of(slug)}, **overrides}))


class Loopback(AbstractResolver):
    """`*.localhost` is this host, as browsers resolve it (RFC 6761), without a DNS server."""

    async def resolve(self, host, port=0, family=socket.AF_INET):
        assert host.endswith(".localhost") or host == "localhost", host
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self):
        pass


@asynccontextmanager
async def browser():
    """A cookie-keeping client that resolves each company's host name, as a browser does:
    its cookies are kept per host."""
    connector = aiohttp.TCPConnector(resolver=Loopback())
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


@asynccontextmanager
async def serving(paths, timeout: float = 15.0):
    """`run_companies` over `paths` on this loop until the block ends: each company's daemon."""
    made: dict[str, Daemon] = {}

    def daemon(loaded, **kwargs):
        made[loaded.config.company.id] = one = Daemon(loaded, **kwargs)
        return one

    stop = asyncio.Event()
    task = asyncio.create_task(run_companies([load(p) for p in paths.values()], stop, daemon))
    try:
        deadline = time.monotonic() + timeout
        while len(made) < len(paths) or not all(d.serving.is_set() for d in made.values()):
            if task.done():
                task.result()
                raise AssertionError("the companies returned before they started")
            assert time.monotonic() < deadline, "the companies did not start"
            await asyncio.sleep(0.05)
        yield made
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout)


async def sign_in(session: aiohttp.ClientSession, slug: str) -> None:
    async with session.get(f"{base_of(slug)}/signin") as answer:
        csrf = form_value(await answer.text(), "csrf")
    async with session.post(f"{base_of(slug)}/signin", allow_redirects=False, data={
            "csrf": csrf, "account": "dana", "password": PASSWORDS["dana"], "next": "/"}) as answer:
        assert answer.status == 303 and "/signin" not in answer.headers["Location"]


async def thread_csrf(session: aiohttp.ClientSession, slug: str, conversation: int) -> str:
    async with session.get(f"{base_of(slug)}/c/{conversation}", allow_redirects=False) as answer:
        assert answer.status == 200, answer.status
        return form_value(await answer.text(), "csrf")


async def seed(daemon: Daemon, slug: str) -> int:
    record = await daemon.store.record_inbound(HOMEOWNERS[slug], BUSINESS_NUMBER,
                                               f"Deck quote for {slug}", "log", f"g-{slug}", "dana")
    return record.conversation_id


@pytest.fixture
def paths(tmp_path, postgres_server, postgres_template):
    url = postgres_server.new_database(template=postgres_template,
                                       owner=postgres_server.daemon_role())
    return {slug: company_config(tmp_path, slug, url) for slug in SLUGS}


async def test_one_listener_serves_each_company_by_host_and_no_other(paths):
    for path in paths.values():
        await set_passwords(path)
    async with serving(paths) as daemons, browser() as session:
        ids = {slug: await seed(daemons[slug], slug) for slug in SLUGS}
        # Each host name reaches its own company's inbox, on the one port.
        for slug in SLUGS:
            async with session.get(f"{base_of(slug)}/signin") as answer:
                assert answer.status == 200
                assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        # A Host no company is served under: the front's 404, with the headers, no page.
        for host in ("127.0.0.1", f"localhost:{WEB_PORT}", "carol.localhost", ""):
            async with session.get(f"http://127.0.0.1:{WEB_PORT}/signin", allow_redirects=False,
                                   headers={"Host": host}) as answer:
                body = await answer.text()
                assert answer.status == 404, host
                assert "Sign in" not in body and "acme" not in body.lower(), host
                assert answer.headers["X-Frame-Options"] == "DENY"
        for slug in SLUGS:  # nor a company's API or health by another name
            async with session.get(f"http://127.0.0.1:{WEB_PORT}/api/v1/conversations",
                                   headers={"Host": "unknown.localhost"}) as answer:
                assert answer.status == 404

        await sign_in(session, "acme")
        acme_csrf = await thread_csrf(session, "acme", ids["acme"])
        # acme's session cookie is acme's host's alone: on bravo, nobody is signed in.
        async with session.get(f"{base_of('bravo')}/c/{ids['bravo']}",
                               allow_redirects=False) as answer:
            assert answer.status == 303 and answer.headers["Location"].startswith("/signin")
        # Even carried over by hand, acme's session is no session on bravo.
        [acme_session] = [c for c in session.cookie_jar
                          if c["domain"] == "acme.localhost" and c.key == "textback_session"]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=Loopback()),
                                         cookies={"textback_session": acme_session.value}
                                         ) as forged:
            async with forged.post(f"{base_of('bravo')}/c/{ids['bravo']}/note",
                                   allow_redirects=False,
                                   data={"csrf": acme_csrf, "body": "from acme"}) as answer:
                assert answer.status == 303 and answer.headers["Location"].startswith("/signin")
        # Signed in to bravo too: acme's CSRF token is refused by bravo's session.
        await sign_in(session, "bravo")
        async with session.post(f"{base_of('bravo')}/c/{ids['bravo']}/note",
                                allow_redirects=False,
                                data={"csrf": acme_csrf, "body": "from acme"}) as answer:
            assert answer.status == 403
        bravo_csrf = await thread_csrf(session, "bravo", ids["bravo"])
        async with session.post(f"{base_of('bravo')}/c/{ids['bravo']}/note",
                                allow_redirects=False,
                                data={"csrf": bravo_csrf, "body": "bravo's own"}) as answer:
            assert answer.status == 303
        # By id through the other host: 404, as with two daemons.
        async with session.get(f"{base_of('acme')}/c/{ids['bravo']}",
                               allow_redirects=False) as answer:
            assert answer.status == 404
        thread = await daemons["bravo"].store.thread(ids["bravo"])
        assert [note["body"] for note in thread["notes"]] == ["bravo's own"]


def test_configs_that_would_share_a_file_a_port_or_a_host_are_refused(tmp_path):
    shared = tmp_path / "shared.db"

    def config(slug, **overrides):
        return load(company_config(tmp_path, slug, None, **overrides)).config

    problems = shared_process_problems([config("acme", **{"storage.path": str(shared)}),
                                        config("bravo", **{"storage.path": str(shared)})])
    assert any("same SQLite file" in p for p in problems), problems
    problems = shared_process_problems([
        config("acme"), config("bravo", **{"web.public_url": base_of("acme")})])
    assert any("same web host acme.localhost" in p for p in problems), problems
    problems = shared_process_problems([config("acme"), config("acme")])
    assert "company acme is given twice" in problems
    problems = shared_process_problems([
        config("acme", **{"agi.routing_file": str(tmp_path / "routing.json")}),
        config("bravo", **{"agi.routing_file": str(tmp_path / "routing.json")})])
    assert any("agi.routing_file" in p for p in problems), problems
    problems = shared_process_problems([
        config("acme", reply_mail={"listen_port": 2526, "domain": "reply.example"}),
        config("bravo", reply_mail={"listen_port": 2526, "domain": "reply.example"})])
    assert any("both listen on 127.0.0.1:2526" in p for p in problems), problems
    assert shared_process_problems([config("acme"), config("bravo")]) == []


def test_the_run_command_refuses_companies_that_cannot_share_a_process(tmp_path):
    shared = str(tmp_path / "shared.db")
    acme = company_config(tmp_path, "acme", None, **{"storage.path": shared})
    bravo = company_config(tmp_path, "bravo", None, **{"storage.path": shared})
    result = run_cli("run", "-c", str(acme), "-c", str(bravo))
    assert result.exit_code == 2, result.output
    assert "cannot share one process" in result.output and "same SQLite file" in result.output


async def test_a_company_that_fails_stops_the_process_not_only_itself(paths, caplog,
                                                                        monkeypatch):
    """bravo's gateway callbacks cannot bind their port: bravo's part fails; acme is stopped
    cleanly (its run lock freed, the web port closed) and the process ends with the failure,
    for systemd to start it again."""
    monkeypatch.setenv("TWILIO_TOKEN_OF_TEST", "not-a-real-token")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    url = load(paths["acme"]).config.storage.url
    paths["bravo"] = company_config(paths["bravo"].parent.parent, "bravo", url, **{
        "gateway": {"type": "twilio",
                    "twilio": {"account_sid": "AC" + "0" * 32,
                               "auth_token": {"env": "TWILIO_TOKEN_OF_TEST"}},
                    "callbacks": {"listen_port": port,
                                  "public_base_url": base_of("bravo")}}})
    stop = asyncio.Event()
    caplog.set_level(logging.ERROR, "textback")
    try:
        with pytest.raises(CompanyFailed) as failed:
            await asyncio.wait_for(run_companies([load(p) for p in paths.values()], stop, Daemon),
                                   30)
    finally:
        taken.close()
    assert failed.value.company == "bravo"
    assert any("company bravo stopped unexpectedly" in r.getMessage() for r in caplog.records)
    with pytest.raises(OSError):  # nothing listens on the web port any more
        socket.create_connection(("127.0.0.1", WEB_PORT), timeout=1).close()
    # Every run lock is free: the process can be started again at once.
    async with serving({slug: company_config(paths[slug].parent.parent, slug, url)
                        if slug == "bravo" else paths[slug] for slug in SLUGS}):
        pass



def test_each_log_line_names_the_company_whose_part_wrote_it():
    formatter = OneLineFormatter(journal=False)
    record = logging.LogRecord("textback.timeline", logging.INFO, __file__, 1, "call missed: %s",
                               ("+12125550101",), None)
    acme = contextvars.copy_context()
    acme.run(service.COMPANY.set, "acme")
    assert "textback.timeline: [acme] call missed: +12125550101" in acme.run(formatter.format,
                                                                            record)
    assert "[acme]" not in formatter.format(record)  # a process of one company: as before
