"""Where a webhook may go: addresses refused by config and by DNS, redirects, secrets, the CLI."""

from __future__ import annotations

import asyncio
import sys

import pytest
from aiohttp import web

from lab.configs import base_config, write_config
from tests.hooks_receiver import Receiver, endpoint, new_secret
from tests.providers.common import serving
from textback.config import ConfigError, WebhookEndpointConfig, load
from textback.hooks.addresses import refusal
from textback.core.events import probe_event
from textback.hooks.sender import EndpointClient
from pydantic import SecretStr


def config_with(tmp_path, **entry):
    secret = new_secret()
    settings = {"url": "https://crm.example.com/hook", **entry}
    hook = endpoint(tmp_path, "crm", settings.pop("url"), secret, **settings)
    return write_config(tmp_path, base_config(tmp_path, webhooks={"endpoints": [hook]}))


@pytest.mark.parametrize("url, allow_private, why", [
    ("http://169.254.169.254/latest/meta-data", True, "cloud metadata address"),
    ("http://[fd00:ec2::254]/", True, "cloud metadata address"),
    ("http://100.100.100.200/", True, "cloud metadata address"),
    ("http://169.254.10.1/hook", False, "link-local address"),
    ("http://[fe80::1]/hook", False, "link-local address"),
    ("http://10.0.0.5/hook", False, "private or loopback address"),
    ("http://[::ffff:127.0.0.1]:8080/hook", False, "private or loopback address"),
    ("http://0.0.0.0/hook", True, "not a unicast host address"),
])
def test_a_refused_address_is_a_configuration_error(tmp_path, url, allow_private, why):
    with pytest.raises(ConfigError) as caught:
        load(config_with(tmp_path, url=url, allow_private=allow_private))
    (where, message), = caught.value.problems
    assert where.startswith("webhooks.endpoints[0].url") and why in message


def test_allow_private_admits_an_on_premises_receiver_and_never_metadata():
    assert refusal("10.0.0.5", True) is None and refusal("fe80::1", True) is None
    assert refusal("192.168.1.20", False) is not None
    assert refusal("93.184.216.34", False) is None
    assert "metadata" in refusal("169.254.169.254", True)


@pytest.mark.parametrize("secret", ["not-a-secret", "whsec_c2hvcnQ=", "whsec_!!!notbase64!!!"])
def test_a_secret_that_is_not_whsec_base64_is_refused_without_echoing_it(tmp_path, secret):
    path = config_with(tmp_path)
    (tmp_path / "crm.whsec").write_text(secret)
    with pytest.raises(ConfigError) as caught:
        load(path)
    (where, message), = caught.value.problems
    assert where.startswith("webhooks.endpoints[0].secret") and "whsec_" in message
    assert secret not in str(caught.value)


def client_for(url: str, secret: str, allow_private: bool = True) -> EndpointClient:
    settings = WebhookEndpointConfig(name="crm", url=url, secret={"env": "UNUSED"},
                                     allow_private=allow_private)
    return EndpointClient(settings, SecretStr(secret), lambda text: text)


async def test_a_dns_name_that_resolves_to_loopback_is_refused_without_allow_private():
    crm = Receiver(new_secret())
    async with serving(crm.app()) as url:
        client = client_for(url.replace("127.0.0.1", "localhost") + "/hook", crm.secret,
                            allow_private=False)
        try:
            event = probe_event("crm", 0)
            attempt = await client.deliver(event.id, event.body)
        finally:
            await client.close()
    assert not attempt.delivered and crm.seen == []
    assert attempt.error.startswith("refused: localhost resolves to refused addresses only")


async def test_redirects_are_followed_only_within_the_same_origin():
    crm = Receiver(new_secret())
    app = crm.app()

    def redirect(status: int, elsewhere: bool = False):
        async def answer(request: web.Request) -> web.Response:
            # the same server by another name is another host
            target = f"http://localhost:{request.url.port}/hook" if elsewhere else "/hook"
            return web.Response(status=status, headers={"Location": target})
        return answer

    app.router.add_post("/moved", redirect(308))
    app.router.add_post("/see-other", redirect(303))
    app.router.add_post("/away", redirect(307, elsewhere=True))
    async with serving(app) as url:
        results = {}
        for path in ("moved", "see-other", "away"):
            client = client_for(f"{url}/{path}", crm.secret)
            event = probe_event("crm", 0)
            try:
                results[path] = await client.deliver(event.id, event.body)
            finally:
                await client.close()
    assert results["moved"].delivered and len(crm.deliveries) == 1
    assert not results["see-other"].delivered and "only 307 and 308" in results["see-other"].error
    assert not results["away"].delivered
    assert results["away"].error == "HTTP 307: a redirect to another host is never followed"
    assert crm.forged == []


async def test_the_cli_sends_a_signed_test_event_and_logs_it(tmp_path):
    crm = Receiver(new_secret())
    async with serving(crm.app()) as url:
        hook = endpoint(tmp_path, "crm", f"{url}/hook", crm.secret)
        down = endpoint(tmp_path, "down", "http://127.0.0.1:9/hook", new_secret())
        path = write_config(tmp_path, base_config(tmp_path, webhooks={"endpoints": [hook, down]}))
        sent = await _cli(path, "webhooks", "test", "crm")
        failed = await _cli(path, "webhooks", "test", "down")
        unknown = await _cli(path, "webhooks", "test", "nope")
        log = await _cli(path, "webhooks", "log")
    assert sent[0] == 0 and f"crm: delivered {crm.deliveries[0].id} (HTTP 204)." in sent[1]
    assert crm.deliveries[0].event["type"] == "webhook.test" and crm.forged == []
    assert failed[0] == 1 and "down: not delivered: ClientConnectorError" in failed[2]
    assert unknown[0] == 2 and "no webhook endpoint 'nope' (endpoints: crm, down)" in unknown[2]
    lines = log[1].splitlines()
    assert len(lines) == 2 and "down" in lines[0] and "failed" in lines[0]
    assert "crm" in lines[1] and "webhook.test" in lines[1] and "delivered" in lines[1]
    for code, out, err in (sent, failed, log):
        assert crm.secret[6:] not in out + err and "/hook" not in out + err


async def _cli(config, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "textback", *args, "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()
