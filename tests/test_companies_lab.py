"""Two companies, one process, on the lab: ONE `textback run -c acme.yaml -c bravo.yaml` on one
PostgreSQL database (as a role that row-level security binds). acme answers the lab PBX's
number, bravo the second Asterisk's (lab.pbx.SecondLabPBX, its own AMI and SIP ports); each
company texts with the asterisk gateway through its own PBX. A call missed at each company is
texted once, from that company's own number. Then their inboxes, behind the process's one web
listener, in Debian's Chromium: an owner of acme sees acme's conversation alone and gets 404
for bravo's thread and photo by id, and acme's consent export holds none of bravo's facts;
bravo's inbox, on its own host name, shows bravo's. They never skip: if a lab cannot start,
they fail.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from lab import flows
from lab.configs import lab_config
from lab.fixture import running
from lab.harness import DaemonProcess, wait_until
from lab.pbx import SecondLabPBX
from textback.config import load
from textback.store import NewMedia, open_store
from tests.browser import chromium, page_of, sign_in
from tests.web_helpers import OWNERS, PASSWORDS, set_passwords

# Two Asterisks, PostgreSQL, the process and Chromium at once: minutes on busy shared cores.
pytestmark = [pytest.mark.lab, pytest.mark.timeout(900)]

WEB_PORT = 18196
ACME_NUMBER = flows.OFFLINE_PHONE  # on the lab PBX: a phone that is not registered
BRAVO_NUMBER = flows.OFFICE1  # on the second PBX: office1, busy
ACME_CALLER, BRAVO_CALLER = "+16465550106", "+16465550105"
MEDIA_URL = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM9/Media/ME1"


def base_of(slug: str) -> str:
    return f"http://{slug}.localhost:{WEB_PORT}"


@pytest.fixture
def second_pbx(tmp_path_factory):
    yield from running(SecondLabPBX(tmp_path_factory.mktemp("second-pbx")))


def company_configs(tmp_path, lab_pbx, second_pbx, url: str):
    def company(slug: str, number: str, **overrides):
        home = tmp_path / slug
        home.mkdir()
        return lab_config(home, lab_pbx, **{
            "text.delay_seconds": 0, "owners": OWNERS,
            "numbers": [{"number": number, "owner": "dana"}],
            "company": {"id": slug, "name": slug.title()},
            "storage": {"url": url, "path": str(home / "textback.db")},
            "web": {"port": WEB_PORT, "public_url": base_of(slug)}, **overrides})

    acme = company("acme", ACME_NUMBER)
    bravo = company("bravo", BRAVO_NUMBER, **{
        "ami.port": second_pbx.ami_port,
        "ami.secret": {"file": str(second_pbx.ami_secret_file)},
        "agi.routing_file": str(tmp_path / "bravo" / "routing.json")})
    return acme, bravo


def texts_to(sink, caller: str) -> list[dict]:
    return [m for m in sink.messages() if caller in m["to"]]


async def conversations_listed(page, base: str) -> set[int]:
    await page.goto(f"{base}/?view=all")
    links = await page.eval_on_selector_all("#rows a[href^='/c/']",
                                            "links => links.map(a => a.getAttribute('href'))")
    return {int(m.group(1)) for link in links if (m := re.fullmatch(r"/c/(\d+)", link))}


async def export(page, slug: str, number: str) -> str:
    """The consent CSV of `number`, fetched by a page of `slug`'s own origin (its cookies)."""
    await page.goto(f"{base_of(slug)}/admin")
    status, body = await page.evaluate(
        """async url => { const r = await fetch(url); return [r.status, await r.text()]; }""",
        f"/admin/consent.csv?number={number.replace('+', '%2B')}")
    assert status == 200, (slug, status, body)
    return body


async def seed_photo(config_path) -> int:
    """A homeowner's photo in bravo's store (as its Twilio webhook would record it): its id."""
    loaded = load(config_path)
    store = await open_store(loaded.config.storage, loaded.secrets.storage_password,
                             loaded.config.company)
    try:
        record = await store.record_inbound(BRAVO_CALLER, BRAVO_NUMBER, "Here is the deck",
                                            "twilio", "MM9", "dana",
                                            media=[NewMedia(MEDIA_URL, "image/jpeg")])
        [media] = (await store.media_of([record.message_id]))[record.message_id]
        return media["id"]
    finally:
        await store.close()


