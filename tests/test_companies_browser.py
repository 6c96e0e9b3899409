"""Two companies' web inboxes in a real browser (Debian's Chromium): their daemons share one
PostgreSQL database (as a role that row-level security binds); an owner signed in to one
company's inbox sees its own conversations alone, and asking for the other company's
conversation or photo by id gets 404."""

from __future__ import annotations

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, base_config, write_config
from lab.harness import SMTP_SINK_PORT
from textback.store import NewMedia
from tests.browser import chromium, page_of, sign_in
from tests.web_helpers import OWNERS, PASSWORDS, set_passwords, web_daemon

PORTS = {"acme": 18193, "birch": 18194}
MEDIA_URL = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM{}/Media/ME1"


def base_of(slug: str) -> str:
    return f"http://127.0.0.1:{PORTS[slug]}"


def company_config(tmp_path, slug: str, url: str):
    home = tmp_path / slug
    home.mkdir()
    return write_config(home, base_config(home, **{
        "smtp.port": SMTP_SINK_PORT, "owners": OWNERS,
        "company": {"id": slug, "name": slug.title()},
        "storage": {"path": str(home / "textback.db"), "url": url},
        "web": {"port": PORTS[slug], "public_url": base_of(slug)}}))


async def seed(daemon, slug: str, number: int) -> tuple[int, int]:
    """A homeowner's text with a photo, in `slug`'s words: its conversation's and photo's ids."""
    record = await daemon.store.record_inbound(
        HOMEOWNER, BUSINESS_NUMBER, f"Kitchen quote for {slug}, please", "twilio", f"MM{number}",
        "dana", media=[NewMedia(MEDIA_URL.format(number), "image/jpeg")])
    [media] = (await daemon.store.media_of([record.message_id]))[record.message_id]
    return record.conversation_id, media["id"]


async def test_an_owner_of_one_company_gets_404_for_the_others_thread_and_photo(
        tmp_path, postgres_server, postgres_template, smtp_sink):
    url = postgres_server.new_database(template=postgres_template,
                                       owner=postgres_server.daemon_role())
    paths = {slug: company_config(tmp_path, slug, url) for slug in PORTS}
    for path in paths.values():
        await set_passwords(path)  # each company's own web users, the same names in both
    async with web_daemon(paths["acme"]) as acme, web_daemon(paths["birch"]) as birch, \
            chromium() as browser, page_of(browser) as page:
        ids = {"acme": await seed(acme, "acme", 1), "birch": await seed(birch, "birch", 2)}
        await sign_in(page, base_of("acme"), "dana", PASSWORDS["dana"])
        await page.wait_for_url(f"{base_of('acme')}/**")
        await page.goto(f"{base_of('acme')}/?view=all")
        rows = await page.inner_text("#rows")
        assert "Kitchen quote for acme" in rows and "birch" not in rows
        answer = await page.goto(f"{base_of('acme')}/c/{ids['acme'][0]}")
        assert answer.status == 200
        assert "Kitchen quote for acme" in await page.inner_text(".timeline")
        birch_conversation, birch_photo = ids["birch"]
        for path in (f"/c/{birch_conversation}", f"/c/{birch_conversation}/media/{birch_photo}",
                     f"/c/{ids['acme'][0]}/media/{birch_photo}"):
            answer = await page.goto(base_of("acme") + path)
            assert answer.status == 404, path
            assert "birch" not in (await page.content()).lower(), path
        # acme's session is no session on birch's inbox.
        answer = await page.goto(f"{base_of('birch')}/c/{birch_conversation}")
        assert page.url.startswith(f"{base_of('birch')}/signin"), page.url
