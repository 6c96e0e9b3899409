"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json. No I/O.

The test suite validates every answer the API gives against the schemas
here, so this document and the handlers cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from textback.api.shapes import CONTACT_CLASSES, MAX_LIST, STAGES
from textback.scorecard import MAX_JOB_VALUE

E164 = {"type": "string", "pattern": "^\\+[1-9][0-9]{6,14}$"}
TIME = {"type": "string", "format": "date-time"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties,
            "required": [name for name in properties if name not in optional]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": _object({
        "code": {"type": "string"}, "message": {"type": "string"},
        "field": {"type": "string", "description": "the body field or query parameter at fault"},
    }, optional=("field",))}),
    "Conversation": _object({
        "id": {"type": "integer"}, "caller": E164, "business_number": E164,
        "owner_id": {"type": "string"}, "status": {"enum": ["open", "closed"]},
        "contact_name": {"type": "string"}, "external_ref": _nullable({"type": "string"}),
        "created_at": TIME, "updated_at": TIME,
        "unanswered": {"type": "boolean", "description": "inbox rows: the last reply has no answer"},
        "last_reply": _nullable({"type": "string"}), "last_reply_at": _nullable(TIME),
        "missed_calls": {"type": "integer"},
    }, optional=("unanswered", "last_reply", "last_reply_at", "missed_calls")),
    "Call": _object({
        "call_id": {"type": "string"}, "conversation_id": _nullable({"type": "integer"}),
        "business_number": E164, "caller": _nullable(E164), "caller_name": {"type": "string"},
        "started_at": TIME, "answered_at": _nullable(TIME), "ended_at": TIME,
        "outcome": {"enum": ["answered", "missed"]}, "reason": {"type": "string"},
        "decision": {"type": "string"}, "recovered": {"type": "boolean"},
        "text_state": _nullable({"type": "string"}),
    }),
    "Message": _object({
        "id": {"type": "integer"}, "direction": {"enum": ["in", "out"]}, "kind": {"type": "string"},
        "body": {"type": "string"}, "status": {"type": "string"}, "created_at": TIME,
        "sent_at": _nullable(TIME), "error": {"type": "string"},
    }),
    "ConversationList": _object({"conversations": {"type": "array", "items": _ref("Conversation")}}),
    "OneConversation": _object({"conversation": _ref("Conversation")}),
    "Thread": _object({"conversation": _ref("Conversation"),
                       "calls": {"type": "array", "items": _ref("Call")},
                       "messages": {"type": "array", "items": _ref("Message")}}),
    "CallList": _object({"calls": {"type": "array", "items": _ref("Call")}}),
    "Scorecard": _object({"period": {"type": "string"}, "numbers": {"type": "array", "items": _object({
        "business_number": E164, "missed_calls": {"type": "integer"},
        "missed_by_reason": {"type": "object", "additionalProperties": {"type": "integer"}},
        "texts_sent": {"type": "integer"}, "segments_sent": {"type": "integer"},
        "replies": {"type": "integer"}, "reply_rate": _nullable({"type": "number"}),
        "median_minutes_reply_to_human_answer": _nullable({"type": "number"}),
        "booked": {"type": "integer"}, "qualified": {"type": "integer"}, "won": {"type": "integer"},
        "won_value": {"type": "number"}, "lost": {"type": "integer"}, "opt_outs": {"type": "integer"},
        "reply_rate_by_template": {"type": "object", "additionalProperties": {"type": "number"}},
    })}}),
    "ReplyRequest": _object({"text": {"type": "string", "minLength": 1, "maxLength": 1600}}),
    "ReplyQueued": _object({"status": {"const": "queued"}, "outbox_id": {"type": "integer"},
                            "conversation_id": {"type": "integer"}}),
    "AssignmentRequest": _object({"owner": {"type": "string", "description": "an owner id"}}),
    "OptOutRequest": _object({"number": {"type": "string", "minLength": 1, "maxLength": 200,
                                         "description": "any form of the number: E.164, "
                                                        "national, a tel: or sip: URI"}}),
    "OptedOut": _object({"number": E164, "opted_out": {"const": True},
                         "already": {"type": "boolean",
                                     "description": "it was suppressed before this request"}}),
    "OutcomeRequest": _object({
        "stage": {"enum": list(STAGES)},
        "value": _nullable({"type": "number", "minimum": 0, "maximum": MAX_JOB_VALUE,
                            "description": "the job value; only with won"}),
        "external_ref": _nullable({"type": "string", "minLength": 1, "maxLength": 200,
                                   "description": "the CRM's reference, kept on the conversation"}),
    }, optional=("value", "external_ref")),
    "ContactRequest": {**_object({
        "name": _nullable({"type": "string", "maxLength": 100}),
        "class": _nullable({"enum": list(CONTACT_CLASSES)}),
    }, optional=("name", "class")), "minProperties": 1},
}


