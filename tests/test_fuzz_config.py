"""Hostile config files: a clear error naming the file and line, fast, never a traceback or a hang.

`make fuzz` runs the property tests here with a larger budget.
"""

from __future__ import annotations

import time

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from lab.configs import base_config, write_config
from textback.config import ConfigError, load
from tests.budget import examples


def problems_of(path) -> list[tuple[str, str]]:
    """The problems load() names; it must spend little CPU on them (this process's CPU time,
    so that a busy machine's other work does not count: an expansion bomb takes minutes)."""
    started = time.process_time()
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert time.process_time() - started < 2, "a hostile config must be refused quickly"
    return caught.value.problems


def good_yaml(tmp_path) -> str:
    return yaml.safe_dump(base_config(tmp_path), sort_keys=False)


def test_a_billion_laughs_is_refused(tmp_path):
    text = good_yaml(tmp_path)
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]" for n in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text(text + "\n".join(lines) + "\n")
    [(where, message)] = problems_of(path)  # 9 x 9: 81 aliases, 9**10 values once expanded
    assert where.startswith("line ") and "expand to more than 20,000 values" in message
    path.write_text(text + "base: &base 1\n" + "".join(f"k{n}: *base\n" for n in range(150)))
    [(where, message)] = problems_of(path)
    assert where == "(file)" and message == "150 aliases (*name); a config uses at most 100"


def test_a_merge_key_bomb_within_the_alias_budget_is_refused_by_its_expansion(tmp_path):
    lines = ["x0: &x0 {" + ", ".join(f"k{i}: v" for i in range(40)) + "}"]
    lines += [f"x{n}: &x{n} {{" + ", ".join(f"m{i}: *x{n - 1}" for i in range(8)) + "}" for n in range(1, 8)]
    path = tmp_path / "merge.yaml"
    path.write_text(good_yaml(tmp_path) + "\n".join(lines) + "\n")
    [(where, message)] = problems_of(path)
    assert "expand to more than 20,000 values" in message and where.startswith("line ")


def test_recursive_aliases_deep_nesting_and_bad_bytes_name_their_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(good_yaml(tmp_path) + "loop: &loop [1, *loop]\n")
    [(where, message)] = problems_of(path)
    assert "refers to a node that contains it" in message and where.startswith("line ")
    path.write_text(good_yaml(tmp_path) + "deep: " + "[" * 5000 + "]" * 5000 + "\n")
    [(_, message)] = problems_of(path)
    assert "nested too deeply" in message
    text = good_yaml(tmp_path)
    path.write_bytes(text.encode() + b"extra: caf\xe9\n")
    [(where, message)] = problems_of(path)
    assert where == f"line {text.count(chr(10)) + 1}" and "not UTF-8" in message
    path.write_bytes(b"#" * (2 << 20))
    [(where, message)] = problems_of(path)
    assert where == "(file)" and "at most 1,048,576" in message


def test_a_second_section_with_the_same_name_is_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    text = good_yaml(tmp_path)
    path.write_text(text + "ami:\n  host: 10.9.9.9\n")
    [(where, message)] = problems_of(path)
    first = 1 + text.splitlines().index("ami:")
    assert where == f"line {text.count(chr(10)) + 1}"
    assert message == f"ami: given twice (first on line {first})"


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_infinite_numbers_are_refused(tmp_path, value):
    path = write_config(tmp_path, base_config(tmp_path))
    path.write_text(path.read_text().replace("delay_seconds: 30", f"delay_seconds: {value}"))
    [(where, message)] = problems_of(path)
    assert where.startswith("text.delay_seconds (line ") and "finite" in message


MUTATIONS = st.sampled_from(["drop", "rename", "retype", "alias", "duplicate"])


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(MUTATIONS, st.integers(0, 10_000), st.sampled_from(
    [None, 0, -1, 1e308, "", "x" * 300, [], {}, "\x00", "+1", "*", True])), max_size=4))
def test_any_mutation_of_a_good_config_loads_or_names_its_problems(tmp_path, changes):
    lines = good_yaml(tmp_path).splitlines()
    for change, at, value in changes:
        index = at % len(lines)
        key, sep, rest = lines[index].partition(":")
        if change == "drop":
            del lines[index]
        elif change == "rename" and sep:
            lines[index] = key + "x" + sep + rest
        elif change == "retype" and sep:
            lines[index] = key + ": " + yaml.safe_dump(value, default_flow_style=True).splitlines()[0]
        elif change == "alias" and sep:
            lines[index] = key + ": *nowhere"
        elif change == "duplicate":
            lines.insert(index, lines[index])
        if not lines:
            lines = ["{}"]
    path = tmp_path / "mutated.yaml"
    path.write_text("\n".join(lines) + "\n")
    try:
        load(path)
    except ConfigError as exc:
        assert exc.problems and all(where and message for where, message in exc.problems)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_any_bytes_load_or_name_their_problems(tmp_path, data):
    path = tmp_path / "noise.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError):
        load(path)


@pytest.mark.parametrize("text", ["=", "x: !!python/object/apply:os.system ['true']", "x: !!value"])
def test_tags_no_safe_constructor_knows_name_their_line(tmp_path, text):
    path = tmp_path / "tag.yaml"
    path.write_text(text + "\n")
    [(where, message)] = problems_of(path)
    assert where == "line 1" and message.startswith("not valid YAML")
