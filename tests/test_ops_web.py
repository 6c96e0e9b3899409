"""/metrics and /healthz on a running daemon: who may read them, and what /healthz says."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from lab.configs import base_config, write_config
from lab.harness import eventually, in_process
from textback.config import ConfigError, load
from textback.daemon import Daemon

WEB_PORT = 18093


def daemon_with_web(tmp_path, **overrides) -> Daemon:
    config = base_config(tmp_path, **{
        "ami.port": 15097,  # nothing listens: AMI never logs in
        "web": {"port": WEB_PORT, "public_url": "https://inbox.acme.example"}, **overrides})
    return Daemon(load(write_config(tmp_path, config)))


async def get(path: str, **headers: str) -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as client:
        async with client.get(f"http://127.0.0.1:{WEB_PORT}{path}", headers=headers) as response:
            return response.status, await response.text(), dict(response.headers)


async def test_without_a_token_only_this_machine_reads_them_and_not_through_a_proxy(tmp_path):
    async with in_process(daemon_with_web(tmp_path)):
        status, body, headers = await get("/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
        assert "textback_ami_connected 0.0" in body
        assert "textback_outbox_pending 0.0" in body
        assert headers["X-Frame-Options"] == "DENY"  # served by the web: listener
        for proxied in ({"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"}):
            assert (await get("/metrics", **proxied))[0] == 403
            assert (await get("/healthz", **proxied))[0] == 403


async def test_healthz_answers_503_naming_what_is_wrong(tmp_path):
    async with in_process(daemon_with_web(tmp_path)):
        status, body, _ = await get("/healthz")
    assert status == 503
    assert body == "AMI is not logged in: calls are not seen\n"


async def test_with_a_token_both_need_it(tmp_path):
    (tmp_path / "metrics.token").write_text("s3cret-scrape-token\n")
    daemon = daemon_with_web(tmp_path, metrics={"token": {"file": "metrics.token"}})
    async with in_process(daemon):
        for path in ("/metrics", "/healthz"):
            status, _, headers = await get(path)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
            assert (await get(path, Authorization="Bearer wrong"))[0] == 401
            assert (await get(path, Authorization="Basic s3cret-scrape-token"))[0] == 401
        status, body, _ = await get("/metrics", Authorization="Bearer s3cret-scrape-token")
        assert status == 200 and "textback_calls_total" in body
        assert (await get("/healthz", Authorization="Bearer s3cret-scrape-token"))[0] == 503
        # A proxy in front is fine once a token is required.
        assert (await get("/metrics", Authorization="Bearer s3cret-scrape-token",
                          **{"X-Forwarded-For": "203.0.113.9"}))[0] == 200


@pytest.mark.parametrize("section, where, says", [
    ({"tokn": {"file": "x"}}, "metrics.tokn", "unknown key"),
    ({"token": {"file": "missing.token"}}, "metrics.token", "cannot read secret file"),
    ({"token": "inline-secret"}, "metrics.token", "a secret is never written in this file"),
    ({"max_due_age_minutes": 0}, "metrics.max_due_age_minutes", "greater than 0"),
])
def test_a_wrong_metrics_section_names_its_yaml_path(tmp_path, section, where, says):
    path = write_config(tmp_path, base_config(tmp_path, metrics=section))
    with pytest.raises(ConfigError) as caught:
        load(path)
    [(at, message)] = caught.value.problems
    assert at.startswith(where) and "(line " in at and says in message
    assert "inline-secret" not in str(caught.value)


async def test_a_worker_restarted_by_the_supervisor_is_counted(tmp_path):
    daemon = daemon_with_web(tmp_path)
    async with in_process(daemon):
        died = asyncio.Event()

        async def fails_once():
            if not died.is_set():
                died.set()
                raise RuntimeError("one bad moment")
            await asyncio.Event().wait()

        daemon.workers.start("flaky", fails_once)
        await died.wait()
        await eventually(lambda: asyncio.sleep(0, daemon.workers.restarts["flaky"] == 1), 10,
                         "the restart")
        _, body, _ = await get("/metrics")
    assert 'textback_worker_restarts_total{worker="flaky"} 1.0' in body