def _answer(status: str, description: str, schema: str) -> dict[str, Any]:
    return {status: {"description": description,
                     "content": {"application/json": {"schema": _ref(schema)}}}}


ERRORS_READ = {**_answer("400", "a query parameter is wrong (named in error.field)", "Error"),
               **_answer("401", "no token, or an unknown or revoked one", "Error"),
               **_answer("429", "too many requests for this token (see Retry-After)", "Error")}
ERRORS_WRITE = {**ERRORS_READ,
                **_answer("400", "the body is wrong (the field is named in error.field)", "Error"),
                **_answer("403", "a read token cannot write", "Error"),
                **_answer("404", "no such conversation", "Error"),
                **_answer("413", "the body is over the size limit", "Error"),
                **_answer("422", "the Idempotency-Key was used for a different request", "Error")}
ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
               "description": "a write sent again with the same key gets the first answer",
               "schema": {"type": "string", "minLength": 1, "maxLength": 200}}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


def _write(summary: str, request: str, ok: dict[str, Any], extra: dict[str, Any] | None = None):
    return {"post": {
        "summary": summary, "parameters": [ID, IDEMPOTENCY],
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": _ref(request)}}},
        "responses": {**ok, **ERRORS_WRITE, **(extra or {})}}}


def document() -> dict[str, Any]:
    limit = _query("limit", "at most this many", {"type": "integer", "minimum": 1,
                                                   "maximum": MAX_LIST})
    return {
        "openapi": "3.1.0",
        "info": {"title": "textback API", "version": "1",
                 "description": "Missed-call leads: conversations, calls, the scorecard; replies, "
                                "assignments, outcomes and contacts written back from a CRM."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "a token from `textback token create`"}}},
        "paths": {
            "/conversations": {"get": {
                "summary": "Open conversations, filtered like the inbox",
                "parameters": [_query("owner", "only this owner's", {"type": "string"}),
                               _query("unanswered", "only those waiting for an answer (true) or not",
                                      {"enum": ["true", "false"]}), limit],
                "responses": {**_answer("200", "the conversations", "ConversationList"),
                              **ERRORS_READ}}},
            "/conversations/{id}": {"get": {
                "summary": "One conversation with its calls and texts", "parameters": [ID],
                "responses": {**_answer("200", "the thread", "Thread"), **ERRORS_READ,
                              **_answer("404", "no such conversation", "Error")}}},
            "/calls": {"get": {
                "summary": "Inbound calls, newest first",
                "parameters": [_query("since", "RFC 3339 with an offset, or an age: 30m, 6h, 2d, 1w "
                                      "(default 1d)", {"type": "string"}), limit],
                "responses": {**_answer("200", "the calls", "CallList"), **ERRORS_READ}}},
            "/scorecard": {"get": {
                "summary": "The scorecard per business number",
                "parameters": [_query("month", "YYYY-MM (default: this month)", {"type": "string"}),
                               _query("from", "first day, YYYY-MM-DD", {"type": "string"}),
                               _query("to", "the day after the last, YYYY-MM-DD", {"type": "string"})],
                "responses": {**_answer("200", "the figures", "Scorecard"), **ERRORS_READ}}},
            "/conversations/{id}/reply": _write(
                "Text the caller through the outbox (opt-outs and the length limit apply)",
                "ReplyRequest", _answer("202", "queued; the daemon sends it", "ReplyQueued"),
                _answer("409", "the caller opted out; nothing was sent", "Error")),
            "/conversations/{id}/assignment": _write(
                "Give the conversation to an owner", "AssignmentRequest",
                _answer("200", "the conversation", "OneConversation")),
            "/conversations/{id}/outcome": _write(
                "Record booked, qualified, won (with its value), lost or spam", "OutcomeRequest",
                _answer("200", "the conversation", "OneConversation")),
            "/optouts": {"post": {
                "summary": "Suppress a number: no text of any kind, from any business number, "
                           "goes to it again (revoke-all); the channel is kept in the consent "
                           "ledger as api:<token name>",
                "parameters": [IDEMPOTENCY],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref("OptOutRequest")}}},
                "responses": {**_answer("200", "suppressed", "OptedOut"), **ERRORS_WRITE}}},
            "/conversations/{id}/contact": _write(
                "Name or class the caller", "ContactRequest",
                _answer("200", "the conversation", "OneConversation")),
        },
    }
