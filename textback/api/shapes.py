"""The JSON API's requests and answers as values: bodies and queries checked, rows shown. No I/O.

Requests are checked against the schemas the OpenAPI document publishes
(`textback.api.openapi`), with jsonschema: what the document calls valid is
what is accepted, so the two cannot drift. A request that does not fit is a
`BadRequest` naming the field (400); one that fits but fails a check no
schema can state (an unknown owner, too many SMS segments, 30 February) is
`Unprocessable` (422), each listed in the document. Numbers leave as E.164,
times as RFC 3339 with their offset, like the webhook events.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from sms_gateway import json_limits
from textback.api import openapi
from textback.core.events import rfc3339


class BadRequest(ValueError):
    """The request does not fit the published schemas: 400."""

    status, code = 400, "bad_request"

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Unprocessable(BadRequest):
    """The request fits the schemas but a documented check refuses it: 422 with its own code."""

    status = 422

    def __init__(self, field: str, message: str, code: str):
        super().__init__(field, message)
        self.code = code


_VALIDATORS: dict[str, Draft202012Validator] = {}


def _first_error(schema: dict[str, Any], value: Any) -> ValidationError | None:
    """The most telling way `value` fails `schema` (whose $refs name the document's
    components), or None when it fits. Each schema's validator is built once."""
    key = json.dumps(schema, sort_keys=True)
    validator = _VALIDATORS.get(key)
    if validator is None:
        validator = _VALIDATORS[key] = Draft202012Validator(
            {**schema, "components": {"schemas": openapi.SCHEMAS}})
    errors = list(validator.iter_errors(value))
    # "Give a name or a class" says more than either branch's own complaint.
    return next((e for e in errors if _one_of_fields(e)), None) or best_match(errors)


def _field(error: ValidationError, instance: Any) -> str:
    """The body field an error is about: its path, else the property a keyword names."""
    if error.absolute_path:  # a complaint from inside an anyOf has its path relative to it
        return str(error.absolute_path[0])
    if error.validator == "required" and isinstance(instance, dict):
        return next(name for name in error.validator_value if name not in instance)
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        return next(name for name in instance if name not in error.schema.get("properties", {}))
    if _one_of_fields(error):  # ContactRequest: a name or a class
        return error.validator_value[0]["required"][0]
    return "(body)"


def _one_of_fields(error: ValidationError) -> bool:
    """An anyOf whose branches each require one field: give this field or that one."""
    return (error.validator == "anyOf" and not error.path
            and all("required" in branch for branch in error.validator_value))


def _message(error: ValidationError) -> str:
    if _one_of_fields(error):
        return "give " + " or ".join(branch["required"][0] for branch in error.validator_value)
    if error.validator == "pattern" and error.validator_value == "\\S":
        return "is empty or only white space; nothing was sent"
    return error.message[:200]


def parse_body(schema_name: str, raw: bytes) -> dict[str, Any]:
    """The body, checked against the document's `schema_name`, or BadRequest naming the field."""
    try:
        data = json_limits.loads(raw)
    except json_limits.NotReadable as exc:
        raise BadRequest("(body)", f"not a JSON document in UTF-8 within the limits: {exc}") from None
    error = _first_error(openapi.SCHEMAS[schema_name], data)
    if error is not None:
        raise BadRequest(_field(error, data), _message(error))
    return data


def _query_value(parameter: dict[str, Any], raw: str) -> Any:
    """A query parameter's text as its schema's type (an integer schema reads whole numbers)."""
    if parameter["schema"].get("type") == "integer":
        if not re.fullmatch(r"-?[0-9]{1,18}", raw):
            raise BadRequest(parameter["name"], f"expected a whole number: "
                                                f"{parameter['description']}")
        return int(raw)
    return raw


def checked_query(path: str, query: Mapping[str, str]) -> dict[str, Any]:
    """The query of GET `path`, each parameter checked against its published schema."""
    parameters = {p["name"]: p for p in openapi.parameters(path)}
    for name in query:
        if name not in parameters:
            raise BadRequest(name, f"unknown parameter; known: {', '.join(sorted(parameters))}")
    values = {}
    for name, raw in query.items():
        value = _query_value(parameters[name], raw)
        if _first_error(parameters[name]["schema"], value) is not None:
            raise BadRequest(name, f"expected {parameters[name]['description']}")
        # jsonschema reads a pattern's `$` as Python does: it also matches before a final newline.
        values[name] = value.removesuffix("\n") if isinstance(value, str) else value
    return values


def checked_header(parameter: dict[str, Any], value: str) -> str:
    """A header parameter's value, checked against its published schema."""
    error = _first_error(parameter["schema"], value)
    if error is not None:
        raise BadRequest(parameter["name"], _message(error))
    return value


@dataclass(frozen=True)
class ConversationFilter:
    """The inbox's filters: whose, only unanswered ones, how many."""

    owner: str | None = None
    unanswered: bool | None = None
    limit: int = 50
    project: str = ""
    area: str = ""

    def view(self) -> str:
        """The inbox view (Store.inbox_page) that serves this filter; `keep` narrows it."""
        if self.owner is not None:
            return "mine"
        return "waiting" if self.unanswered else "open"

    def keep(self, row: Mapping[str, Any]) -> bool:
        return ((self.owner is None or row["owner_id"] == self.owner)
                and (self.unanswered is None or bool(row["unanswered"]) == self.unanswered))


