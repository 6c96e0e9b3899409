"""schemathesis against the running daemon: what the OpenAPI document calls valid is accepted.

A real daemon (in process, no AMI) serves /api/v1 on loopback; schemathesis's
own CLI reads the served document and sends requests generated from it with a
write token. The run fails on a 5xx, on an answer whose status, content type,
headers or body the document does not describe, and on a request valid under
the document's schemas answered with anything but 2xx, 404 (no such
conversation), 409 (opted out), 412 (an If-Match
that names a state the conversation no longer has) or the 422 of a check the document lists:
never a 400 for a request the document promised to take. The other way
round, a request the schemas call invalid must be refused (4xx), never acted
on: the server checks requests with the very schemas it serves. It runs once on
SQLite and once on PostgreSQL (conftest.py's `backend_storage`).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from lab.configs import base_config, write_config
from lab.harness import SMTP_SINK_PORT, in_process
from tests.budget import FACTOR
from tests.test_api import OWNERS, PORT, cli, seed
from textback.config import load
from textback.daemon import Daemon

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance,positive_data_acceptance,"
          "negative_data_rejection")
SETTINGS = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "404", "409", "412", "422"]
"""


@pytest.fixture
def config_path(tmp_path, backend_storage) -> Path:
    """test_api's daemon, with a rate limit schemathesis's pace stays under, on each backend."""
    config = base_config(tmp_path, owners=OWNERS, **{
        **backend_storage,
        "smtp.port": SMTP_SINK_PORT, "text.delay_seconds": 0,
        "web": {"port": PORT, "public_url": "https://textback.acme.example"},
        "api": {"requests_per_minute": 100_000, "burst": 10_000}})
    return write_config(tmp_path, config)


async def test_schemathesis_finds_no_answer_outside_the_document(config_path, smtp_sink, tmp_path):
    code, made = await asyncio.to_thread(cli, config_path, "token", "create", "--name", "fuzz",
                                         "--scope", "write")
    assert code == 0
    token = made.splitlines()[0]
    daemon = Daemon(load(config_path))
    async with in_process(daemon):
        conversation = await seed(daemon)
        assert conversation == 1  # the id the document's examples name
        settings = tmp_path / "schemathesis.toml"
        settings.write_text(SETTINGS)
        run = await asyncio.create_subprocess_exec(
            str(SCHEMATHESIS), "--config-file", str(settings), "--no-color", "run",
            f"http://127.0.0.1:{PORT}/api/v1/openapi.json",
            "--header", f"Authorization: Bearer {token}",
            "--mode", "all", "--phases", "examples,coverage,fuzzing",
            "--checks", CHECKS, "--max-examples", str(30 * FACTOR), "--max-time", str(45 * FACTOR),
            "--workers", "1", "--seed", "7", "--generation-database", "none",
            "--request-timeout", "10", "--report-dir", str(tmp_path / "report"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path)
        output, _ = await asyncio.wait_for(run.communicate(), 240 * FACTOR)
    text = output.decode("utf-8", "replace")
    assert run.returncode == 0, text[-6000:]
    assert "No issues found" in text or "passed" in text, text[-3000:]
