"""Optional intake extractors: the `textback.intake` entry-point group, and the built-in one
for an OpenAI-compatible chat endpoint the company runs itself (llama.cpp's server, vLLM,
Ollama, LocalAI...).

Off unless `intake.model:` names one. An extractor SENDS THE HOMEOWNER'S WORDS TO ITS
ENDPOINT; the rules in textback/core/intake.py read them on this server whatever is
configured here. What an extractor answers is only a suggestion: each value is checked like
a person's (textback.core.intake.correction), stored as `suggested`, shown as such, and
never outranks a fact read by the rules or set by a person.

An extractor is a class with `__init__(options, token, http)` and
`async extract(text, today) -> {field: value as a person would write it}`; the fields are
project, budget, timing, location and service_area, and it may leave out any.
"""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

from textback.core.intake import FIELDS

if TYPE_CHECKING:
    import aiohttp

GROUP = "textback.intake"


class IntakeModel(Protocol):
    def __init__(self, options: dict[str, Any], token: str | None,
                 http: aiohttp.ClientSession): ...

    async def extract(self, text: str, today: str) -> dict[str, str]: ...


class ModelFailed(Exception):
    """The extractor's endpoint did not give a usable answer (why, in words)."""


def model_class(kind: str) -> type:
    """The extractor registered as `kind` in the textback.intake group; LookupError otherwise."""
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    if kind not in found:
        raise LookupError(f"no intake extractor {kind!r} in the {GROUP} entry points "
                          f"(installed: {', '.join(sorted(found)) or 'none'})")
    return found[kind].load()


PROMPT = (
    "You read one text message a homeowner sent a remodeling company. Answer with one JSON "
    "object and nothing else. Keys, each only when the text says it: project (the kind of "
    "work: kitchen, bath, basement, addition, deck, roofing, siding, windows, whole-home, "
    "flooring; several joined by commas), budget (as written, e.g. 75k, 50k-60k, under 30k), "
    "timing (asap, a date as YYYY-MM-DD, or words like next month), location (a 5-digit ZIP "
    "code or a street address). Never take a phone number, a house number, a ZIP code or a "
    "size for a budget. Today is {today}.")


class OpenAICompatible:
    """POST {base_url}/chat/completions (the OpenAI Chat Completions shape: model, messages,
    temperature 0, response_format json_object); the reply's first choice's content is the
    JSON object of facts. Options: base_url (required, e.g. http://10.0.0.5:8080/v1), model."""

    def __init__(self, options: dict[str, Any], token: str | None, http: aiohttp.ClientSession):
        if not options.get("base_url"):
            raise ValueError("the openai intake extractor needs options.base_url")
        self._url = str(options["base_url"]).rstrip("/") + "/chat/completions"
        self._model = str(options.get("model", "default"))
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._http = http

    async def extract(self, text: str, today: str) -> dict[str, str]:
        body = {"model": self._model, "temperature": 0,
                "response_format": {"type": "json_object"},
                "messages": [{"role": "system", "content": PROMPT.format(today=today)},
                             {"role": "user", "content": text}]}
        async with self._http.post(self._url, json=body, headers=self._headers) as response:
            if response.status != 200:
                raise ModelFailed(f"the endpoint answered HTTP {response.status}")
            try:
                answer = await response.json(content_type=None)
                content = answer["choices"][0]["message"]["content"]
                facts = json.loads(content)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise ModelFailed(f"the endpoint's answer is not the JSON asked for "
                                  f"({type(exc).__name__})") from None
        if not isinstance(facts, dict):
            raise ModelFailed("the endpoint's answer is not a JSON object")
        return {name: str(value) for name, value in facts.items()
                if name in FIELDS and isinstance(value, (str, int, float)) and str(value).strip()}
