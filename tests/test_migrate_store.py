"""`textback migrate-store`: a single install's SQLite store moved into a fleet's PostgreSQL
as one company, on a real PostgreSQL 15 reached as a role that must give its password (no
superuser, no BYPASSRLS: row-level security holds), into a database that already holds
another company whose ids overlap the file's.

The source is built through the store's own API as a daemon would have written it
(`lab.history.build_history`: calls, texts, replies, alerts, answers, outcomes, opt-outs,
digests, intake facts, events, the consent ledger), plus every other kind of row: media and
their files, web users, sessions, links, sign-in failures, API tokens and kept answers, a
contact class, notes, a claimer and its claims, webhook deliveries and their cursor, push
subscriptions and pushes, an owner's alert texts and answers, incidents, a self-test run, a
kept monthly scorecard, an unroutable text, reply tokens, escalations.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from PIL import Image

from lab.configs import base_config, write_config
from lab.history import BUSINESS_NUMBERS, build_history
from textback import runlock
from textback.core.intake import Fact
from textback.mediafiles import MediaStore
from textback.store import NewMedia, Notice, QueuedPush, Store
from textback.store import migrate as moving
from textback.store.migrations import MIGRATIONS
from textback.store.postgres import PostgresStore
from textback.store.postgres.migrations import CURRENT_COMPANY_TABLES

PASSWORD = secrets.token_urlsafe(18)
CALLER = "+12125550199"
OWNER_MOBILE = "+12125550177"
HOOK = "crm-hook"


def photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


async def everything_else(store, files: MediaStore, tag: str) -> None:
    """Every kind of row `build_history` does not write, through the store's own methods."""
    now = time.time() - 600
    claimer = await store.register_claimer("old-host", 4242)
    store._claimer = claimer
    inbound = await store.record_inbound(CALLER, BUSINESS_NUMBERS[0], f"photo for {tag}", "log",
                                         f"mms-{tag}", "dana",
                                         media=[NewMedia("https://api.example/m1", "image/jpeg")])
    [item] = await store.claim_media(time.time(), 10)
    digest = files.put(photo())
    await store.keep_media(item["id"], digest, "image/jpeg", True, len(photo()))
    answer = files.put(photo() + b"answer")  # a different file: an owner's attachment
    reply_id = await store.queue_owner_reply(
        inbound.conversation_id, BUSINESS_NUMBERS[0], CALLER, f"here is ours, {tag}", "web",
        "dana", media=[NewMedia("", "image/jpeg", sha256=answer, content_type="image/jpeg",
                                shown=True, size=10)])
    assert reply_id is not None
    await store.claim_all(await store.due(time.time() + 3600))  # left `sending`, by the claimer
    await store.assign(inbound.conversation_id, "eli", "cli")
    await store.add_note(inbound.conversation_id, "dana", f"call back after 5 ({tag})")
    await store.set_contact_class(CALLER, "client", "dana")
    await store.record_outcome(inbound.conversation_id, "won", 82000.0, "cli")
    kitchen = Fact("project", "kitchen", "Kitchen", "the kitchen", "said so", "person")
    await store.correct_intake(inbound.conversation_id, [kitchen], "dana", "web")
    await store.reply_token(inbound.conversation_id, "dana", 86400, ("Dana, a reply",))
    await store.record_escalation(inbound.message_id, 1, "dana",
                                  Notice("dana", "dana@example.com", "waiting", f"{tag} waits"))
    await store.set_password_hash("dana", f"$argon2id$fake-{tag}")
    await store.start_session("dana", f"digest-{tag}", "csrf", now, 3600, "Firefox", "192.0.2.1")
    await store.start_console_session(f"console-{tag}", "alice", "credential", "csrf", now, 3600)
    await store.use_link(f"nonce-{tag}", "dana", now + 3600, now)
    await store.note_sign_in_failure([f"owner:dana-{tag}"], now, 900)
    token = await store.add_token(f"crm-{tag}", "write", f"hash-{tag}", "tb_1234")
    await store.keep_idempotent_answer(token, "key-1", "fp", 202, json.dumps(
        {"status": "queued", "outbox_id": 1, "conversation_id": inbound.conversation_id}))
    await store.web_key("sign-in links")
    await store.fan_out({HOOK: ("reply.received", "call.missed")}, 0)
    subscription = await store.save_push_subscription(
        "dana", f"https://push.example/{tag}", "p256", "auth", "Firefox on Linux")
    await store.queue_pushes([QueuedPush(
        subscription, "escalation", f"{inbound.message_id}:1", json.dumps(
            {"v": 1, "kind": "escalation", "title": "Unanswered", "body": "…",
             "thread": f"/c/{inbound.conversation_id}", "link": "https://x/link/abc",
             "tag": f"c{inbound.conversation_id}"}), now, now + 7200)],
        await store.settled_event_id(), now)
    await store.set_alert_channels("dana", ["email", "push"], "21:00-07:00")
    alert_text = await store.queue_owner_alert("dana", OWNER_MOBILE, BUSINESS_NUMBERS[0],
                                               inbound.conversation_id, f"#1 {tag} replied")
    await store.note_owner_answer(alert_text, "dana")
    incident = await store.open_incident("ami_down", f"{tag}'s PBX is down", now)
    await store.close_incident(incident, now + 60)
    await store.open_incident("gateway_failing", f"{tag}'s gateway", now)
    await store.request_selftest("cli")
    await store.keep_monthly_scorecard("2020-01", await store.scorecard(0, time.time()))
    await store.record_unroutable("anonymous", BUSINESS_NUMBERS[0], f"hi {tag}", "log", None)
    await store.suppress("+12125550188", "STOP", BUSINESS_NUMBERS[0])
    await store.unsuppress("+12125550188", "START", BUSINESS_NUMBERS[0])
    await store.suppress("+12125550187", "STOP", BUSINESS_NUMBERS[1])


