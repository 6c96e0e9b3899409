"""The CLI against hostile stored text and odd arguments: usage errors, never tracebacks or escapes."""

from __future__ import annotations

import asyncio

import click
import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from lab.configs import BUSINESS_NUMBER, base_config, write_config
from textback.cli import main
from textback.commands.common import visible
from textback.core.scorecard import parse_amount
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


def numeric_parameters(command: click.Command = main, path: tuple[str, ...] = ()):
    """(subcommand path, parameter) for every numeric parameter in the whole command tree."""
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from numeric_parameters(sub, (*path, name))
        return
    for param in command.params:
        if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
            yield path, param


NUMERIC = list(numeric_parameters())


def out_of_range(param: click.Parameter) -> list[str]:
    bounds = param.type
    values = ["99999999999999999999", "-99999999999999999999", "1e999", "-1e999", "nan", "inf",
              "0x10", "\u00b2", ""]
    if bounds.min is not None:
        values.append(str(bounds.min - 1))
    if bounds.max is not None:
        values.append(str(bounds.max + 1))
    return values


def test_the_tree_has_the_numeric_options_this_test_was_written_with():
    """A guard that the walk finds options at all; new ones are covered without changing this."""
    assert {(" ".join(path), param.name) for path, param in NUMERIC} >= {
        ("inbox", "limit"), ("webhooks log", "limit"), ("init", "ami_port"), ("init", "smtp_port"),
        ("selftest", "timeout")}


@pytest.mark.parametrize("path, param", NUMERIC, ids=[f"{' '.join(p)} {q.name}" for p, q in NUMERIC])
def test_every_numeric_option_has_a_range_and_refuses_what_is_outside_it(path, param):
    assert isinstance(param, click.Option), f"a numeric argument ({param.name}) has no range test"
    assert isinstance(param.type, click.types._NumberRangeBase), f"{param.opts} has no range"
    assert param.type.min is not None and param.type.max is not None, f"{param.opts} is open-ended"
    option = max(param.opts, key=len)
    for value in out_of_range(param):
        result = run(*path, f"{option}={value}")
        assert result.exit_code == 2, (value, result.output, result.exception)
        assert f"Invalid value for '{option}'" in result.output, (value, result.output)
        assert "Traceback" not in result.output


async def test_the_inbox_limit_the_issue_named_is_a_usage_error(tmp_path):
    path = await seeded(tmp_path)
    result = await asyncio.to_thread(run, "inbox", "--limit", "99999999999999999999", "-c", str(path))
    assert result.exit_code == 2 and "is not in the range 1<=x<=10000" in result.output
    result = await asyncio.to_thread(run, "inbox", "--limit", "10000", "-c", str(path))
    assert result.exit_code == 0 and HOSTILE[:4] not in result.output
