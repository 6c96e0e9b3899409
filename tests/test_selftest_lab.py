"""`textback selftest` on the real lab PBX: the test call, its text, the report.

The daemon runs in-process against the lab's Asterisk; `textback selftest`
runs as a real process that asks it for a run. The SMS provider is a real
loopback HTTP server (answering 200, or 500 when broken on purpose) and the
admin's mail goes to a real aiosmtpd sink.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from lab import configs
from lab.configs import AGI_ROUTE, AGI_ROUTED_NUMBER, HOMEOWNER, agi_routed_hours
from lab.harness import eventually, in_process
from tests.providers.common import serving
from textback.config import load
from textback.daemon import Daemon

pytestmark = pytest.mark.lab

INSTALLER = "+12125550177"  # the installer's own mobile: the self-test texts it
ADMIN = "it@acme.example"


@dataclass
class Provider:
    """An SMS API on loopback: 200 with an id, or `status` with an error."""

    status: int = 200
    taken: list[dict] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/send", self._send)
        return app

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.taken.append(body)
        if self.status != 200:
            return web.Response(status=self.status, text="internal error")
        return web.json_response({"id": f"msg-{len(self.taken)}"})


async def textback(*args: str) -> tuple[int, str]:
    """A `textback` command as a real process, beside the in-process daemon; (exit code, output)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "textback", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode, output.decode()


def selftest_config(tmp_path, lab_pbx, url: str, **overrides):
    numbers = configs.base_config(tmp_path)["numbers"] + [AGI_ROUTE]
    return configs.lab_config(tmp_path, lab_pbx, **{
        "numbers": numbers, "hours": agi_routed_hours(),
        "admin_email": ADMIN,
        "gateway": {"type": "http", "http": {"url": f"{url}/send", "timeout_seconds": 5}},
        "selftest": {"recipient": INSTALLER, "caller": HOMEOWNER, "number": AGI_ROUTED_NUMBER,
                     "ring_seconds": 5, "gateway_seconds": 10,
                     "ami": {"username": lab_pbx.selftest_user,
                             "secret": {"file": str(lab_pbx.selftest_secret_file)}}},
        **overrides})


async def run_selftest(tmp_path, lab_pbx, provider: Provider, meanwhile=None, **overrides):
    """Run the daemon and `textback selftest` against it, and `meanwhile()` beside them;
    (exit code, output, daemon store rows)."""
    async with serving(provider.app()) as url:
        path = selftest_config(tmp_path, lab_pbx, url, **overrides)
        daemon = Daemon(load(path))
        async with in_process(daemon):
            await daemon.ami.wait_logged_in(10)
            command = asyncio.ensure_future(textback("selftest", "-c", str(path)))
            if meanwhile is not None:
                await meanwhile()
            code, output = await command
            store = daemon.store
            rows = {
                "last": await store.last_selftest(),
                "calls": [dict(r) for r in await store._all("SELECT * FROM calls")],
                "conversations": [dict(r) for r in await store._all("SELECT * FROM conversations")],
                "assignments": [dict(r) for r in await store._all("SELECT * FROM assignments")],
                "outbox": [dict(r) for r in await store._all("SELECT * FROM outbox")],
                "report": await store.report_rows(0, 1e12),
                "inbox": await store.inbox(),
                "calls_command": (await textback("calls", "-c", str(path)))[1],
            }
    return code, output, rows


def step_lines(output: str) -> dict[str, str]:
    """The status of each numbered step in the printed report: {"ami": "PASS", ...}."""
    found = {}
    for line in output.splitlines():
        match = re.match(r"^(PASS|FAIL|SKIPPED|NOT RUN)\s.*?\d\. (\w+):", line)
        if match:
            found[match[2]] = match[1]
    return found


REPLY_MAIL = {"domain": "reply.acme.example", "listen_host": "127.0.0.1", "listen_port": 2526}


