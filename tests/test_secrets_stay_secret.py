"""Configured secrets never leave the process: not in a log line, a stored error or CLI output.

Each secret is looked for as written, percent-encoded (once and twice, as in
Kannel's dlr-url) and in Base64, after driving the error paths that quote
URLs: a provider whose answer is not HTTP at all.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from urllib.parse import quote, quote_plus

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from lab.configs import BUSINESS_NUMBER, base_config, write_config
from sms_gateway.base import OutgoingText, SendResult
from sms_gateway.http import HttpGateway
from sms_gateway.kannel import KannelGateway
from sms_gateway.settings import HttpSettings, KannelSettings
from textback.cli import main
from textback.redact import Redactor, RedactingFilter

SECRETS = {"kannel": "kannel-pass-Zq8#w", "token": "hook/token+7&x", "voipms": "voip ms=pass!"}


def forms(secret: str) -> set[str]:
    b64 = base64.b64encode(secret.encode()).decode()
    return {secret, quote(secret, safe=""), quote_plus(secret), quote(quote(secret, safe=""), safe=""),
            b64, b64.rstrip("=")}


def assert_clean(text: str) -> None:
    for secret in SECRETS.values():
        for form in forms(secret):
            assert form not in text, f"{form!r} leaked"


@pytest.fixture
async def not_http():
    """A 'provider' that answers garbage: aiohttp's error then quotes the whole request URL."""
    async def answer(reader, writer):
        await reader.read(65536)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    server.close()


def kannel(base: str) -> KannelGateway:
    return KannelGateway(KannelSettings(
        sendsms_url=f"{base}/cgi-bin/sendsms", username="textback", password={"env": "UNUSED"},
        webhook_token={"env": "UNUSED"}, callback_base_url="http://127.0.0.1:9"),
        {"password": SecretStr(SECRETS["kannel"]), "webhook_token": SecretStr(SECRETS["token"])})


def voipms(base: str) -> HttpGateway:
    settings = HttpSettings.model_validate({
        "url": f"{base}/api/v1/rest.php", "method": "GET", "body": "query",
        "fields": {"to": "dst", "sender": "did", "text": "message"},
        "constants": {"api_username": "dana@example.com", "method": "sendSMS"},
        "secret_fields": {"api_password": {"env": "UNUSED"}}})
    return HttpGateway(settings, {"secret_fields.api_password": SecretStr(SECRETS["voipms"])})


async def test_gateway_errors_never_quote_a_secret(not_http):
    for gateway in (kannel(not_http), voipms(not_http)):
        result = await gateway.send(OutgoingText("+12125550100", "+12125550123", "hi"))
        assert result.status == "unknown" and result.error
        assert_clean(result.error)
        try:
            await gateway.check()
        except Exception as exc:  # noqa: BLE001 - what `textback check` would print
            assert_clean(str(exc))
        await gateway.close()


async def test_textback_check_output_is_masked(tmp_path, not_http, monkeypatch):
    monkeypatch.setenv("KANNEL_PASSWORD", SECRETS["kannel"])
    monkeypatch.setenv("KANNEL_TOKEN", SECRETS["token"])
    config = base_config(tmp_path, gateway={"type": "kannel", "kannel": {
        "sendsms_url": f"{not_http}/cgi-bin/sendsms", "username": "textback",
        "password": {"env": "KANNEL_PASSWORD"}, "webhook_token": {"env": "KANNEL_TOKEN"}}})
    result = await asyncio.to_thread(CliRunner().invoke, main, ["check", "-c", str(write_config(tmp_path, config))])
    assert "gateway" in result.output
    assert_clean(result.output)


def test_the_log_filter_masks_messages_arguments_and_tracebacks(caplog):
    logger = logging.getLogger("textback.test.redact")
    caplog.handler.addFilter(RedactingFilter(Redactor(SECRETS.values())))
    url = f"http://x/sendsms?password={quote_plus(SECRETS['kannel'])}&dlr-url=" + quote(
        f"http://y/?token={quote(SECRETS['token'], safe='')}", safe="")
    logger.error("send failed: %s", url)
    logger.warning("token %s", base64.b64encode(SECRETS["token"].encode()).decode())
    try:
        raise RuntimeError(f"boom {SECRETS['voipms']}")
    except RuntimeError:
        logger.exception("oops")
    assert_clean(caplog.text)
    assert caplog.text.count("[secret]") >= 4


class QuotingGateway:
    """A gateway whose refusal quotes the request URL, credentials and all, as aiohttp's can."""

    name = "quoting"

    async def send(self, text):
        return SendResult.permanent(
            f"refused: http://smsc.example/sendsms?username=textback&password="
            f"{quote_plus(SECRETS['kannel'])}&dlr-url=" + quote(
                f"http://textback.example/kannel/status?token={quote(SECRETS['token'], safe='')}",
                safe=""))


async def test_the_daemon_masks_gateway_errors_before_it_stores_or_logs_them(offline_daemon,
                                                                          monkeypatch, caplog):
    monkeypatch.setenv("KANNEL_PASSWORD", SECRETS["kannel"])
    monkeypatch.setenv("KANNEL_TOKEN", SECRETS["token"])
    daemon = await offline_daemon(gateway={
        "type": "kannel", "callbacks": {"public_base_url": "https://textback.example"},
        "kannel": {"sendsms_url": "http://127.0.0.1:9/cgi-bin/sendsms", "username": "textback",
                   "password": {"env": "KANNEL_PASSWORD"}, "webhook_token": {"env": "KANNEL_TOKEN"}}},
        send_with=QuotingGateway())
    await daemon.store.queue_test_text("+12125550123", BUSINESS_NUMBER, "dana", "test")
    for item in await daemon.store.claim_all(await daemon.store.due(time.time() + 1)):
        await daemon.outbox.send(item)
    [row] = await daemon.store._all("SELECT o.state, o.last_error, m.error FROM outbox o"
                                    " JOIN messages m ON m.id = o.message_id")
    assert row["state"] == "failed" and row["last_error"] == "refused: http://smsc.example/sendsms?…"
    assert_clean(row["last_error"] + row["error"] + caplog.text)
