"""JSON from strangers, read within limits: a document a parser can choke on is a ValueError.

`json.loads` recurses once per nesting level, so a body of a few kilobytes of
`[[[[...` raises RecursionError deep in the parser (or exhausts the stack of
the thread that reads it); a number of thousands of digits costs quadratic
time to convert; `NaN` and `1e999` are not JSON numbers at all; a key given
twice means different things to different readers; a lone surrogate escape
(`"\\ud800"`) makes a string that cannot be written as UTF-8 to a database,
a log or an email. `loads` refuses each before anything acts on it, with a
`NotReadable` (a ValueError), so every edge that already answers a ValueError
with 400 keeps doing so. Long strings and many keys are bounded by the body
size limit each edge enforces before reading (api.max_body_bytes, the
gateways' webhook limit).
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32  # no document textback reads nests deeper than a handful of levels
MAX_NUMBER_CHARS = 40  # a job value, a count, a timestamp: far fewer digits than this

# Strings are skipped whole (a bracket inside one is text), brackets are counted.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class NotReadable(ValueError):
    """A JSON document outside the limits, or not JSON at all."""


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in `text`, without parsing it (no recursion)."""
    depth = deepest = 0
    for token in _TOKENS.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif bracket in ("]", "}"):
            depth -= 1
    return deepest


def _number(kind: type):
    def parse(raw: str):
        if len(raw) > MAX_NUMBER_CHARS:
            raise NotReadable(f"a number of {len(raw)} characters (at most {MAX_NUMBER_CHARS})")
        value = kind(raw)
        if kind is float and value in (float("inf"), float("-inf")):
            raise NotReadable("a number too large for a float")
        return value
    return parse


def _constant(name: str):
    raise NotReadable(f"{name} is not a JSON number")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    made: dict[str, Any] = {}
    for key, value in pairs:
        if key in made:
            raise NotReadable(f"the key {key[:40]!r} appears twice")
        made[key] = value
    return made


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """The document in `raw` (UTF-8 when bytes), or NotReadable saying what is wrong with it."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise NotReadable("not UTF-8") from None
    if nesting_depth(text) > max_depth:
        raise NotReadable(f"nested deeper than {max_depth} levels")
    try:
        value = json.loads(text, parse_int=_number(int), parse_float=_number(float),
                           parse_constant=_constant, object_pairs_hook=_pairs)
    except NotReadable:
        raise
    except ValueError as exc:  # JSONDecodeError is one; the depth was checked, so no RecursionError
        raise NotReadable(f"not JSON: {str(exc)[:80]}") from None
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise NotReadable("a string holds a lone surrogate (\\ud800 to \\udfff)") from None
    return value
