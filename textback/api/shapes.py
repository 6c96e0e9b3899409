"""The JSON API's requests and answers as values: bodies and queries checked, rows shown. No I/O.

A request that does not fit is a `BadRequest` naming the field, which the
routes answer 400. Numbers leave as E.164, times as RFC 3339 with their
offset, like the webhook events.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Mapping
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from textback.hooks.events import rfc3339
from textback.scorecard import MAX_JOB_VALUE

STAGES = ("booked", "qualified", "won", "lost", "spam")
CONTACT_CLASSES = ("lead", "client", "vendor", "staff", "blocked")
MAX_LIST = 500


class BadRequest(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class ReplyBody(_Body):
    text: str = Field(min_length=1, max_length=1600)


class OptOutBody(_Body):
    number: str = Field(min_length=1, max_length=200)


class AssignmentBody(_Body):
    owner: str = Field(min_length=1, max_length=64)


class OutcomeBody(_Body):
    stage: Literal[STAGES]  # type: ignore[valid-type]
    value: float | int | None = Field(None, ge=0, le=MAX_JOB_VALUE)
    external_ref: str | None = Field(None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _value_only_when_won(self) -> "OutcomeBody":
        if self.value is not None and self.stage != "won":
            raise ValueError("value: only a won outcome has a value")
        return self


class ContactBody(_Body):
    name: str | None = Field(None, max_length=100)
    kind: Literal[CONTACT_CLASSES] | None = Field(None, alias="class")  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _something(self) -> "ContactBody":
        if self.name is None and self.kind is None:
            raise ValueError("name: give a name, a class, or both")
        return self


def parse_body(model: type[_Body], raw: bytes) -> Any:
    """The body as `model`, or BadRequest naming the first field that is wrong."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("(body)", "not a JSON document in UTF-8") from None
    if not isinstance(data, dict):
        raise BadRequest("(body)", "must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "(body)"  # not the union member tried
        message = error["msg"].removeprefix("Value error, ")
        if ": " in message and field == "(body)":  # a model check that names its field
            field, message = message.split(": ", 1)
        raise BadRequest(field, message) from None


@dataclass(frozen=True)
class ConversationFilter:
    """The inbox's filters: whose, only unanswered ones, how many."""

    owner: str | None = None
    unanswered: bool | None = None
    limit: int = 50

    def view(self) -> str:
        """The inbox view (Store.inbox_page) that serves this filter; `keep` narrows it."""
        if self.owner is not None:
            return "mine"
        return "waiting" if self.unanswered else "open"

    def keep(self, row: Mapping[str, Any]) -> bool:
        return ((self.owner is None or row["owner_id"] == self.owner)
                and (self.unanswered is None or bool(row["unanswered"]) == self.unanswered))


def _only(query: Mapping[str, str], known: set[str]) -> None:
    for name in query:
        if name not in known:
            raise BadRequest(name, f"unknown parameter; known: {', '.join(sorted(known))}")


def _limit(query: Mapping[str, str], default: int) -> int:
    raw = query.get("limit", str(default))
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST:
        raise BadRequest("limit", f"a whole number from 1 to {MAX_LIST}")
    return int(raw)


def conversation_filter(query: Mapping[str, str], owners: set[str]) -> ConversationFilter:
    """GET /conversations?owner=&unanswered=&limit=, filtered like the inbox."""
    _only(query, {"owner", "unanswered", "limit"})
    owner = query.get("owner")
    if owner is not None and owner not in owners:
        raise BadRequest("owner", f"no owner {owner!r}")
    unanswered = query.get("unanswered")
    if unanswered not in (None, "true", "false"):
        raise BadRequest("unanswered", "true or false")
    return ConversationFilter(owner, None if unanswered is None else unanswered == "true",
                              _limit(query, 50))


_SPAN = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def calls_query(query: Mapping[str, str], now: float) -> tuple[float, int]:
    """GET /calls?since=&limit=: `since` is RFC 3339 with an offset, or an age like 6h or 2d."""
    _only(query, {"since", "limit"})
    raw = query.get("since", "1d")
    match = re.fullmatch(r"([0-9]{1,5})([mhdw])", raw)
    if match:
        since = now - int(match.group(1)) * _SPAN[match.group(2)]
    else:
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise BadRequest("since", "RFC 3339 with an offset, or an age like 30m, 6h, 2d") from None
        if moment.tzinfo is None:
            raise BadRequest("since", "a time needs its offset (Z or +hh:mm)")
        since = moment.timestamp()
    return since, _limit(query, 200)


def scorecard_period(query: Mapping[str, str], zone: str, now: float) -> tuple[float, float, str]:
    """GET /scorecard?month=YYYY-MM (default: this month) or ?from=YYYY-MM-DD&to=YYYY-MM-DD."""
    _only(query, {"month", "from", "to"})
    tz = ZoneInfo(zone)
    if "from" in query or "to" in query:
        days = []
        for name in ("from", "to"):
            try:
                days.append(datetime.strptime(query.get(name, ""), "%Y-%m-%d").replace(tzinfo=tz))
            except ValueError:
                raise BadRequest(name, "a date, YYYY-MM-DD (from and to go together)") from None
        if days[1] <= days[0]:
            raise BadRequest("to", "must be after from")
        return days[0].timestamp(), days[1].timestamp(), f"{query['from']} to {query['to']}"
    month = query.get("month") or datetime.fromtimestamp(now, tz).strftime("%Y-%m")
    try:
        first = datetime.strptime(month, "%Y-%m").replace(tzinfo=tz)
    except ValueError:
        raise BadRequest("month", "YYYY-MM") from None
    after = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
    return first.timestamp(), after.timestamp(), month


def conversation_view(row: Mapping[str, Any]) -> dict[str, Any]:
    view = {
        "id": row["id"], "caller": row["caller"], "business_number": row["business_number"],
        "owner_id": row["owner_id"], "status": row["status"], "contact_name": row["contact_name"],
        "external_ref": row["external_ref"], "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }
    if "unanswered" in row:  # an inbox row
        view.update(unanswered=bool(row["unanswered"]), last_reply=row["last_reply"],
                    last_reply_at=rfc3339(row["last_reply_at"]), missed_calls=row["missed_calls"])
    return view


def call_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "call_id": row["linkedid"], "conversation_id": row["conversation_id"],
        "business_number": row["business_number"], "caller": row["caller"],
        "caller_name": row["caller_name"], "started_at": rfc3339(row["started_at"]),
        "answered_at": rfc3339(row["answered_at"]), "ended_at": rfc3339(row["ended_at"]),
        "outcome": row["outcome"], "reason": row["reason"], "decision": row["decision"],
        "recovered": bool(row["recovered"]), "text_state": row.get("text_state"),
    }


def message_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "direction": row["direction"], "kind": row["kind"], "body": row["body"],
        "status": row["status"], "created_at": rfc3339(row["created_at"]),
        "sent_at": rfc3339(row["sent_at"]), "error": row["error"],
    }


def error_view(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    error = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}
