"""The CLI against hostile stored text and odd arguments: usage errors, never tracebacks or escapes."""

from __future__ import annotations

import asyncio

import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from lab.configs import BUSINESS_NUMBER, base_config, write_config
from textback.cli import main, visible
from textback.scorecard import parse_amount
from textback.store import Store
from tests.budget import examples

CALLER = "+12125550141"
HOSTILE = ("\x1b]0;pwned\x07title \x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\ "
           "real\rfake \x08\x08xx \u202egnp.exe \x9b31m")


async def seeded(tmp_path):
    path = write_config(tmp_path, base_config(tmp_path))
    store = await Store.open(tmp_path / "textback.db")
    await store.record_inbound(CALLER, BUSINESS_NUMBER, HOSTILE, "log", None, "dana")
    await store.close()
    return path


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("command", [["inbox"], ["thread", CALLER]])
async def test_homeowner_text_never_drives_the_terminal(tmp_path, command):
    path = await seeded(tmp_path)
    result = await asyncio.to_thread(run, *command, "-c", str(path))
    assert result.exit_code == 0, result.output
    for control in ("\x1b", "\x07", "\r", "\x08", "\u202e", "\x9b"):
        assert control not in result.output
    assert "\\x1b]0;pwned\\x07title" in result.output
    if command[0] == "thread":  # the inbox shows the first 60 characters
        assert "\\u202egnp.exe" in result.output and "real\\rfake" in result.output


@pytest.mark.parametrize("args, says", [
    (["calls", "--since", "\u00b2d"], "use a number and a unit"),
    (["calls", "--since", "99999999999d"], "use a number and a unit"),
    (["reply", CALLER, ""], "the text is empty"),
    (["reply", CALLER, "   "], "the text is empty"),
    (["outcome", CALLER, "won", "9" * 400], "at most 1,000,000,000"),
    (["outcome", CALLER, "won", "1e999"], "at most 1,000,000,000"),
])
async def test_odd_arguments_get_a_usage_error(tmp_path, args, says):
    path = await seeded(tmp_path)
    result = await asyncio.to_thread(run, *args, "-c", str(path))
    assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output


@settings(max_examples=examples(300), deadline=None)
@given(st.text())
def test_visible_text_has_no_control_characters(text):
    shown = visible(text)
    assert shown.isprintable() or shown == ""
    assert visible(shown.replace("\\", "")) == shown.replace("\\", "")  # printable stays as it is


@settings(max_examples=examples(300), deadline=None)
@given(st.text(max_size=40))
def test_any_amount_text_is_a_sane_value_or_none(text):
    value = parse_amount(text)
    assert value is None or 0 < value <= 1e9