def known_owner(owner: str, owners: set[str], field: str = "owner") -> str:
    if owner not in owners:
        raise Unprocessable(field, f"no owner {owner!r}", "unknown_owner")
    return owner


def conversation_filter(query: Mapping[str, str], owners: set[str]) -> ConversationFilter:
    """GET /conversations?owner=&unanswered=&limit=, filtered like the inbox."""
    values = checked_query("/conversations", query)
    owner = values.get("owner")
    if owner is not None:
        known_owner(owner, owners)
    unanswered = values.get("unanswered")
    return ConversationFilter(owner, None if unanswered is None else unanswered == "true",
                              values.get("limit", 50), values.get("project", ""),
                              values.get("area", ""))


_SPAN = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _moment(name: str, text: str) -> datetime:
    """A time or day the schema's pattern let through, or Unprocessable if it does not exist."""
    try:
        return datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    except ValueError:
        raise Unprocessable(name, "no such day or time", "no_such_time") from None


def calls_query(query: Mapping[str, str], now: float) -> tuple[float, int]:
    """GET /calls?since=&limit=: `since` is RFC 3339 with an offset, or an age like 6h or 2d."""
    values = checked_query("/calls", query)
    raw = values.get("since", "1d")
    age = re.fullmatch(r"([0-9]{1,5})([mhdw])", raw)
    if age:
        since = now - int(age.group(1)) * _SPAN[age.group(2)]
    else:
        moment = _moment("since", raw)
        try:
            since = moment.timestamp()
        except (OverflowError, ValueError):  # year 1 with an offset east of UTC
            raise Unprocessable("since", "no such time", "no_such_time") from None
    return since, values.get("limit", 200)


def scorecard_period(query: Mapping[str, str], zone: str, now: float) -> tuple[float, float, str]:
    """GET /scorecard?month=YYYY-MM (default: this month) or ?from=YYYY-MM-DD&to=YYYY-MM-DD."""
    values = checked_query("/scorecard", query)
    tz = ZoneInfo(zone)
    if "from" in values or "to" in values:
        if "month" in values:
            raise Unprocessable("month", "give a month, or from and to, not both", "two_periods")
        for name in ("from", "to"):
            if name not in values:
                raise Unprocessable(name, "from and to go together", "incomplete_period")
        days = [_moment(name, values[name]).replace(tzinfo=tz) for name in ("from", "to")]
        if days[1] <= days[0]:
            raise Unprocessable("to", "must be after from", "empty_period")
        return (days[0].timestamp(), days[1].timestamp(),
                f"{values['from']} to {values['to']}")
    month = values.get("month") or datetime.fromtimestamp(now, tz).strftime("%Y-%m")
    first = datetime.strptime(month, "%Y-%m").replace(tzinfo=tz)
    after = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
    return first.timestamp(), after.timestamp(), month


def conversation_view(row: Mapping[str, Any]) -> dict[str, Any]:
    view = {
        "id": row["id"], "caller": row["caller"], "business_number": row["business_number"],
        "owner_id": row["owner_id"], "status": row["status"], "contact_name": row["contact_name"],
        "external_ref": row["external_ref"], "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
        "intake_labels": row["intake_labels"], "intake_project": row["intake_project"],
        "intake_area": row["intake_area"],
    }
    if "unanswered" in row:  # an inbox row
        view.update(unanswered=bool(row["unanswered"]), last_reply=row["last_reply"],
                    last_reply_at=rfc3339(row["last_reply_at"]), missed_calls=row["missed_calls"])
    return view


def intake_entry_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"field": row["field"], "value": row["value"], "label": row["label"],
            "evidence": row["evidence"], "why": row["why"], "source": row["source"],
            "author": row["author"], "cause": row["cause"], "message_id": row["message_id"],
            "at": rfc3339(row["at"])}


def call_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "call_id": row["linkedid"], "conversation_id": row["conversation_id"],
        "business_number": row["business_number"], "caller": row["caller"],
        "caller_name": row["caller_name"], "started_at": rfc3339(row["started_at"]),
        "answered_at": rfc3339(row["answered_at"]), "ended_at": rfc3339(row["ended_at"]),
        "outcome": row["outcome"], "reason": row["reason"], "decision": row["decision"],
        "recovered": bool(row["recovered"]), "text_state": row.get("text_state"),
    }


def message_view(row: Mapping[str, Any], media: list[dict[str, Any]] = (),
                 link: Callable[[int], tuple[str, float]] | None = None) -> dict[str, Any]:
    """A message; `media` its rows, `link` a signed link (and its expiry) for a kept one."""
    return {
        "id": row["id"], "direction": row["direction"], "kind": row["kind"], "body": row["body"],
        "status": row["status"], "created_at": rfc3339(row["created_at"]),
        "sent_at": rfc3339(row["sent_at"]), "error": row["error"],
        "media": [media_view(item, link) for item in media],
    }


def media_view(item: Mapping[str, Any],
               link: Callable[[int], tuple[str, float]] | None) -> dict[str, Any]:
    url, expires = link(item["id"]) if link and item["state"] == "kept" else (None, None)
    return {"id": item["id"], "content_type": item["declared_type"],
            "size": item["size"] if item["size"] is not None else item["declared_size"],
            "state": item["state"], "shown": bool(item["shown"]), "note": item["note"],
            "url": url, "url_expires_at": rfc3339(expires)}


def error_view(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    error = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}
