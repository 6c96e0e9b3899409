"""Two companies' daemons on one PostgreSQL database, each serving its own web listener and
API: a token of one company asking for the other's conversation by id gets 404, and its
listings hold its own company's calls and conversations alone. Real daemons (in process, no
AMI), tokens made with the real `textback token` command, requests over loopback."""

from __future__ import annotations

import time

import aiohttp
import pytest
from click.testing import CliRunner

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, base_config, write_config
from lab.harness import SMTP_SINK_PORT, in_process
from textback.cli import main
from textback.config import load
from textback.daemon import Daemon
from textback.store import CallRow, PlannedText

PORTS = {"acme": 18191, "birch": 18192}


def company_config(tmp_path, slug: str, url: str):
    """`slug`'s config: its own run lock and web port, the shared database."""
    home = tmp_path / slug
    home.mkdir()
    return write_config(home, base_config(home, **{
        "smtp.port": SMTP_SINK_PORT, "text.delay_seconds": 3600,
        "company": {"id": slug, "name": slug.title()},
        "storage": {"path": str(home / "textback.db"), "url": url},
        "web": {"port": PORTS[slug], "public_url": f"https://{slug}.example"}}))


def token_for(path) -> str:
    result = CliRunner().invoke(main, ["token", "create", "--name", "crm", "--scope", "write",
                                       "-c", str(path)])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()[0]


async def seed(daemon: Daemon, linkedid: str) -> tuple[int, int]:
    """A missed call from the homeowner: its conversation's and its call's ids."""
    now = time.time()
    await daemon.store.record_call(CallRow(
        linkedid=linkedid, business_number=BUSINESS_NUMBER, caller_raw=HOMEOWNER,
        caller=HOMEOWNER, caller_name="", started_at=now - 60, answered_at=None,
        ended_at=now - 40, outcome="missed", reason="no_answer", decision="missed_call_text"),
        PlannedText("dana", "Sorry we missed you", now + 3600), owner_id="dana")
    conversation = await daemon.store.conversation_for(HOMEOWNER, BUSINESS_NUMBER)
    [call] = await daemon.store.calls(0)
    return conversation["id"], call["id"]


@pytest.fixture
def paths(tmp_path, postgres_server, postgres_template):
    """Each company's config, on one shared database reached as the daemons' role."""
    url = postgres_server.new_database(template=postgres_template,
                                       owner=postgres_server.daemon_role())
    return {slug: company_config(tmp_path, slug, url) for slug in PORTS}


@pytest.fixture
def tokens(paths):
    """A write token of each company, made with the CLI (before any daemon's loop runs)."""
    return {slug: token_for(path) for slug, path in paths.items()}


async def test_a_token_of_one_company_gets_404_for_the_others_conversation(
        paths, tokens, smtp_sink):
    acme, birch = Daemon(load(paths["acme"])), Daemon(load(paths["birch"]))
    async with in_process(acme), in_process(birch), aiohttp.ClientSession() as session:
        ids = {"acme": await seed(acme, "1700000000.1"),
               "birch": await seed(birch, "1700000000.1")}  # the same PBX call id

        async def get(slug: str, path: str, token: str) -> tuple[int, dict]:
            async with session.get(f"http://127.0.0.1:{PORTS[slug]}/api/v1{path}",
                                   headers={"Authorization": f"Bearer {token}"}) as answer:
                return answer.status, await answer.json()

        for mine, theirs in (("acme", "birch"), ("birch", "acme")):
            their_conversation = ids[theirs][0]
            status, body = await get(mine, f"/conversations/{their_conversation}", tokens[mine])
            assert status == 404, body
            status, body = await get(mine, f"/conversations/{ids[mine][0]}", tokens[mine])
            assert status == 200 and body["conversation"]["id"] == ids[mine][0]
            status, body = await get(mine, "/conversations", tokens[mine])
            assert status == 200
            assert [c["id"] for c in body["conversations"]] == [ids[mine][0]]
            status, body = await get(mine, "/calls", tokens[mine])
            assert status == 200
            assert [c["conversation_id"] for c in body["calls"]] == [ids[mine][0]]
            # Its token is no token on the other company's listener.
            status, _ = await get(theirs, f"/conversations/{their_conversation}", tokens[mine])
            assert status == 401
