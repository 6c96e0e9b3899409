"""Signing in to the web inbox: passwords, sessions, CSRF, limits, and the links in owner emails."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from lab.harness import eventually
from textback.commands.common import with_store
from textback.config import load
from textback.signin import LinkClaim, digest, make_link_token
from textback.store import Store
from textback.web import inbox as web_inbox
from textback.web.links import LINK_KEY
from textback.web.server import CONTENT_SECURITY_POLICY
from tests.web_helpers import (BASE, PASSWORDS, client, form_value, homeowner_writes, link_in,
                               mails, one_reply_signed_in, run_cli, set_passwords, web_config,
                               web_daemon)


def test_passwd_keeps_an_argon2_hash_from_stdin_or_a_file_and_refuses_a_short_one(tmp_path):
    path = str(web_config(tmp_path))
    assert run_cli("passwd", "-c", path, "dana", input="correct horse battery\n").exit_code == 0
    (tmp_path / "pw").write_text("staple gun 2026!\n")
    result = run_cli("passwd", "-c", path, "sam", "--password-file", str(tmp_path / "pw"))
    assert result.exit_code == 0, result.output
    short = run_cli("passwd", "-c", path, "sam", input="short\n")
    assert short.exit_code != 0 and "nothing was changed" in short.output
    unknown = run_cli("passwd", "-c", path, "nobody", input="long enough pw\n")
    assert unknown.exit_code != 0 and "no owner" in unknown.output

    async def read(store):
        return {o: await store.password_hash(o) for o in ("dana", "sam")}
    hashes = asyncio.run(with_store(load(tmp_path / "config.yaml"), read))
    for owner, stored in hashes.items():
        assert stored.startswith("$argon2id$") and PASSWORDS[owner] not in stored
    assert PASSWORDS["dana"] not in result.output


async def test_pages_need_a_session_and_the_event_stream_says_401(tmp_path):
    async with web_daemon(web_config(tmp_path)), client() as browser:
        status, _, response = await browser.get("/c/1?x=1")
        where = urlsplit(response.headers["Location"])
        assert status == 303 and where.path == "/signin"
        assert parse_qs(where.query) == {"next": ["/c/1?x=1"]}
        assert (await browser.get("/"))[0] == 303
        assert (await browser.get("/events"))[0] == 401
        assert (await browser.get("/signin"))[0] == 200


async def test_sign_in_sets_a_server_side_session_cookie_and_sign_out_ends_it(tmp_path, caplog):
    path = web_config(tmp_path)
    await set_passwords(path)
    caplog.set_level(logging.DEBUG, "textback")
    async with web_daemon(path) as daemon, client() as browser:
        status, where = await browser.sign_in("dana@example.com", PASSWORDS["dana"])
        assert (status, where) == (303, "/")
        token = browser.cookie(web_inbox.SESSION_COOKIE)
        assert await daemon.store.session(digest(token)) is not None
        status, html, _ = await browser.get("/")
        assert status == 200 and "Dana Reyes" in html and token not in html
        csrf = form_value(html, "csrf")
        status, _, response = await browser.post("/signout", {"csrf": csrf})
        assert status == 303 and response.headers["Location"] == "/signin?why=signed_out"
        assert (await daemon.store.session(digest(token)))["ended_why"] == "signed_out"
        assert (await browser.get("/"))[0] == 303
    assert token not in caplog.text and PASSWORDS["dana"] not in caplog.text
    assert (await _users(tmp_path))["dana"]["last_sign_in_at"] is not None


async def _users(tmp_path):
    store = await Store.open(tmp_path / "textback.db")
    try:
        return await store.web_users()
    finally:
        await store.close()


async def test_the_cookie_is_httponly_samesite_lax_and_secure_behind_https(tmp_path):
    path = web_config(tmp_path, public_url="https://inbox.acme.example")
    await set_passwords(path)
    async with web_daemon(path), client() as browser:
        token = await browser.csrf("/signin")
        # The form cookie is Secure too, so this http client would not send it back by itself.
        async with browser.session.post(
                f"{BASE}/signin", allow_redirects=False,
                headers={"Cookie": f"{web_inbox.FORM_COOKIE}={token}"},
                data={"csrf": token, "account": "sam", "password": PASSWORDS["sam"]}) as response:
            assert response.status == 303
        cookie = next(v for v in response.headers.getall("Set-Cookie")
                      if v.startswith(web_inbox.SESSION_COOKIE + "="))
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie


async def test_a_wrong_password_is_refused_and_failures_are_limited_per_account(tmp_path):
    path = web_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path), client() as browser:
        assert (await browser.sign_in("dana", "wrong password!"))[1].startswith("/signin?why=refused")
        assert browser.cookie(web_inbox.SESSION_COOKIE) is None
        for _ in range(4):
            await browser.sign_in("dana", "wrong password!")
        # The right password no longer helps while the limit holds; another account still may.
        assert (await browser.sign_in("dana", PASSWORDS["dana"]))[1].startswith("/signin?why=limited")
        status, html, _ = await browser.get("/signin?why=limited")
        assert status == 429 and "Too many failed sign-ins" in html
        assert (await browser.sign_in("sam", PASSWORDS["sam"])) == (303, "/")


async def test_sign_in_failures_are_limited_per_address_across_accounts(tmp_path):
    path = web_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path), client() as browser:
        for n in range(20):
            await browser.sign_in(f"guess{n}", "wrong password!")
        assert (await browser.sign_in("sam", PASSWORDS["sam"]))[1].startswith("/signin?why=limited")


async def test_a_post_without_the_right_csrf_token_gets_403_and_changes_nothing(tmp_path):
    async with one_reply_signed_in(tmp_path, "Can you come Tuesday?") as (daemon, browser, cid):
        row = {"id": cid}
        for data in ({"csrf": "forged", "body": "hello"}, {"body": "hello"}):
            status, html, _ = await browser.post(f"/c/{row['id']}/reply", data)
            assert status == 403 and "Forbidden" in html
        assert (await browser.post("/signin", {"csrf": "x", "account": "sam",
                                               "password": PASSWORDS["sam"]}))[0] == 403
        history = await daemon.store.conversation_history(row["id"])
        assert [m["direction"] for m in history["messages"]] == ["in"]


async def test_the_alert_email_signs_its_owner_in_once_at_the_thread(tmp_path, smtp_sink):
    async with web_daemon(web_config(tmp_path)) as daemon, client() as browser:
        await homeowner_writes(daemon, "Yes, please call me")
        [mail] = await mails(smtp_sink, 1)
        text = mail.message.get_body(("plain",)).get_content()
        assert "signs you in once" in text
        path = link_in(text)
        assert path in mail.message.get_body(("html",)).get_content()
        [row] = await daemon.store.inbox()
        status, html, response = await browser.get(path)
        assert status == 200 and "Sign in as Dana Reyes" in html
        assert response.headers["Referrer-Policy"] == "no-referrer"
        # Fetching the link (a mail scanner would) does not spend it; the button does.
        assert (await browser.get(path))[0] == 200
        status, _, response = await browser.post("/link", {"csrf": form_value(html, "csrf"),
                                                           "token": form_value(html, "token")})
        assert status == 303 and response.headers["Location"] == f"/c/{row['id']}"
        status, page, _ = await browser.get(f"/c/{row['id']}")
        assert status == 200 and "Yes, please call me" in page
        async with client() as other:
            status, _, response = await other.get(path)
            assert status == 303 and response.headers["Location"] == "/signin?why=used"
            status, html, _ = await other.get("/signin?why=used")
            assert "already used" in html


async def test_an_expired_or_forged_link_goes_to_sign_in_saying_why(tmp_path):
    async with web_daemon(web_config(tmp_path)) as daemon, client() as browser:
        key = await daemon.store.web_key(LINK_KEY)
        expired = make_link_token(key, LinkClaim("dana", None, time.time() - 1, "n1"))
        status, _, response = await browser.get(f"/link/{expired}")
        assert response.headers["Location"] == "/signin?why=expired"
        assert "has expired" in (await browser.get("/signin?why=expired"))[1]
        forged = make_link_token(b"not the key" * 3, LinkClaim("dana", None, time.time() + 99, "n2"))
        assert (await browser.get(f"/link/{forged}"))[2].headers["Location"] == "/signin?why=invalid"
        ghost = make_link_token(key, LinkClaim("mallory", None, time.time() + 99, "n3"))
        assert (await browser.get(f"/link/{ghost}"))[2].headers["Location"] == "/signin?why=invalid"
        assert (await browser.get("/link/garbage"))[2].headers["Location"] == "/signin?why=invalid"


async def test_an_idle_session_expires(tmp_path):
    path = web_config(tmp_path, **{"web.session_idle_minutes": 5})
    await set_passwords(path)
    async with web_daemon(path) as daemon, client() as browser:
        await browser.sign_in("sam", PASSWORDS["sam"])
        token = browser.cookie(web_inbox.SESSION_COOKIE)
        assert (await browser.get("/"))[0] == 200
        async with daemon.store._transaction() as db:
            await db.execute("UPDATE web_sessions SET seen_at = seen_at - 301")
        status, _, response = await browser.get("/")
        assert status == 303 and response.headers["Location"].endswith("&why=idle")
        assert (await daemon.store.session(digest(token)))["ended_why"] == "idle"
        # The browser comes back later: still told why, not sent to sign in without a word.
        status, _, response = await browser.get("/calls")
        assert response.headers["Location"].endswith("&why=idle")
        assert "without activity" in (await browser.get("/signin?why=idle"))[1]


async def test_the_digest_carries_a_sign_in_link_to_the_inbox(offline_daemon, tmp_path, smtp_sink):
    daemon = await offline_daemon(web={"public_url": "https://inbox.acme.example"}, digest={})
    await homeowner_writes(daemon, "Still waiting")
    await daemon.mail.send_digest(time.time() + 3600)
    await eventually(lambda: _sent(daemon), 10, "the digest mailed")
    [notice] = [n for n in await daemon.store.notices() if "waiting" in n["subject"]]
    assert "https://inbox.acme.example/link/" in notice["body"]


async def _sent(daemon):
    return any(n["state"] == "sent" for n in await daemon.store.notices())


async def test_failures_count_per_owner_whichever_name_or_email_was_typed(tmp_path):
    path = web_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path), client() as browser:
        for typed in ("dana", "DANA@example.com", "Dana", "dana@EXAMPLE.com", "dana"):
            assert (await browser.sign_in(typed, "wrong password!"))[1].startswith(
                "/signin?why=refused")
        for typed in ("dana@example.com", "dana"):
            assert (await browser.sign_in(typed, PASSWORDS["dana"]))[1].startswith(
                "/signin?why=limited")


async def test_failures_are_kept_in_the_store_across_a_restart(tmp_path):
    path = web_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path), client() as browser:
        for _ in range(5):
            await browser.sign_in("sam", "wrong password!")
    async with web_daemon(path), client() as browser:
        assert (await browser.sign_in("sam", PASSWORDS["sam"]))[1].startswith("/signin?why=limited")
        assert (await browser.sign_in("dana", PASSWORDS["dana"])) == (303, "/")


async def test_x_forwarded_for_names_the_client_only_behind_a_trusted_proxy(tmp_path):
    trusted = web_config(tmp_path, **{"web.trusted_proxies": ["127.0.0.1", "10.0.0.0/8"]})
    await set_passwords(trusted)
    async with web_daemon(trusted) as daemon, client() as browser:
        # Behind the proxy, each client counts on its own: 20 failures lock out one address...
        guesser = {"X-Forwarded-For": "198.51.100.9, 203.0.113.7, 10.1.2.3"}
        for n in range(20):
            await browser.sign_in(f"guess{n}", "wrong password!", guesser)
        assert (await browser.sign_in("sam", PASSWORDS["sam"], guesser))[1].startswith(
            "/signin?why=limited")
        # ... not the proxy, nor another client behind it (what the guesser wrote on the left
        # of the header is not believed: 203.0.113.7 is the address the proxy saw).
        assert (await browser.sign_in("sam", PASSWORDS["sam"],
                                      {"X-Forwarded-For": "203.0.113.8"})) == (303, "/")
        [session] = await daemon.store.live_sessions("sam")
        assert session["address"] == "203.0.113.8"
        assert (await browser.sign_in("dana", PASSWORDS["dana"])) == (303, "/")
    (tmp_path / "direct").mkdir()
    untrusted = web_config(tmp_path / "direct")
    await set_passwords(untrusted)
    async with web_daemon(untrusted), client() as browser:
        # From a peer that is no trusted proxy, the header changes nothing: a rotating one
        # does not dodge the limit.
        for n in range(20):
            await browser.sign_in(f"guess{n}", "wrong password!",
                                  {"X-Forwarded-For": f"203.0.113.{n}"})
        assert (await browser.sign_in("sam", PASSWORDS["sam"],
                                      {"X-Forwarded-For": "203.0.113.99"}))[1].startswith(
            "/signin?why=limited")


def test_trusted_proxies_must_be_addresses_or_networks(tmp_path):
    for bad in (["proxy.local"], ["10.0.0.1/8"], "127.0.0.1"):
        with pytest.raises(Exception, match="trusted_proxies"):
            load(web_config(tmp_path, **{"web.trusted_proxies": bad}))


async def _timed_sign_in(browser, account: str) -> float:
    token = await browser.csrf("/signin")
    started = time.perf_counter()
    status, _, response = await browser.post("/signin", {"csrf": token, "account": account,
                                                         "password": "wrong password!"})
    elapsed = time.perf_counter() - started
    assert response.headers["Location"].startswith("/signin?why=refused")
    return elapsed


async def test_an_unknown_account_is_refused_in_the_time_a_known_one_takes(tmp_path):
    """Medians over interleaved attempts: a known owner with a wrong password, an unknown
    account, and an owner who has no password yet all cost one argon2 verification."""
    path = web_config(tmp_path, **{"web.signin_failures_per_account": 1000,
                                   "web.signin_failures_per_address": 10000})
    await set_passwords(path)
    async with web_daemon(path) as daemon, client() as browser:
        async with daemon.store._transaction() as db:
            await db.execute("DELETE FROM web_users WHERE owner_id = 'sam'")
        times: dict[str, list[float]] = {"known": [], "unknown": [], "no password": []}
        for n in range(15):
            times["known"].append(await _timed_sign_in(browser, "dana@example.com"))
            times["unknown"].append(await _timed_sign_in(browser, f"nobody{n}@example.com"))
            times["no password"].append(await _timed_sign_in(browser, "sam"))
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    assert medians["known"] > 0.005, medians  # argon2 is really verified
    for kind in ("unknown", "no password"):
        assert 0.7 < medians[kind] / medians["known"] < 1.4, medians


async def test_after_a_password_change_the_sign_in_page_says_so(tmp_path):
    path = web_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path), client() as browser:
        await browser.sign_in("sam", PASSWORDS["sam"])
        assert (await browser.get("/"))[0] == 200
        result = await asyncio.to_thread(run_cli, "passwd", "-c", str(path), "sam",
                                         input="a brand new passphrase\n")
        assert result.exit_code == 0, result.output
        status, _, response = await browser.get("/c/1")
        where = response.headers["Location"]
        assert status == 303 and where.endswith("&why=password_changed")
        status, html, _ = await browser.get(where)
        assert "your password was changed" in html and "without activity" not in html


HOSTILE_AGENT = 'Mozilla/5.0 <script>alert("ua")</script> & "Edge"'


async def test_settings_list_the_sessions_and_end_the_others(tmp_path):
    path = web_config(tmp_path, **{"web.trusted_proxies": ["127.0.0.1"]})
    await set_passwords(path)
    async with web_daemon(path) as daemon, client() as laptop, client() as phone:
        await phone.sign_in("dana", PASSWORDS["dana"],
                            {"User-Agent": HOSTILE_AGENT, "X-Forwarded-For": "203.0.113.44"})
        await laptop.sign_in("dana@example.com", PASSWORDS["dana"],
                             {"User-Agent": "LaptopBrowser/1.0"})
        status, html, response = await laptop.get("/settings")
        assert status == 200
        assert "<b>LaptopBrowser/1.0</b> (this browser)" in html
        assert HOSTILE_AGENT not in html and "&lt;script&gt;alert(&#34;ua&#34;)" in html
        assert "203.0.113.44" in html
        # Ending the others is a POST with the session's CSRF token; without it nothing ends.
        assert (await laptop.post("/settings/end-others", {"csrf": "forged"}))[0] == 403
        assert len(await daemon.store.live_sessions("dana")) == 2
        status, _, response = await laptop.post("/settings/end-others",
                                                {"csrf": form_value(html, "csrf")})
        assert (status, response.headers["Location"]) == (303, "/settings?said=others_ended")
        [left] = await daemon.store.live_sessions("dana")
        assert left["user_agent"] == "LaptopBrowser/1.0"
        assert (await laptop.get("/"))[0] == 200
        status, _, response = await phone.get("/")
        assert status == 303 and response.headers["Location"].endswith("&why=ended_elsewhere")
        assert "signed out from another browser" in (await phone.get(
            response.headers["Location"]))[1]


async def test_signed_in_pages_are_never_cached_and_the_event_stream_has_the_headers(tmp_path):
    async with one_reply_signed_in(tmp_path, "Hello", owner="dana") as (daemon, browser, cid):
        for page in ("/", f"/c/{cid}", "/calls", "/scorecard", "/scorecard.csv", "/settings",
                     "/admin", "/admin/consent.csv?number=%2B12125550123"):
            status, _, response = await browser.get(page)
            assert status == 200, page
            assert response.headers["Cache-Control"] == "no-store, private", page
            assert "Cookie" in response.headers["Vary"], page
        async with browser.session.get(f"{BASE}/events") as stream:
            assert stream.status == 200
            assert stream.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
            assert stream.headers["X-Content-Type-Options"] == "nosniff"
            assert stream.headers["Cache-Control"] == "no-store, private"
        async with client() as stranger:
            status, _, response = await stranger.get(f"/c/{cid}")
            assert status == 303 and response.headers["Cache-Control"] == "no-store, private"
        status, _, response = await browser.get("/static/app.css")
        assert status == 200 and "no-store" not in response.headers.get("Cache-Control", "")
        assert response.headers["X-Frame-Options"] == "DENY"
