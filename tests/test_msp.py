"""The MSP admin role's pure parts and its configuration: who `msp:<id>` is in a company's web
app and how the thread names what they did (textback/core/msp.py, core/views.py), the
fleet's `msp:` section with file/key/line errors, `textback msp-password` (an argon2id hash
written atomically, 0640; weak passwords refused) and `textback check --fleet`."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
import yaml
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from click.testing import CliRunner

from textback.cli import main as cli
from textback.config import ConfigError
from textback.core import views
from textback.core.msp import MspAccess, MspAdmin, admin_id_of, msp_user_id, password_problem
from textback.fleet_config import read_main
from tests.test_fleet_config import SHARED, company, fleet, line_of, write

ALICE = MspAdmin("alice", "Alice Moreau", "alice@msp.example")
GOOD = "violet kettle harbour 7"


def with_msp(tmp_path: Path, msp: dict) -> Path:
    main = fleet(tmp_path)
    return write(main, {**SHARED, "companies": "companies.d", "msp": msp})


def msp_section(**overrides) -> dict:
    return {"public_url": "https://msp.installer.example",
            "admins": [{"id": "alice", "name": "Alice Moreau", "email": "alice@msp.example",
                        "password_hash_file": "alice.hash"}], **overrides}


def console_on(store, msp, hashes: dict[str, str]):
    """The console of `msp` in process, acme the one company of the process: `store` (acme's)
    is its home, where its sessions are kept."""
    from textback.web.msp import CompanyDoor, MspConsole

    console = MspConsole(msp, hashes)
    console.add_company(CompanyDoor("acme", "Acme Remodeling", "http://acme.localhost", store))
    return console


def console_client(console):
    from aiohttp.test_utils import TestClient, TestServer

    return TestClient(TestServer(console.application()))


async def sign_in_to(client, account: str, password: str):
    """The console's sign-in form, fetched and posted: the answer (a redirect)."""
    page = await client.get("/signin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)
    return await client.post("/signin", data={"account": account, "password": password,
                                              "csrf": csrf}, allow_redirects=False)


def test_an_msp_user_id_names_a_known_admin_and_nothing_else():
    access = MspAccess("https://msp.installer.example/", {"alice": ALICE})
    assert msp_user_id("alice") == "msp:alice" and admin_id_of("msp:alice") == "alice"
    assert access.admin("msp:alice") == ALICE
    for other in ("alice", "dana", "msp:", "msp:bob", "MSP:alice"):
        assert access.admin(other) is None, other
    assert access.names() == {"msp:alice": "Alice Moreau (MSP)"}


@pytest.mark.parametrize("password, why", [
    ("short pw 1", "at least 12 characters"),
    ("aaaaaaaaaaaaaaaa", "at least 6 different characters"),
    ("ababababcdcdcdcd", "at least 6 different characters"),
    ("Password1234", "first ever guessed"),
    ("alice-is-the-admin-77", "id, name or email"),
    ("Moreau family summer", "id, name or email"),
    ("x" * 1025, "at most 1024"),
])
def test_a_weak_msp_password_is_refused_saying_why(password, why):
    assert why in password_problem(password, ALICE)


def test_a_long_unguessable_password_will_do():
    assert password_problem(GOOD, ALICE) is None


def test_what_an_msp_admin_did_is_shown_under_their_name_not_an_owners():
    config = type("Config", (), {"owners": [], "business": None})()
    thread = {"alerts": [], "calls": [], "messages": [], "outcomes": [],
              "assignments": [],
              "notes": [{"at": 0.0, "owner_id": "msp:alice", "body": "Checked the trunk"}]}
    config.business = type("Business", (), {"timezone": "America/New_York"})()
    [entry] = views.timeline(config, thread, {"msp:alice": "Alice Moreau (MSP)"})
    assert entry.title == "Internal note by Alice Moreau (MSP)"
    assert views.owner_name(config, "msp:alice") == "msp:alice"  # unknown: as recorded
    assert views.by_whom(config, "web:msp:alice", {"msp:alice": "Alice Moreau (MSP)"}) \
        == "Alice Moreau (MSP)"


def test_who_set_an_intake_fact_is_named_as_the_thread_names_them_not_by_its_source():
    owners = [type("Owner", (), {"id": "dana", "name": "Dana Reyes"})()]
    config = type("Config", (), {"owners": owners})()
    config.business = type("Business", (), {"timezone": "America/New_York"})()
    guests = {"msp:alice": "Alice Moreau (MSP)"}

    def person(author: str) -> dict:
        return {"at": 0.0, "field": "budget", "label": "$90k", "source": "person",
                "author": author, "cause": "90k"}

    rows = [person("web:msp:alice"), person("web:dana"), person("email:dana"),
            person("sms:dana"), person("api:crm"), person("web:msp:bob"), person("")]
    whos = [line.split(" (", 1)[1].split(", from")[0]
            for line in views.intake_history_lines(config, rows, guests)]
    assert whos == ["set by Alice Moreau (MSP)", "set by Dana", "set by Dana", "set by Dana",
                    "set by crm (through the API)", "set by msp:bob", "set by a person"]
    # Without the fleet's admins (a company outside a fleet), an admin's id as recorded.
    [line] = views.intake_history_lines(config, [person("web:msp:alice")])
    assert "(set by msp:alice, from “90k”)" in line


def test_the_msp_section_is_read_with_its_hash_files_beside_the_main_file(tmp_path):
    main = with_msp(tmp_path, msp_section())
    msp = read_main(main).msp
    assert msp is not None and msp.host == "msp.installer.example" and msp.secure
    assert msp.admins[0].password_hash_file == main.parent / "alice.hash"
    assert msp.session_idle_minutes == 60 and msp.signin_failures_per_account == 5
    # Not a section the companies inherit.
    assert "msp" not in read_main(main).sections


@pytest.mark.parametrize("msp, key, said", [
    (msp_section(public_url="msp.installer.example"), "msp.public_url", "should match pattern"),
    (msp_section(admins=[]), "msp.admins", "at least 1 item"),
    (msp_section(colour="blue"), "msp.colour", "unknown key"),
    ({**msp_section(), "admins": [{"id": "alice", "name": "A", "email": "not-an-email",
                                   "password_hash_file": "a.hash"}]},
     "msp.admins[0].email", "should match pattern"),
    ({**msp_section(), "admins": [{"id": "alice", "name": "A", "email": "a@x.example"}]},
     "msp.admins[0].password_hash_file", "required key is missing"),
    ({**msp_section(), "admins": msp_section()["admins"] * 2}, "msp", "given twice"),
])
def test_a_wrong_msp_section_is_named_by_file_key_and_line(tmp_path, msp, key, said):
    main = with_msp(tmp_path, msp)
    with pytest.raises(ConfigError) as refused:
        read_main(main)
    [line] = refused.value.located()
    assert line.startswith(f"{main}: {key} (line ") and said in line, line


def test_msp_password_writes_an_argon2id_hash_atomically_readable_by_the_group_only(tmp_path):
    main = with_msp(tmp_path, msp_section())
    result = CliRunner().invoke(cli, ["msp-password", "alice", "--fleet", str(main)],
                                input=GOOD + "\n")
    assert result.exit_code == 0, result.output
    hashed = main.parent / "alice.hash"
    assert stat.S_IMODE(hashed.stat().st_mode) == 0o640
    text = hashed.read_text().strip()
    assert text.startswith("$argon2id$") and PasswordHasher().verify(text, GOOD)
    assert [p.name for p in main.parent.iterdir() if p.name.startswith(".alice.hash")] == []
    # A weak one is refused and the hash is left as it was.
    weak = CliRunner().invoke(cli, ["msp-password", "alice", "--fleet", str(main)],
                              input="alice-is-the-admin-77\n")
    assert weak.exit_code == 1 and "nothing was changed" in weak.output
    assert hashed.read_text().strip() == text
    with pytest.raises(VerifyMismatchError):
        PasswordHasher().verify(text, "alice-is-the-admin-77")
    unknown = CliRunner().invoke(cli, ["msp-password", "carol", "--fleet", str(main)],
                                 input=GOOD + "\n")
    assert unknown.exit_code == 2 and "admins: alice" in unknown.output
    bare = fleet(tmp_path / "bare")
    none = CliRunner().invoke(cli, ["msp-password", "alice", "--fleet", str(bare)],
                              input=GOOD + "\n")
    assert none.exit_code == 1 and "no msp: section" in none.output


def test_check_fleet_names_an_admin_without_a_hash_and_a_console_on_a_companys_host(tmp_path):
    main = with_msp(tmp_path, msp_section(public_url="https://acme.example"))
    company(main, "acme", ["+12125550100"], web={"public_url": "https://acme.example"})
    checked = CliRunner().invoke(cli, ["check", "--fleet", str(main)])
    assert checked.exit_code == 1
    public_url = line_of(main, "public_url: https://acme.example")
    hash_file = line_of(main, "password_hash_file")
    assert (f"FAIL  {main}: msp.public_url (line {public_url}): acme.example is company acme's "
            "web host") in checked.output
    assert (f"FAIL  {main}: msp.admins[0].password_hash_file (line {hash_file}): cannot read "
            f"{main.parent / 'alice.hash'}") in checked.output
    # A run is refused before anything starts, for the same reasons.
    run = CliRunner().invoke(cli, ["run", "--fleet", str(main)])
    assert run.exit_code == 2 and "alice.hash" in run.output

    document = yaml.safe_load(main.read_text())
    document["msp"]["public_url"] = "https://msp.installer.example"
    main.write_text(yaml.safe_dump(document, sort_keys=False))
    (main.parent / "alice.hash").write_text("not a hash\n")
    checked = CliRunner().invoke(cli, ["check", "--fleet", str(main)])
    assert "holds no argon2id hash" in checked.output and checked.exit_code == 1
    assert CliRunner().invoke(cli, ["msp-password", "alice", "--fleet", str(main)],
                              input=GOOD + "\n").exit_code == 0
    checked = CliRunner().invoke(cli, ["check", "--fleet", str(main)])
    assert checked.exit_code == 0, checked.output
    assert ("ok    msp: console at https://msp.installer.example (1 admin(s), each with a "
            "password hash)") in checked.output


async def test_an_idle_console_session_ends_and_a_limited_address_waits(store):
    """The console in process on a loopback port: its session ends after
    `session_idle_minutes` without a request, and an address over its failures is refused
    even for a right password."""
    import time

    from textback.fleet_config import MspConfig
    from textback.signin import digest
    from textback.web.msp import SESSION_COOKIE

    msp = MspConfig.model_validate(msp_section(signin_failures_per_address=2,
                                               public_url="http://msp.localhost"))
    async with console_client(console_on(store, msp, {"alice": PasswordHasher().hash(GOOD)})
                              ) as client:
        signed = await sign_in_to(client, "alice", GOOD)
        assert signed.status == 303 and signed.headers["Location"] == "/"
        assert SESSION_COOKIE in signed.cookies and signed.cookies[SESSION_COOKIE]["httponly"]
        listed = await client.get("/", allow_redirects=False)
        assert listed.status == 200 and "Alice Moreau (MSP)" in await listed.text()
        key = digest(signed.cookies[SESSION_COOKIE].value)  # only the digest is kept
        assert (await store.console_session(key))["admin_id"] == "alice"
        await store.touch_console_session(key, time.time() - msp.session_idle_minutes * 60 - 1)
        idle = await client.get("/", allow_redirects=False)
        assert idle.status == 303 and idle.headers["Location"] == "/signin?why=idle"
        assert await store.console_session(key) is None

        for _ in range(2):
            refused = await sign_in_to(client, "alice", "wrong wrong wrong")
            assert refused.headers["Location"] == "/signin?why=refused"
        limited = await sign_in_to(client, "alice", GOOD)
        assert limited.headers["Location"] == "/signin?why=limited"


async def test_a_console_session_outlives_a_restart_and_ends_when_the_admin_changes(store):
    """Console sessions are kept in the home company's store: a console built again on it (the
    process restarted, or another daemon of the fleet serving the same companies) knows the
    session. One built after the admin's password changed, or without the admin, ends it."""
    from textback.fleet_config import MspConfig
    from textback.signin import digest
    from textback.web.msp import SESSION_COOKIE

    msp = MspConfig.model_validate(msp_section(public_url="http://msp.localhost"))
    hashes = {"alice": PasswordHasher().hash(GOOD)}
    async with console_client(console_on(store, msp, hashes)) as before:
        token = (await sign_in_to(before, "alice", GOOD)).cookies[SESSION_COOKIE].value
    cookies = {SESSION_COOKIE: token}
    async with console_client(console_on(store, msp, hashes)) as after_restart:
        page = await after_restart.get("/", cookies=cookies, allow_redirects=False)
        assert page.status == 200 and "Alice Moreau (MSP)" in await page.text()
        assert "Acme Remodeling" in await page.text()

    changed = {"alice": PasswordHasher().hash("another long passphrase 9")}
    async with console_client(console_on(store, msp, changed)) as new_password:
        page = await new_password.get("/", cookies=cookies, allow_redirects=False)
        assert (page.status, page.headers["Location"]) == (303, "/signin?why=changed")
        again = await new_password.get("/", cookies=cookies, allow_redirects=False)
        assert again.headers["Location"] == "/signin"  # ended: nothing left of it
    assert await store.console_session(digest(token)) is None

    async with console_client(console_on(store, msp, hashes)) as signed_in_again:
        token = (await sign_in_to(signed_in_again, "alice", GOOD)).cookies[SESSION_COOKIE].value
    without_alice = MspConfig.model_validate(msp_section(
        public_url="http://msp.localhost",
        admins=[{"id": "bob", "name": "Bob Stone", "email": "bob@msp.example",
                 "password_hash_file": "bob.hash"}]))
    async with console_client(console_on(store, without_alice,
                                         {"bob": PasswordHasher().hash(GOOD)})) as removed:
        page = await removed.get("/", cookies={SESSION_COOKIE: token}, allow_redirects=False)
        assert (page.status, page.headers["Location"]) == (303, "/signin?why=changed")
    assert await store.console_session(digest(token)) is None


async def test_an_admin_removed_from_the_fleet_file_is_signed_out_at_the_restart(tmp_path):
    """A company's web app in process, on its daemon's store: the MSP admin `msp:alice` with a
    live session writes an intake value, shown under her (escaped) name. Then the process
    "restarts" without her in fleet.yaml: the same app built on the same store from an
    HttpContext whose MSP admins no longer list her ends her session at her next request, and
    a console built without her refuses her sign-in."""
    import dataclasses
    import html
    import secrets
    import time

    from aiohttp.test_utils import TestClient, TestServer

    from textback.fleet_config import MspConfig
    from textback.signin import digest
    from textback.web.inbox import SESSION_COOKIE, inbox_routes
    from textback.web.server import application
    from tests.web_helpers import homeowner_writes, web_config, web_daemon

    alice = MspAdmin("alice", "Alice <i>Moreau</i>", "alice@msp.example")
    bob = MspAdmin("bob", "Bob Stone", "bob@msp.example")
    console_url = "https://msp.installer.example/"

    def company_app(context, admins: dict) -> TestClient:
        msp = MspAccess(console_url, admins)
        app = application(context.config.web.max_body_bytes,
                          [inbox_routes(dataclasses.replace(context, msp=msp))], [])
        return TestClient(TestServer(app))

    async with web_daemon(web_config(tmp_path)) as daemon:
        await homeowner_writes(daemon, "We'd like a new kitchen, budget around $75k.")
        [row] = await daemon.store.inbox()
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        await daemon.store.start_session("msp:alice", digest(token), csrf, time.time(), 3600)
        cookies = {SESSION_COOKIE: token}

        async with company_app(daemon.http_context(), {"alice": alice, "bob": bob}) as before:
            set_budget = await before.post(f"/c/{row['id']}/intake", cookies=cookies,
                                           data={"csrf": csrf, "field": "budget", "value": "90k"},
                                           allow_redirects=False)
            assert set_budget.status == 303, await set_budget.text()
            page = await before.get(f"/c/{row['id']}", cookies=cookies, allow_redirects=False)
            text = await page.text()
            assert page.status == 200
            assert "Alice &lt;i&gt;Moreau&lt;/i&gt; (MSP)" in text and "<i>Moreau" not in text
            assert ("Budget: $90k (set by Alice <i>Moreau</i> (MSP), from “90k”)"
                    in html.unescape(text))
            assert "web:msp:alice" not in text

        async with company_app(daemon.http_context(), {"bob": bob}) as after:
            signed_out = await after.get("/", cookies=cookies, allow_redirects=False)
            assert signed_out.status == 303
            assert signed_out.headers["Location"] == "/signin?next=/&why=no_owner"
            session = await daemon.store.session(digest(token))
            assert session["ended_at"] is not None and session["ended_why"] == "no_owner"
            # What she did stays hers, under the id recorded (no name is known for it now).
            assert (await daemon.store.intake_history(row["id"]))[-1]["author"] == "web:msp:alice"

        without_alice = MspConfig.model_validate(msp_section(
            public_url="http://msp.localhost",  # plain HTTP: the test client keeps its cookies
            admins=[{"id": "bob", "name": "Bob Stone", "email": "bob@msp.example",
                     "password_hash_file": "bob.hash"}]))
        console = console_on(daemon.store, without_alice, {"bob": PasswordHasher().hash(GOOD)})
        async with console_client(console) as client:
            for account, why in (("alice", "/signin?why=refused"), ("bob", "/")):
                answer = await sign_in_to(client, account, GOOD)
                assert (answer.status, answer.headers["Location"]) == (303, why), account
        sessions = await daemon.store._all("SELECT admin_id FROM console_sessions")
        assert [row["admin_id"] for row in sessions] == ["bob"]
