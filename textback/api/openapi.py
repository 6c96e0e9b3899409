"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json. No I/O.

The one source of truth of what the API accepts: `textback.api.shapes`
checks every request body, query parameter and header against the very
schemas published here (400 when one does not fit), and answers 422 only
for the checks a schema cannot state, each listed in the document under its
operation's 422. The test suite validates every answer against the schemas
of its responses, and runs schemathesis against the running daemon.
"""

from __future__ import annotations

from typing import Any

from textback.core.intake import FIELDS as INTAKE_FIELDS
from textback.core.scorecard import MAX_JOB_VALUE
from textback.config import CONTACT_CLASSES

STAGES = ("booked", "qualified", "won", "lost", "spam")
MAX_LIST = 500
MAX_REPLY_CHARS = 1600

E164 = {"type": "string", "pattern": "^\\+[1-9][0-9]{6,14}$"}
TIME = {"type": "string", "format": "date-time"}
# RFC 3339 as a pattern, so a checker needs no format plug-in (seconds 00-59, an offset always).
RFC3339 = ("^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]"
           ":[0-5][0-9](\\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")
AGE = "^[0-9]{1,5}[mhdw]$"
MONTH = "^2[0-9]{3}-(0[1-9]|1[0-2])$"  # years 2000 to 2999: a month after the last still exists
DAY = "^2[0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
OWNER_ID = {"type": "string", "minLength": 1, "maxLength": 64, "description": "an owner id"}


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
        "intake_labels": {"type": "string", "description": "the intake facts as the inbox "
                                                           "labels them (\"Kitchen · ~$75k · "
                                                           "11215 (in area) · Tue\")"},
        "intake_project": _nullable({"type": "string", "description": "project type(s), "
                                                                       "comma-separated"}),
        "intake_area": _nullable({"enum": ["in", "out"]}),
    }, optional=("unanswered", "last_reply", "last_reply_at", "missed_calls")),
    "IntakeFact": _object({
        "value": {"type": "string", "description": "canonical: a project type (several joined "
                  "by commas); a budget 75000, ~75000, 50000-60000, <30000 or >100000; a timing "
                  "asap, flexible, a date, YYYY-MM, YYYY or start/end; a ZIP, a street line or "
                  "'area code NNN'; in or out"},
        "label": {"type": "string"}, "evidence": {"type": "string",
                                                  "description": "the words it came from"},
        "why": {"type": "string"},
        "source": {"enum": ["extracted", "suggested", "person"],
                   "description": "a person's value always wins over the others"},
    }),
    "Intake": _object({name: _ref("IntakeFact") for name in INTAKE_FIELDS},
                      optional=INTAKE_FIELDS),
    "IntakeEntry": _object({
        "field": {"enum": list(INTAKE_FIELDS)}, "value": {"type": "string"},
        "label": {"type": "string"}, "evidence": {"type": "string"}, "why": {"type": "string"},
        "source": {"enum": ["extracted", "suggested", "person"]},
        "author": {"type": "string", "description": "textback, or who set it (email:dana, "
                                                    "web:dana, api:<token name>)"},
        "cause": {"type": "string", "description": "the text that caused it: the homeowner's "
                                                   "text, or the words a person wrote"},
        "message_id": _nullable({"type": "integer"}), "at": TIME,
    }),
    "IntakeRequest": _object({
        "field": {"enum": list(INTAKE_FIELDS)},
        "value": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S",
                  "description": "as a person writes it: kitchen; 80k, $50k-60k, under 30k; asap, "
                                 "next month, 2027-03-15; 11215 or a street address; in or out. "
                                 "One that cannot be read is 422"}}),
    "IntakeAnswer": _object({"conversation_id": {"type": "integer"}, "intake": _ref("Intake")}),
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
        "media": {"type": "array", "items": _ref("Media"),
                  "description": "a homeowner's photos, video and files, in the order sent"},
    }),
    "Media": _object({
        "id": {"type": "integer"},
        "content_type": {"type": "string", "description": "as the provider declared it"},
        "size": _nullable({"type": "integer", "description": "bytes kept, else as declared"}),
        "state": {"enum": ["pending", "fetching", "kept", "failed"]},
        "shown": {"type": "boolean",
                  "description": "the bytes are what was declared; false: a download only"},
        "note": {"type": "string", "description": "why it is not shown, or was not fetched"},
        "url": _nullable({"type": "string", "description": "a signed link to the file"}),
        "url_expires_at": _nullable(TIME),
    }),
    "ConversationList": _object({"conversations": {"type": "array", "items": _ref("Conversation")}}),
    "OneConversation": _object({"conversation": _ref("Conversation")}),
    "Thread": _object({"conversation": _ref("Conversation"),
                       "calls": {"type": "array", "items": _ref("Call")},
                       "messages": {"type": "array", "items": _ref("Message")},
                       "intake": _ref("Intake"),
                       "intake_history": {"type": "array", "items": _ref("IntakeEntry"),
                                          "description": "each extraction and correction, "
                                                         "oldest first"}}),
    "CallList": _object({"calls": {"type": "array", "items": _ref("Call")}}),
    "Scorecard": _object({"period": {"type": "string"}, "numbers": {"type": "array", "items": _object({
        "business_number": E164, "missed_calls": {"type": "integer"},
        "missed_by_reason": {"type": "object", "additionalProperties": {"type": "integer"}},
        "texts_sent": {"type": "integer", "description": "every text the gateway took: the cost"},
        "segments_sent": {"type": "integer"},
        "missed": {"type": "integer", "description": "funnel: conversations with a missed call"},
        "texted": {"type": "integer", "description": "funnel: of those, their automatic text "
                                                     "accepted by the gateway"},
        "replies": {"type": "integer", "description": "funnel: of those, the homeowner answered"},
        "reply_rate": _nullable({"type": "number"}),
        "median_minutes_reply_to_human_answer": _nullable({"type": "number"}),
        "booked": {"type": "integer"}, "qualified": {"type": "integer"}, "won": {"type": "integer"},
        "won_value": {"type": "number"}, "lost": {"type": "integer"}, "opt_outs": {"type": "integer"},
        "reply_rate_by_template": {"type": "object", "additionalProperties": {"type": "number"}},
        "conversions": {"type": "object", "description": "each funnel stage's share of the one "
                        "before, by its key (texted, replies, booked, qualified, won)",
                        "additionalProperties": _nullable({"type": "number"})},
    }, optional=("missed", "texted", "conversions"))},
        "intake": _object({view: {"type": "array", "description": description,
                                  "items": _ref("IntakeGroup")}
                           for view, description in (
                               ("project", "the funnel per project type (a conversation naming "
                                           "two types counts in both; \"(not known)\" when none)"),
                               ("area", "the funnel in area, out of area and \"(not known)\""))})}),
    "IntakeGroup": _object({
        "group": {"type": "string"}, "missed": {"type": "integer"}, "texted": {"type": "integer"},
        "replies": {"type": "integer"}, "booked": {"type": "integer"},
        "qualified": {"type": "integer"}, "won": {"type": "integer"},
        "won_value": {"type": "number"}, "reply_rate": _nullable({"type": "number"})}),
    "ReplyRequest": _object({"text": {
        "type": "string", "minLength": 1, "maxLength": MAX_REPLY_CHARS, "pattern": "\\S",
        "description": "something besides white space; at most the configured number of SMS "
                       "segments (reply_mail.max_segments, default 3), else 422"}}),
    "ReplyQueued": _object({"status": {"const": "queued"}, "outbox_id": {"type": "integer"},
                            "conversation_id": {"type": "integer"}}),
    "AssignmentRequest": _object({"owner": {
        **OWNER_ID, "description": "an owner id from the config (another is 422)"}}),
    "OptOutRequest": _object({"number": {"type": "string", "minLength": 1, "maxLength": 200,
                                         "description": "any form of the number: E.164, "
                                                        "national, a tel: or sip: URI (one that "
                                                        "holds no valid number is 422)"}}),
    "OptedOut": _object({"number": E164, "opted_out": {"const": True},
                         "already": {"type": "boolean",
                                     "description": "it was suppressed before this request"}}),
    "OutcomeRequest": {**_object({
        "stage": {"enum": list(STAGES)},
        "value": _nullable({"type": "number", "minimum": 0, "maximum": MAX_JOB_VALUE,
                            "description": "the job value; only with won"}),
        "external_ref": _nullable({"type": "string", "minLength": 1, "maxLength": 200,
                                   "description": "the CRM's reference, kept on the conversation"}),
    }, optional=("value", "external_ref")),
        # A value belongs to a won job only: with any other stage it is absent or null.
        "if": {"properties": {"stage": {"const": "won"}}},
        "else": {"properties": {"value": {"type": "null"}}}},
    "ContactRequest": {**_object({
        "name": _nullable({"type": "string", "maxLength": 100}),
        "class": _nullable({"enum": list(CONTACT_CLASSES)}),
    }, optional=("name", "class")),
        # Something to set: a name, a class, or both (null leaves that one as it is).
        "anyOf": [{"required": ["name"], "properties": {"name": {"type": "string"}}},
                  {"required": ["class"], "properties": {"class": {"type": "string"}}}]},
}


def _answer(status: str, description: str, schema: str) -> dict[str, Any]:
    return {status: {"description": description,
                     "content": {"application/json": {"schema": _ref(schema)}}}}


ERRORS_READ = {**_answer("400", "a query parameter is wrong (named in error.field)", "Error"),
               **_answer("401", "no token, or an unknown or revoked one", "Error"),
               **_answer("429", "too many requests for this token (see Retry-After)", "Error")}
ERRORS_WRITE = {**ERRORS_READ,
                **_answer("400", "the body does not fit its schema, or is not JSON within the "
                                 "limits (nesting, number size, duplicate keys); error.field "
                                 "names the field", "Error"),
                **_answer("403", "a read token cannot write", "Error"),
                **_answer("404", "no such conversation", "Error"),
                **_answer("413", "the body is over the size limit", "Error")}
REUSED_KEY = "the Idempotency-Key was used for a different request (idempotency_key_reused)"
ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"},
      "examples": {"first": {"value": 1}}}
IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
               "description": "a write sent again with the same key gets the first answer",
               "schema": {"type": "string", "pattern": "^[ -~]{1,200}$"}}
IF_MATCH = {"name": "If-Match", "in": "header", "required": False,
            "description": "the ETag of the conversation as the client last read it (or *): the "
                           "write is applied only if its state (owner, status, snooze, outcome, "
                           "contact) has not changed since, else answered 412",
            "schema": {"type": "string", "pattern": "^[ -~]{1,200}$"}}
ETAG = {"ETag": {"description": "the version of the conversation's state, for If-Match",
                 "schema": {"type": "string"}}}
PRECONDITION_FAILED = _answer("412", "If-Match names a state the conversation no longer has: "
                                     "nothing was applied (the ETag header is the current one)",
                              "Error")


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


def _tagged(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer about one conversation, with its ETag header."""
    return {status: {**body, "headers": ETAG} for status, body in answer.items()}