async def test_one_process_texts_each_companys_missed_call_from_its_own_number_and_keeps_their_inboxes_apart(  # noqa: E501
        tmp_path, lab_pbx, second_pbx, sink, smtp_sink, postgres_server, postgres_template):
    url = postgres_server.new_database(template=postgres_template,
                                       owner=postgres_server.daemon_role())
    acme, bravo = company_configs(tmp_path, lab_pbx, second_pbx, url)
    for path in (acme, bravo):
        await set_passwords(path)
    process = DaemonProcess(acme, tmp_path / "textback.log", more_configs=[bravo])
    await asyncio.to_thread(process.start, 120, "web front listening")
    try:
        await asyncio.to_thread(
            wait_until, lambda: all(f"[{slug}] AMI logged in" in process.log_since_start()
                                    for slug in ("acme", "bravo")), 30, "each company's login")
        assert await asyncio.to_thread(flows.offline, lab_pbx, ACME_CALLER)  # missed at acme
        [acme_text] = await asyncio.to_thread(
            wait_until, lambda: texts_to(sink, ACME_CALLER), 20, "acme's text")
        assert await asyncio.to_thread(flows.busy, second_pbx, BRAVO_CALLER)  # missed at bravo
        [bravo_text] = await asyncio.to_thread(
            wait_until, lambda: texts_to(sink, BRAVO_CALLER), 20, "bravo's text")
        # Each from its company's own number, through its company's own PBX, in its own words.
        assert ACME_NUMBER in acme_text["from"] and f":{lab_pbx.sip_port}" in acme_text["via"]
        assert BRAVO_NUMBER in bravo_text["from"]
        assert f":{second_pbx.sip_port}" in bravo_text["via"]
        await asyncio.sleep(2)
        assert len(texts_to(sink, ACME_CALLER)) == 1 and len(texts_to(sink, BRAVO_CALLER)) == 1
        bravo_photo = await seed_photo(bravo)

        async with chromium() as browser, page_of(browser) as page:
            await sign_in(page, base_of("bravo"), "dana", PASSWORDS["dana"])
            await page.wait_for_url(f"{base_of('bravo')}/**")
            [bravo_conversation] = await conversations_listed(page, base_of("bravo"))
            await page.goto(f"{base_of('bravo')}/c/{bravo_conversation}")
            assert "Here is the deck" in await page.inner_text(".timeline")

            await sign_in(page, base_of("acme"), "dana", PASSWORDS["dana"])
            await page.wait_for_url(f"{base_of('acme')}/**")
            [acme_conversation] = await conversations_listed(page, base_of("acme"))
            assert acme_conversation != bravo_conversation
            answer = await page.goto(f"{base_of('acme')}/c/{acme_conversation}")
            assert answer.status == 200
            timeline = await page.inner_text(".timeline")
            assert "Here is the deck" not in timeline
            rows = await page.goto(f"{base_of('acme')}/?view=all")
            assert rows.status == 200 and "Here is the deck" not in await page.inner_text("#rows")
            for path in (f"/c/{bravo_conversation}",
                         f"/c/{bravo_conversation}/media/{bravo_photo}",
                         f"/c/{acme_conversation}/media/{bravo_photo}"):
                answer = await page.goto(base_of("acme") + path)
                assert answer.status == 404, path
                assert "deck" not in (await page.content()).lower(), path
            # The consent export by bravo's caller's number, on acme: none of bravo's facts.
            acme_export = await export(page, "acme", BRAVO_CALLER)
            bravo_export = await export(page, "bravo", BRAVO_CALLER)
            assert BRAVO_NUMBER in bravo_export and BRAVO_NUMBER not in acme_export
            # A host no company is served under: 404, never a company's page.
            answer = await page.goto(f"http://unknown.localhost:{WEB_PORT}/signin")
            assert answer.status == 404
            assert "sign in" not in (await page.content()).lower()
    finally:
        code = await asyncio.to_thread(process.stop)
    assert code == 0, process.log_since_start()[-3000:]