def config_for(tmp_path: Path, **storage) -> Path:
    """The install's config (two numbers, two owners, as the history's), its store as given."""
    config = base_config(tmp_path, **{
        "owners": [{"id": "dana", "name": "Dana Reyes", "email": "dana@example.com"},
                   {"id": "eli", "name": "Eli Park", "email": "eli@example.com"}],
        "numbers": [{"number": n, "owner": "dana"} for n in BUSINESS_NUMBERS]})
    config["storage"] = storage
    return write_config(tmp_path, config, name=f"config-{len(list(tmp_path.glob('config*')))}.yaml")


@pytest.fixture
def fleet(tmp_path, postgres_server):
    """A database owned by the password role, holding company bravo (ids from 1, as the
    file's), and the install's SQLite store with its media files: (url, source, config)."""
    role = postgres_server.password_role(PASSWORD)
    url = postgres_server.new_database()
    name = url.split("?")[0].rsplit("/", 1)[1]
    postgres_server.admin(f'ALTER DATABASE "{name}" OWNER TO {role}')
    url = postgres_server.url(name, user=role)
    source = tmp_path / "acme" / "textback.db"
    source.parent.mkdir()
    end = time.time() - 3600

    async def build() -> None:
        bravo = await PostgresStore.open(url, PASSWORD, company="bravo")
        await build_history(bravo, 20, end, seed=2)
        await everything_else(bravo, MediaStore(tmp_path / "bravo-media"), "bravo")
        await bravo.close()
        acme = await Store.open(source)
        await build_history(acme, 50, end, seed=1)
        await everything_else(acme, MediaStore(source.parent / "media"), "acme")
        await acme.close()

    asyncio.run(build())
    (tmp_path / "db.secret").write_text(PASSWORD + "\n")
    return url, source, config_for(tmp_path, path=str(source))