async def test_selftest_passes_and_is_marked_everywhere(tmp_path, lab_pbx, smtp_sink):
    provider = Provider()

    async def installer_replies() -> None:
        """The installer answers the self-test's text from their mobile, as the carrier delivers it."""
        await eventually(lambda: asyncio.sleep(0, provider.taken), 30, "the self-test's text")
        assert await asyncio.to_thread(lab_pbx.send_sms, INSTALLER, AGI_ROUTED_NUMBER, "Got it") < 300

    code, output, rows = await run_selftest(
        tmp_path, lab_pbx, provider, installer_replies, reply_mail=REPLY_MAIL,
        **{"selftest.expect_reply_minutes": 1})
    assert code == 0, output
    steps = step_lines(output)
    assert steps == {"ami": "PASS", "trunk": "PASS", "call": "PASS", "missed": "PASS",
                     "template": "PASS", "gateway": "PASS", "reply": "PASS",
                     "reply_mail": "PASS"}, output
    assert "reason not_dialled" in output and "context from-carrier" in output
    assert f"{INSTALLER} replied 'Got it'" in output
    assert "refused selftest-forger@forged.invalid (550" in output
    # The text went to the installer's mobile, from the number called, and says what it is.
    assert [(t["to"], t["from"]) for t in provider.taken] == [(INSTALLER, AGI_ROUTED_NUMBER)]
    assert provider.taken[0]["text"].startswith("[textback self-test] Hi, this is Acme Remodeling")
    # Marked as a self-test: no owner, no assignment, not in the scorecard's rows.
    (call,) = rows["calls"]
    assert (call["selftest"], call["outcome"], call["reason"], call["caller"]) == (
        1, "missed", "not_dialled", HOMEOWNER)
    (conversation,) = rows["conversations"]
    assert (conversation["selftest"], conversation["owner_id"], conversation["caller"]) == (
        1, "", INSTALLER)
    assert rows["assignments"] == []
    assert rows["report"]["calls"] == [] and rows["report"]["messages"] == []
    assert rows["report"]["outcomes"] == []  # the reply-mail step's #lost counts nowhere
    assert rows["inbox"] == []
    assert "self-test, sent" in rows["calls_command"]
    last = rows["last"]
    assert last["passed"] == 1 and last["finished_at"] >= last["started_at"]
    assert [s["status"] for s in json.loads(last["steps"])] == ["pass"] * 8
    # The admin got the reply's alert (with no Reply-To: nobody answers a self-test) and the report.
    alert, report = smtp_sink.wait_for(2, 10)
    assert [alert.recipients, report.recipients] == [[ADMIN], [ADMIN]]
    assert "Got it" in alert.message.get_body(("plain",)).get_content()
    assert alert.message["Reply-To"] is None
    assert report.message["Subject"].startswith("textback self-test passed")
    assert "PASS" in report.message.get_content()


async def test_a_wrong_trunk_name_fails_at_the_trunk_step(tmp_path, lab_pbx, smtp_sink):
    provider = Provider()
    code, output, rows = await run_selftest(tmp_path, lab_pbx, provider,
                                            **{"inbound.trunks": ["carier"]})
    assert code == 1, output
    steps = step_lines(output)
    assert (steps["ami"], steps["trunk"], steps["call"], steps["gateway"]) == (
        "PASS", "FAIL", "NOT RUN", "NOT RUN"), output
    assert "'carier' is not a PJSIP endpoint" in output
    assert provider.taken == [] and rows["calls"] == []
    assert rows["last"]["passed"] == 0
    (mail,) = smtp_sink.wait_for(1, 10)
    assert mail.message["Subject"].startswith("textback self-test FAILED at trunk")


async def test_a_gateway_answering_500_fails_at_the_gateway_step(tmp_path, lab_pbx, smtp_sink):
    provider = Provider(status=500)
    code, output, rows = await run_selftest(tmp_path, lab_pbx, provider)
    assert code == 1, output
    steps = step_lines(output)
    assert [steps[name] for name in ("ami", "trunk", "call", "missed", "template", "gateway",
                                     "reply", "reply_mail")] == [
        "PASS", "PASS", "PASS", "PASS", "PASS", "FAIL", "NOT RUN", "NOT RUN"], output
    assert "500" in output
    assert len(provider.taken) == 1
    # The failed text is ended, not retried for an hour, and no owner is emailed about it.
    (row,) = rows["outbox"]
    assert row["state"] == "failed"
    smtp_sink.wait_for(1, 10)
    await asyncio.sleep(0.5)
    assert [m.message["Subject"] for m in smtp_sink.received] == [
        "textback self-test FAILED at gateway (Acme Remodeling)"]


async def test_with_ring_phones_the_test_call_rings_the_phones_for_real(tmp_path, lab_pbx, smtp_sink):
    ringing = await asyncio.to_thread(lab_pbx.phone, "office2", "noanswer")  # the route when open
    try:
        code, output, rows = await run_selftest(tmp_path, lab_pbx, Provider(), **{
            "selftest.ring_phones": True, "selftest.ring_seconds": 8})
        assert code == 0, output
        assert "missed, reason no_answer" in output
        await asyncio.to_thread(ringing.wait_success, 20)  # it got the INVITE, then the CANCEL
    finally:
        ringing.kill()
    assert [(c["selftest"], c["reason"]) for c in rows["calls"]] == [(1, "no_answer")]
