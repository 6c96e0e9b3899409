"""The `web:` listener itself: every answer carries the security headers, and a failure leaks nothing."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from textback.config import WebConfig
from textback.web.server import SECURITY_HEADERS, WebServer


def routes(app: web.Application) -> None:
    async def fine(request):
        return web.Response(text="fine")

    async def broken(request):
        raise RuntimeError("secret-detail in a traceback")

    app.router.add_get("/fine", fine)
    app.router.add_get("/broken", broken)


async def fetch(server: WebServer, path: str) -> tuple[int, dict, str]:
    async with aiohttp.ClientSession() as client:
        async with client.get(f"http://127.0.0.1:{server.port}{path}") as response:
            return response.status, dict(response.headers), await response.text()


async def test_every_answer_carries_the_security_headers_and_a_failure_no_traceback(caplog):
    server = WebServer(WebConfig(port=0, public_url="https://inbox.acme.example"), [routes])
    await server.start()
    try:
        with caplog.at_level(logging.ERROR, "textback.web"):
            answers = [await fetch(server, path) for path in ("/fine", "/missing", "/broken")]
    finally:
        await server.stop()
    assert [status for status, _, _ in answers] == [200, 404, 500]
    for _, headers, _ in answers:
        for name, value in SECURITY_HEADERS.items():
            assert headers[name] == value
    assert "frame-ancestors 'none'" in SECURITY_HEADERS["Content-Security-Policy"]
    assert "unsafe-inline" not in SECURITY_HEADERS["Content-Security-Policy"]
    assert "secret-detail" not in answers[2][2]
    assert "secret-detail" in caplog.text  # the installer still finds it in the log


def test_public_url_must_be_http_or_https():
    with pytest.raises(ValidationError):
        WebConfig(public_url="javascript:alert(1)")
    assert WebConfig(public_url="https://inbox.acme.example/textback").secure
    assert not WebConfig(public_url="http://127.0.0.1:8088").secure