def textback(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real CLI, as a person runs it."""
    return subprocess.run([sys.executable, "-m", "textback", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def company_rows(url: str, company: str) -> dict[str, list]:
    """Every row of `company`, table by table, read as its own session (row-level security)."""
    with psycopg.connect(url, password=PASSWORD) as connection:
        found = connection.execute("SELECT id FROM companies WHERE slug = %s",
                                   (company,)).fetchone()
        if found is None:
            return {}
        connection.execute("SELECT set_config('textback.company', %s, false)", (str(found[0]),))
        return {table: connection.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                for table in CURRENT_COMPANY_TABLES}


def file_rows(source: Path, table: str, order: str = "id") -> list[sqlite3.Row]:
    db = sqlite3.connect(source)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
    finally:
        db.close()


def move(url: str, source: Path, config: Path, tmp_path: Path, company: str = "acme"):
    return textback("migrate-store", "-c", str(config), "--from", f"sqlite://{source}",
                    "--to", url, "--company", company, "--company-name", "Acme Remodeling",
                    "--to-password-file", str(tmp_path / "db.secret"),
                    "--media-to", str(tmp_path / "acme-media"))


@pytest.mark.timeout(900)  # seven commands run as processes, on a loaded machine
def test_a_store_moves_in_as_a_company_beside_another(fleet, tmp_path):
    url, source, config = fleet
    bravo_before = company_rows(url, "bravo")
    done = move(url, source, config, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verification passed" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr
    for line in ("verified: textback report (all months) prints the same",
                 "verified: textback inbox prints the same",
                 "verified: textback calls (all) prints the same"):
        assert line in done.stdout

    # bravo is untouched, row for row.
    assert company_rows(url, "bravo") == bravo_before
    acme = company_rows(url, "acme")

    # Every table's rows, less those not copied (the link keys, made anew; the MSP console's
    # sessions) and the search entries of gone rows.
    for table, rows in acme.items():
        expected = 0 if table in moving.NOT_COPIED else len(file_rows(source, table, "rowid"))
        assert len(rows) == expected, table
        assert rows or table in moving.NOT_COPIED, f"the file holds no {table} row: none tried"
        if table in moving.NOT_COPIED:
            assert file_rows(source, table, "rowid"), f"the file holds no {table} row to leave"
    assert f"{'messages':<22} {len(acme['messages']):>8} {len(acme['messages']):>8}" in done.stdout

    with psycopg.connect(url, password=PASSWORD) as connection:
        acme_id = connection.execute("SELECT id FROM companies WHERE slug = 'acme'").fetchone()[0]
        connection.execute("SELECT set_config('textback.company', %s, false)", (str(acme_id),))
        one = lambda sql, *args: connection.execute(sql, args).fetchall()  # noqa: E731

        # Ids are new (bravo's overlapped the file's), in the file's order, and every
        # reference, declared or not, names acme's own row.
        old = [r["id"] for r in file_rows(source, "messages")]
        new = [r[0] for r in one("SELECT id FROM messages ORDER BY id")]
        assert len(new) == len(old) and set(new).isdisjoint(
            r[0] for r in bravo_before["messages"])
        assert [r["body"] for r in file_rows(source, "messages")] == [
            r[0] for r in one("SELECT body FROM messages ORDER BY id")]
        assert [r["started_at"] for r in file_rows(source, "calls")] == [
            r[0] for r in one("SELECT started_at FROM calls ORDER BY id")]
        assert one("SELECT COUNT(*) FROM calls c WHERE c.message_id IS NOT NULL AND NOT EXISTS"
                   " (SELECT 1 FROM messages m WHERE m.id = c.message_id"
                   " AND m.conversation_id = c.conversation_id)") == [(0,)]
        assert one("SELECT COUNT(*) FROM calls WHERE message_id IS NOT NULL") == [
            (sum(1 for r in file_rows(source, "calls") if r["message_id"] is not None),)]
        # The text each conversation waits on is acme's own, of that conversation, the same text.
        assert one("SELECT COUNT(*) FROM conversations c WHERE c.last_reply_id IS NOT NULL AND"
                   " NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = c.last_reply_id"
                   " AND m.conversation_id = c.id AND m.direction = 'in')") == [(0,)]
        waited_on = {r["id"]: r["body"] for r in file_rows(source, "messages")}
        assert sorted((r["caller"], waited_on.get(r["last_reply_id"], ""))
                      for r in file_rows(source, "conversations")) == sorted(one(
            "SELECT c.caller, COALESCE(m.body, '') FROM conversations c"
            " LEFT JOIN messages m ON m.id = c.last_reply_id"))
        assert any(r["last_reply_id"] for r in file_rows(source, "conversations"))
        assert one("SELECT COUNT(*) FROM conversation_search s WHERE NOT EXISTS (SELECT 1"
                   " FROM messages m WHERE m.id = s.rowid AND m.conversation_id ="
                   " s.conversation_id) AND NOT EXISTS (SELECT 1 FROM conversations c"
                   " WHERE -c.id = s.rowid AND c.id = s.conversation_id)") == [(0,)]
        claimers = {r[0] for r in one("SELECT id FROM daemons")}
        claimed = one("SELECT claimed_by FROM outbox WHERE claimed_by IS NOT NULL")
        assert claimed and {r[0] for r in claimed} <= claimers
        # Event bodies and order keys name acme's conversations; the hook's cursor is at the
        # same event as in the file.
        for order_key, body in one("SELECT order_key, body FROM events"):
            data = json.loads(body)["data"]
            if "conversation_id" in data and data["conversation_id"] is not None:
                assert order_key == f"conversation:{data['conversation_id']}"
                assert one("SELECT 1 FROM conversations WHERE id = %s",
                           data["conversation_id"]) == [(1,)]
        [(cursor,)] = one("SELECT value FROM progress WHERE name = %s", f"webhooks.cursor.{HOOK}")
        old_cursor = next(r["value"] for r in file_rows(source, "progress", "name")
                          if r["name"] == f"webhooks.cursor.{HOOK}")
        old_events = [r["event_id"] for r in file_rows(source, "events") if r["id"] <= old_cursor]
        assert [r[0] for r in one("SELECT event_id FROM events WHERE id <= %s ORDER BY id",
                                  cursor)] == old_events
        # The push names the new message and conversation; its old sign-in link is gone.
        [(ref, payload)] = one("SELECT ref, payload FROM push_messages")
        message_id, _, level = ref.partition(":")
        [(conversation_id,)] = one("SELECT conversation_id FROM messages WHERE id = %s",
                                   int(message_id))
        assert json.loads(payload)["thread"] == f"/c/{conversation_id}" and level == "1"
        assert json.loads(payload)["link"] is None
        # The kept API answer names acme's conversation.
        [(answer,)] = one("SELECT response FROM api_idempotency")
        assert one("SELECT 1 FROM conversations WHERE id = %s",
                   json.loads(answer)["conversation_id"]) == [(1,)]
        # Conversation versions as the file has them (inserting outcomes and classes bumps
        # them on PostgreSQL; the move puts them back).
        assert sorted((r["caller"], r["business_number"], r["version"], r["state_version"])
                      for r in file_rows(source, "conversations")) == sorted(one(
            "SELECT caller, business_number, version, state_version FROM conversations"))

        # The consent ledger: the same facts in the same order, each text's detail naming
        # acme's message (whose words it quotes) and keeping the file's ids.
        ledger = one("SELECT at, fact, number, body, detail FROM consent_ledger ORDER BY id")
        assert [(r["at"], r["fact"], r["number"], r["body"])
                for r in file_rows(source, "consent_ledger")] == [row[:4] for row in ledger]
        texts = [(body, json.loads(detail)) for _, fact, _, body, detail in ledger
                 if fact == "text_queued"]
        assert texts
        for body, detail in texts:
            assert one("SELECT body FROM messages WHERE id = %s",
                       detail["message_id"]) == [(body,)]
            assert "message_id" in detail["source_ids"]
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation):
            connection.execute("UPDATE consent_ledger SET body = ''")
        connection.rollback()

    # The media files the rows name were copied, checked, into the company's directory.
    copied = MediaStore(tmp_path / "acme-media")
    for row in file_rows(source, "media"):
        for digest in (row["sha256"], row["rendition_sha256"]):
            if digest:
                assert copied.read(digest) == MediaStore(source.parent / "media").read(digest)
    assert "media: 2 file(s) copied" in done.stdout

    # The real commands print the same for the file's config and the company's.
    company_config = config_for(tmp_path, url=url, password={"file": str(tmp_path / "db.secret")})
    text = company_config.read_text().replace("storage:", "company:\n  id: acme\nstorage:", 1)
    company_config.write_text(text)
    for command in (["report", "--from", "2000-01-01", "--to", "2100-01-01"],
                    ["inbox", "--limit", "10000"], ["calls", "--since", "99999w"]):
        before = textback(*command, "-c", str(config))
        after = textback(*command, "-c", str(company_config))
        assert before.returncode == after.returncode == 0, before.stderr + after.stderr
        assert before.stdout == after.stdout and len(before.stdout.splitlines()) > 3, command

    # The identity sequences are ahead of every id: each company's store writes on.
    async def write_on() -> None:
        for company in ("acme", "bravo"):
            store = await PostgresStore.open(url, PASSWORD, company=company)
            inbound = await store.record_inbound("+12125550166", BUSINESS_NUMBERS[1], "new", "log",
                                                 f"after-{company}", "dana")
            await store.queue_reply(inbound.conversation_id, BUSINESS_NUMBERS[1],
                                    "+12125550166", "hello", "owner")
            await store.close()

    asyncio.run(write_on())


def test_an_empty_database_is_given_its_schema_first(fleet, tmp_path, postgres_server):
    """A new fleet database, with nothing in it yet: the move creates the schema as `textback
    run` would, then moves the store; the password read from the environment this time."""
    _, source, config = fleet
    url = postgres_server.new_database()
    name = url.split("?")[0].rsplit("/", 1)[1]
    role = postgres_server.password_role(PASSWORD)
    postgres_server.admin(f'ALTER DATABASE "{name}" OWNER TO {role}')
    url = postgres_server.url(name, user=role)
    done = textback("migrate-store", "-c", str(config), "--from", f"sqlite://{source}",
                    "--to", url, "--company", "acme", "--to-password-env", "ACME_DB_PASSWORD",
                    env={"ACME_DB_PASSWORD": PASSWORD})
    assert done.returncode == 0, done.stdout + done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert "media: 2 file(s) stay in" in done.stdout
    assert len(company_rows(url, "acme")["messages"]) == len(file_rows(source, "messages"))


def test_a_second_move_of_the_company_is_refused_and_changes_nothing(fleet, tmp_path):
    url, source, config = fleet
    assert move(url, source, config, tmp_path).returncode == 0
    before = {company: company_rows(url, company) for company in ("acme", "bravo")}
    again = move(url, source, config, tmp_path)
    assert again.returncode == 1
    assert "already holds the company 'acme'" in again.stderr
    assert "nothing was written" in again.stderr
    assert {company: company_rows(url, company) for company in ("acme", "bravo")} == before


def test_a_store_at_another_schema_is_refused(fleet, tmp_path):
    url, source, config = fleet
    for version, says in ((len(MIGRATIONS) - 1, "Run this textback against it first"),
                          (len(MIGRATIONS) + 1, "a downgrade is not supported")):
        db = sqlite3.connect(source)
        db.execute(f"PRAGMA user_version = {version}")
        db.close()
        refused = move(url, source, config, tmp_path)
        assert refused.returncode == 1 and says in refused.stderr, refused.stderr
        assert company_rows(url, "acme") == {}


def test_a_store_in_use_by_its_daemon_is_refused(fleet, tmp_path):
    url, source, config = fleet
    lock = runlock.acquire(source)
    try:
        refused = move(url, source, config, tmp_path)
    finally:
        lock.release()
    assert refused.returncode == 1
    assert "another `textback run` is already using" in refused.stderr
    assert "Stop it" in refused.stderr
    assert company_rows(url, "acme") == {}


def test_a_failure_in_the_middle_leaves_the_target_as_it_was(fleet, tmp_path, postgres_server):
    """A row the target refuses (a constraint added there, which one of the file's notes
    breaks) comes after most tables are written: all of them are rolled back."""
    url, source, config = fleet
    with psycopg.connect(url, password=PASSWORD, autocommit=True) as connection:
        connection.execute("ALTER TABLE notes ADD CONSTRAINT no_acme_notes"
                           " CHECK (body NOT LIKE '%(acme)%')")
    database = url.split("?")[0].rsplit("/", 1)[1]
    everyone = postgres_server.url(database)  # the superuser: every company's rows at once

    def all_rows() -> dict[str, list]:
        with psycopg.connect(everyone) as connection:
            return {table: connection.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                    for table in (*CURRENT_COMPANY_TABLES, "companies")}

    before = all_rows()
    failed = move(url, source, config, tmp_path)
    assert failed.returncode == 1
    assert "no_acme_notes" in failed.stderr and "left as it was" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert all_rows() == before


def test_a_photo_missing_from_disk_fails_the_check(fleet, tmp_path):
    """The rows move, but a file a row names that is not on disk is named, and the command
    exits 1: a photo never goes missing silently."""
    url, source, config = fleet
    [gone] = [r["sha256"] for r in file_rows(source, "media") if r["url"]]
    MediaStore(source.parent / "media").path(gone).unlink()
    done = move(url, source, config, tmp_path)
    assert done.returncode == 1
    assert f"media: MISSING {MediaStore(source.parent / 'media').path(gone)}" in done.stdout
    assert "verification FAILED" in done.stdout
    assert "media: 1 file(s) copied" in done.stdout


def test_every_table_of_the_store_is_known_to_the_move():
    """A table added to the schema must be given its place in the move (or be refused there):
    the file's tables are the move's, and the company's tables on PostgreSQL too."""
    known = {t.name for t in moving.TABLES} | set(moving.NOT_COPIED)
    assert set(CURRENT_COMPANY_TABLES) | {"written_by"} == known