def _unprocessable(*checks: str) -> dict[str, Any]:
    """The 422 of an operation: the checks its schemas cannot state, each with its error.code."""
    return _answer("422", "valid under the schemas, refused by a check they cannot state: "
                   + "; ".join(checks), "Error")


def _write(summary: str, request: str, ok: dict[str, Any], *checks: str,
           extra: dict[str, Any] | None = None):
    return {"post": {
        "summary": summary, "parameters": [ID, IDEMPOTENCY, IF_MATCH],
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": _ref(request)}}},
        "responses": {**ok, **ERRORS_WRITE, **_unprocessable(*checks, REUSED_KEY),
                      **PRECONDITION_FAILED, **(extra or {})}}}


def parameters(path: str, method: str = "get") -> list[dict[str, Any]]:
    """The parameters the document gives an operation: what `shapes` checks a request against."""
    return document()["paths"][path][method]["parameters"]


def document() -> dict[str, Any]:
    limit = _query("limit", f"at most this many (1 to {MAX_LIST})",
                   {"type": "integer", "minimum": 1, "maximum": MAX_LIST})
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
                "parameters": [_query("owner", "only this owner's (an owner id from the config)",
                                      OWNER_ID),
                               _query("unanswered", "only those waiting for an answer (true) or not",
                                      {"enum": ["true", "false"]}),
                               _query("project", "only those whose intake names this project "
                                      "type", {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,39}$"}),
                               _query("area", "only those in (or out of) the service area",
                                      {"enum": ["in", "out"]}), limit],
                "responses": {**_answer("200", "the conversations", "ConversationList"),
                              **ERRORS_READ,
                              **_unprocessable("no owner by that id (unknown_owner)")}}},
            "/conversations/{id}": {"get": {
                "summary": "One conversation with its calls and texts", "parameters": [ID],
                "responses": {**_tagged(_answer("200", "the thread", "Thread")), **ERRORS_READ,
                              **_answer("404", "no such conversation", "Error")}}},
            "/calls": {"get": {
                "summary": "Inbound calls, newest first",
                "parameters": [_query("since", "RFC 3339 with an offset, or an age: 30m, 6h, 2d, 1w "
                                      "(default 1d)", {"anyOf": [{"type": "string", "pattern": AGE},
                                                                 {"type": "string",
                                                                  "pattern": RFC3339}]}), limit],
                "responses": {**_answer("200", "the calls", "CallList"), **ERRORS_READ,
                              **_unprocessable("a day that does not exist, e.g. 30 February "
                                               "(no_such_time)")}}},
            "/scorecard": {"get": {
                "summary": "The scorecard per business number",
                "parameters": [_query("month", "YYYY-MM (default: this month)",
                                      {"type": "string", "pattern": MONTH}),
                               _query("from", "first day, YYYY-MM-DD (with to)",
                                      {"type": "string", "pattern": DAY}),
                               _query("to", "the day after the last, YYYY-MM-DD (with from)",
                                      {"type": "string", "pattern": DAY})],
                "responses": {**_answer("200", "the figures", "Scorecard"), **ERRORS_READ,
                              **_unprocessable("from without to or to without from "
                                               "(incomplete_period)", "to not after from "
                                               "(empty_period)", "month with from and to "
                                               "(two_periods)", "a day that does not exist, e.g. "
                                               "30 February (no_such_time)")}}},
            "/conversations/{id}/reply": _write(
                "Text the caller through the outbox (opt-outs and the length limit apply)",
                "ReplyRequest", _answer("202", "queued; the daemon sends it", "ReplyQueued"),
                "more SMS segments than the configured limit; nothing was sent (too_long)",
                extra=_answer("409", "the caller opted out; nothing was sent", "Error")),
            "/conversations/{id}/assignment": _write(
                "Give the conversation to an owner", "AssignmentRequest",
                _tagged(_answer("200", "the conversation", "OneConversation")),
                "no owner by that id (unknown_owner)"),
            "/conversations/{id}/outcome": _write(
                "Record booked, qualified, won (with its value), lost or spam", "OutcomeRequest",
                _tagged(_answer("200", "the conversation", "OneConversation"))),
            "/optouts": {"post": {
                "summary": "Suppress a number: no text of any kind, from any business number, "
                           "goes to it again (revoke-all); the channel is kept in the consent "
                           "ledger as api:<token name>",
                "parameters": [IDEMPOTENCY],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref("OptOutRequest")}}},
                "responses": {**_answer("200", "suppressed", "OptedOut"), **ERRORS_WRITE,
                              **_unprocessable("no valid phone number in it (not_a_number)",
                                               REUSED_KEY)}}},
            "/conversations/{id}/intake": _write(
                "Set an intake fact as a person's value (it wins over what was read)",
                "IntakeRequest", _answer("200", "the conversation's intake facts", "IntakeAnswer"),
                "a value that cannot be read for its field (not_understood)"),
            "/conversations/{id}/contact": _write(
                "Name or class the caller", "ContactRequest",
                _tagged(_answer("200", "the conversation", "OneConversation"))),
        },
    }
