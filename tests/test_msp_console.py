"""The MSP console of a fleet's process, in Debian's Chromium: ONE `textback run --fleet` (two
companies on one PostgreSQL database, as a role row-level security binds), its web front
serving acme, bravo and the console, each on its own host name of one port.

An MSP admin signs in on the console, sees both companies, opens acme (a hand-off link,
spent once) and sees acme's inbox alone, under "Alice (MSP)", with what they write there
attributed to them; switches to bravo and sees bravo's alone. The hand-off link works once,
an altered one or one of another company is refused; the console's forms need their CSRF
token; a wrong password is refused, then limited; and acme's own owner has no way into the
console.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from lab.configs import base_config
from textback.cli import main as cli
from textback.fleet_config import load_company
from textback.store import open_store
from tests.browser import chromium, page_of, sign_in

pytestmark = pytest.mark.timeout(600)

PORT = 18197
PASSWORDS = {"alice": "violet kettle harbour 7", "bob": "granite lantern meadow 4"}
OWNER_PASSWORD = "correct horse battery"
WORDS = {"acme": "Acme kitchen tile question", "bravo": "Bravo deck railing quote"}
NAMES = {"acme": "Acme Remodeling", "bravo": "Bravo Builders"}
CALLER = "+16465550150"


def base_of(slug: str) -> str:
    return f"http://{slug}.localhost:{PORT}"


CONSOLE = base_of("msp")


def write(path: Path, document: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def fleet(tmp_path: Path, url: str) -> Path:
    """fleet.yaml with an msp: section (two admins, their hash files beside it, three failures
    allowed per account), and acme's and bravo's files."""
    etc, state = tmp_path / "etc", tmp_path / "state"
    main = write(etc / "fleet.yaml", {
        "storage": {"url": url, "path": str(state / "{company}" / "textback.db")},
        "smtp": {"host": "127.0.0.1", "port": 2525, "sender": "textback@msp.example"},
        "companies": "companies.d",
        "msp": {"public_url": CONSOLE, "signin_failures_per_account": 3,
                "admins": [{"id": "alice", "name": "Alice Moreau", "email": "alice@msp.example",
                            "password_hash_file": "msp/alice.hash"},
                           {"id": "bob", "name": "Bob Stone", "email": "bob@msp.example",
                            "password_hash_file": "msp/bob.hash"}]}})
    (etc / "msp").mkdir()
    (etc / "companies.d").mkdir()
    whole = base_config(etc / "companies.d")
    for n, slug in enumerate(NAMES):
        (state / slug).mkdir(parents=True)
        own = {key: whole[key] for key in ("ami", "inbound", "owners", "text", "gateway")}
        write(etc / "companies.d" / f"{slug}.yaml", {
            "company": {"id": slug, "name": NAMES[slug]}, **own,
            "business": {"name": NAMES[slug], "timezone": "America/New_York"},
            "numbers": [{"number": f"+1212555011{n}", "owner": "dana"}],
            "web": {"port": PORT, "public_url": base_of(slug)},
            "agi": {"routing_file": str(state / slug / "routing.json")}})
    return main


def cli_ok(*args: str, input: str | None = None) -> str:
    result = CliRunner().invoke(cli, list(args), input=input)
    assert result.exit_code == 0, result.output
    return result.output


async def seed(main: Path, slug: str) -> int:
    """A homeowner's text in `slug`'s store (as its gateway would record it): its conversation."""
    loaded = load_company(main, slug)
    config = loaded.config
    store = await open_store(config.storage, loaded.secrets.storage_password, config.company)
    try:
        record = await store.record_inbound(CALLER, config.numbers[0].number, WORDS[slug],
                                            "twilio", f"SM{slug}", "dana")
        return record.conversation_id
    finally:
        await store.close()


def start(main: Path, log: Path) -> subprocess.Popen:
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "textback", "run", "--fleet", str(main)],
                                   stdout=output, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while "web front listening" not in log.read_text():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    return process


async def console_sign_in(page, account: str, password: str):
    await sign_in(page, CONSOLE, account, password)
    await page.wait_for_load_state()


async def open_company(page, slug: str) -> str:
    """Press Open for `slug` on the console: the hand-off link the browser followed."""
    handed: list[str] = []
    page.on("request", lambda request: handed.append(request.url) if "/link/" in request.url
            else None)
    await page.goto(CONSOLE + "/")
    await page.click(f"tr[data-company={slug}] button")
    await page.wait_for_url(f"{base_of(slug)}/**")
    [link] = handed
    return link


async def test_an_msp_admin_signs_in_once_and_opens_each_company_through_a_one_time_link(
        tmp_path, postgres_server, postgres_template):
    url = postgres_server.new_database(template=postgres_template,
                                       owner=postgres_server.daemon_role())
    main = fleet(tmp_path, url)
    for admin, password in PASSWORDS.items():
        assert "Password set for MSP admin" in cli_ok("msp-password", admin, "--fleet", str(main),
                                                      input=password + "\n")
    # The commands run their own event loops: in a thread, off this test's loop.
    await asyncio.to_thread(cli_ok, "passwd", "dana", "--company", "acme", "--fleet", str(main),
                            input=OWNER_PASSWORD + "\n")
    checked = await asyncio.to_thread(cli_ok, "check", "--fleet", str(main))
    assert f"ok    msp: console at {CONSOLE} (2 admin(s)" in checked
    conversations = {slug: await seed(main, slug) for slug in NAMES}
    process = await asyncio.to_thread(start, main, tmp_path / "run.log")
    try:
        async with chromium() as browser:
            async with page_of(browser) as page:
                # Not signed in: the console's list redirects to its sign-in page.
                await page.goto(CONSOLE + "/")
                assert page.url.startswith(CONSOLE + "/signin")
                await console_sign_in(page, "alice", PASSWORDS["alice"])
                assert page.url == CONSOLE + "/"
                rows = await page.inner_text("#companies")
                assert NAMES["acme"] in rows and NAMES["bravo"] in rows
                assert f"acme.localhost:{PORT}" in rows and f"bravo.localhost:{PORT}" in rows
                waiting = await page.inner_text("tr[data-company=acme] .waiting")
                assert waiting == "1"
                # The console shows no conversation, and serves no company's pages.
                assert WORDS["acme"] not in await page.content()
                answer = await page.goto(f"{CONSOLE}/c/{conversations['acme']}")
                assert answer.status == 404

                # CSRF: the Open button's POST without the session's token changes nothing.
                await page.goto(CONSOLE + "/")
                status = await page.evaluate(
                    """async () => (await fetch('/open/acme', {method: 'POST',
                          body: new URLSearchParams({csrf: 'forged'}), redirect: 'manual'})).status""")
                assert status == 403

                acme_link = await open_company(page, "acme")
                assert acme_link.startswith(base_of("acme") + "/link/")
                await page.goto(base_of("acme") + "/")
                assert await page.inner_text(".who") == "Alice Moreau (MSP)"
                listed = await page.inner_text("#rows")
                assert WORDS["acme"] in listed and WORDS["bravo"] not in listed
                # What the MSP admin writes is theirs, under their name.
                await page.goto(f"{base_of('acme')}/c/{conversations['acme']}")
                await page.fill("form[action$='/note'] textarea[name=body]", "Checked the trunk")
                await page.click("form[action$='/note'] button[type=submit]")
                await page.wait_for_url(f"{base_of('acme')}/c/{conversations['acme']}?said=note")
                timeline = await page.inner_text(".timeline")
                assert "Internal note by Alice Moreau (MSP)" in timeline
                # Not an owner: no Claim button, and a claim is refused.
                assert await page.locator("form[data-form=claim]").count() == 0
                form = "form[data-form=assign]"
                status, said = await page.evaluate(
                    """async ([id, csrf, version]) => { const r = await fetch(`/c/${id}/claim`,
                         {method: 'POST', body: new URLSearchParams({csrf, version})});
                         return [r.status, await r.text()]; }""",
                    [conversations["acme"], await page.input_value(f"{form} input[name=csrf]"),
                     await page.input_value(f"{form} input[name=version]")])
                assert status == 400 and "not an owner" in said
                # The link back, then bravo.
                await page.click("#switch-company")
                await page.wait_for_url(CONSOLE + "/")
                await open_company(page, "bravo")
                await page.goto(base_of("bravo") + "/")
                listed = await page.inner_text("#rows")
                assert WORDS["bravo"] in listed and WORDS["acme"] not in listed
                assert await page.inner_text(".who") == "Alice Moreau (MSP)"
                answer = await page.goto(f"{base_of('bravo')}/c/{conversations['acme']}")
                assert answer.status == 404 and WORDS["acme"] not in await page.content()

                await page.goto(CONSOLE + "/")
                await page.click("header form.signout button")
                await page.wait_for_url(CONSOLE + "/signin?why=signed_out")
                await page.goto(CONSOLE + "/")
                assert page.url.startswith(CONSOLE + "/signin")

            # The hand-off link, followed again by another browser: used, refused.
            async with page_of(browser) as page:
                await page.goto(acme_link)
                assert page.url.startswith(base_of("acme") + "/signin?why=used")
                token = acme_link.rsplit("/", 1)[1]
                altered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
                await page.goto(f"{base_of('acme')}/link/{altered}")
                assert page.url.startswith(base_of("acme") + "/signin?why=invalid")
                # acme's link at bravo: signed with acme's key, worth nothing there.
                await page.goto(f"{base_of('bravo')}/link/{token}")
                assert page.url.startswith(base_of("bravo") + "/signin?why=invalid")
                answer = await page.goto(base_of("acme") + "/")
                assert page.url.startswith(base_of("acme") + "/signin")

            # acme's owner: signed in at acme, nothing at the console, and refused there.
            async with page_of(browser) as page:
                await sign_in(page, base_of("acme"), "dana", OWNER_PASSWORD)
                await page.wait_for_url(base_of("acme") + "/")
                await page.goto(CONSOLE + "/")
                assert page.url.startswith(CONSOLE + "/signin")
                await console_sign_in(page, "dana", OWNER_PASSWORD)
                assert "why=refused" in page.url
                assert "Wrong admin id or password" in await page.inner_text("#why")
                # The sign-in form without its CSRF cookie's token: 403.
                status = await page.evaluate(
                    """async () => (await fetch('/signin', {method: 'POST', body:
                          new URLSearchParams({account: 'alice', password: 'x', csrf: 'forged'}),
                          redirect: 'manual'})).status""")
                assert status == 403

            # A wrong password, three times: refused; then even the right one is limited.
            async with page_of(browser) as page:
                for _ in range(3):
                    await console_sign_in(page, "bob", "not bob's password at all")
                    assert "why=refused" in page.url
                answer_status = []
                page.on("response", lambda r: answer_status.append(r.status)
                        if "/signin?why=" in r.url else None)
                await console_sign_in(page, "bob", PASSWORDS["bob"])
                assert "why=limited" in page.url and answer_status[-1] == 429
                assert "Too many failed sign-ins" in await page.inner_text("#why")
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 60)
    output = (tmp_path / "run.log").read_text()
    assert process.returncode == 0, output
    assert "msp: alice opened company acme" in output and "msp: alice opened company bravo" in output
    for secret in PASSWORDS.values():
        assert secret not in output
    assert not re.search(r"/link/[A-Za-z0-9_-]{20,}", output)  # no hand-off link in the log
