"""A web inbox for tests: a real daemon in-process serving `web:`, and a cookie-keeping client."""

from __future__ import annotations

import asyncio
import re
import time
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
from click.testing import CliRunner

from lab.configs import BUSINESS_NUMBER, base_config, write_config
from lab.harness import SMTP_SINK_PORT, eventually, in_process
from sms_gateway.base import InboundText
from textback.cli import main
from textback.config import load
from textback.daemon import Daemon

WEB_PORT = 18088
BASE = f"http://127.0.0.1:{WEB_PORT}"
OWNERS = [{"id": "dana", "name": "Dana Reyes", "email": "dana@example.com", "role": "admin"},
          {"id": "sam", "name": "Sam Ortiz", "email": "sam@example.com"}]
PASSWORDS = {"dana": "correct horse battery", "sam": "staple gun 2026!"}


def web_config(tmp_path: Path, public_url: str = BASE, **overrides) -> Path:
    config = base_config(tmp_path, **{
        "smtp.port": SMTP_SINK_PORT, "owners": OWNERS,
        "web": {"port": WEB_PORT, "public_url": public_url}, **overrides})
    return write_config(tmp_path, config)


def run_cli(*args: str, input: str | None = None):
    """`textback ARGS` (CliRunner) in a thread: the command runs its own event loop."""
    return CliRunner().invoke(main, list(args), input=input)


async def set_passwords(config_path: Path) -> None:
    for owner, password in PASSWORDS.items():
        result = await asyncio.to_thread(run_cli, "passwd", "-c", str(config_path), owner,
                                         input=password + "\n")
        assert result.exit_code == 0, result.output


@asynccontextmanager
async def web_daemon(config_path: Path):
    daemon = Daemon(load(config_path))
    async with in_process(daemon):
        yield daemon


class Client:
    """A browser without JavaScript: keeps cookies, follows nothing by itself."""

    def __init__(self, session: aiohttp.ClientSession):
        self.session = session

    async def get(self, path: str, **kwargs) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.session.get(BASE + path, allow_redirects=False, **kwargs) as response:
            return response.status, await response.text(), response

    async def post(self, path: str, data: dict, headers: dict | None = None
                   ) -> tuple[int, str, aiohttp.ClientResponse]:
        async with self.session.post(BASE + path, data=data, allow_redirects=False,
                                     headers=headers) as response:
            return response.status, await response.text(), response

    async def csrf(self, path: str) -> str:
        status, html, _ = await self.get(path)
        assert status == 200, (path, status, html)
        return form_value(html, "csrf")

    async def sign_in(self, account: str, password: str,
                      headers: dict | None = None) -> tuple[int, str]:
        token = await self.csrf("/signin")
        status, _, response = await self.post("/signin", {"csrf": token, "account": account,
                                                          "password": password, "next": "/"},
                                              headers)
        return status, response.headers.get("Location", "")

    def cookie(self, name: str) -> str | None:
        for cookie in self.session.cookie_jar:
            if cookie.key == name:
                return cookie.value
        return None


@asynccontextmanager
async def client():
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield Client(session)


class _Inputs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.values: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and "name" in attrs:
            self.values.setdefault(attrs["name"], attrs.get("value") or "")


def form_value(html: str, name: str) -> str:
    parser = _Inputs()
    parser.feed(html)
    return parser.values[name]


def link_in(text: str) -> str:
    """The sign-in link's path in an email's text."""
    return re.search(r"https?://[^/\s]+(/link/[A-Za-z0-9_.-]+)", text).group(1)


async def mails(sink, count: int, timeout: float = 10.0) -> list:
    """Wait, without blocking the loop the daemon runs on, for `count` emails at the sink."""
    async def arrived():
        return len(sink.received) >= count
    await eventually(arrived, timeout, f"{count} email(s) at the sink")
    return list(sink.received)


async def homeowner_writes(daemon: Daemon, body: str, sender: str = "+12125550123",
                           gateway_id: str | None = None) -> None:
    await daemon.receive_text(InboundText(sender=sender, recipient=BUSINESS_NUMBER, body=body,
                                          gateway_id=gateway_id or f"id-{time.monotonic_ns()}"),
                              "log")


@asynccontextmanager
async def one_reply_signed_in(tmp_path: Path, body: str, owner: str = "sam"):
    """A daemon with one homeowner text, and a client signed in as `owner`:
    (daemon, client, the conversation's id)."""
    path = web_config(tmp_path)
    await set_passwords(path)
    async with web_daemon(path) as daemon, client() as browser:
        await homeowner_writes(daemon, body)
        [row] = await daemon.store.inbox()
        assert (await browser.sign_in(owner, PASSWORDS[owner]))[0] == 303
        yield daemon, browser, row["id"]
