"""The `asterisk` gateway: SIP MESSAGE through the PBX's own trunk.

Outbound: AMI MessageSend, body in Base64Body so no caller or owner text
can break the AMI framing. Asterisk answers "Message successfully sent" once
PJSIP has taken the request; no AMI event reports the SIP final response.

Inbound: the trunk endpoint's `message_context` runs dialplan/textback.conf,
which raises `UserEvent(TextbackSmsIn, ...)` with every field in Base64. The
message's id is its SIP Call-ID and CSeq (MESSAGE_DATA(Call-ID) and
MESSAGE_DATA(CSeq)): PJSIP itself swallows a retransmission within one
transaction, but a carrier that sends the same MESSAGE again in a new
transaction reaches the dialplan twice, with the same Call-ID and CSeq. An
older dialplan passes no id; the store then uses its no-id rule
(Store.record_inbound). The UserEvent's Uniqueid is no id: every message
runs on the same Message/ast_msg_queue channel.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import logging
from email.message import EmailMessage
from typing import Any, Callable

from ami_listener.connection import AmiConnection, AmiDisconnected, AmiError, AmiTimeout
from sms_gateway.base import InboundMedia, InboundText, OutgoingText, SendResult

log = logging.getLogger("textback.gateway.asterisk")

USER_EVENT = "TextbackSmsIn"
NO_MESSAGE_TECH = "Message technology not found"  # manager.c: no loaded module takes the URI's tech


class AsteriskGateway:
    name = "asterisk"

    def __init__(self, ami: AmiConnection, destination: str, from_uri: str,
                 trunk: str = "", host: str = "", timeout: float = 5.0,
                 ami_for_sender: Callable[[str], AmiConnection] | None = None):
        self._ami = ami
        # Several PBXs: a text goes through the AMI of the PBX serving its sender (a DID).
        self._ami_for_sender = ami_for_sender or (lambda sender: ami)
        self._destination = destination
        self._from_uri = from_uri
        self._fields = {"trunk": trunk, "host": host}
        self._timeout = timeout

    def _fill(self, template: str, text: OutgoingText) -> str:
        return template.format(to=text.recipient, sender=text.sender, **self._fields)

    async def send(self, text: OutgoingText) -> SendResult:
        ami = self._ami_for_sender(text.sender)
        if ami.logged_in and not ami.ready:
            return SendResult.retryable("Asterisk is still starting (no FullyBooted since the login)")
        action = {
            "Action": "MessageSend",
            "Destination": self._fill(self._destination, text),
            "From": self._fill(self._from_uri, text),
            "Base64Body": base64.b64encode(text.body.encode("utf-8")).decode("ascii"),
        }
        try:
            response = await ami.action(action, timeout=self._timeout)
        except AmiDisconnected as exc:
            return SendResult.retryable(str(exc))
        except AmiTimeout as exc:
            return SendResult.unknown(str(exc))
        except AmiError as exc:
            if str(exc).startswith(NO_MESSAGE_TECH):  # res_pjsip_messaging not loaded (yet): a reload, a boot
                return SendResult.retryable(f"MessageSend refused: {exc} (Asterisk has not loaded "
                                            "its messaging module; it may be starting or reloading)")
            return SendResult.permanent(f"MessageSend refused: {exc}")
        return SendResult.accepted(response.get("ActionID"))

    async def check(self) -> str:
        if not self._ami.logged_in:
            raise AmiDisconnected("AMI is not connected")
        return f"asterisk gateway via AMI, destination {self._destination}"


def parse_user_event(event: dict[str, Any]) -> InboundText | None:
    """An inbound text from a TextbackSmsIn UserEvent; None for other events or bad Base64.

    The body is read by the MESSAGE's Content-Type (an older dialplan passes none: UTF-8 text).
    A text/plain body is decoded in its charset. Any other body is never dropped: its bytes
    become the text's one media item, checked and kept like a fetched photo (shown only if
    they are what the type says), and the owner's alert lists it. Stock Asterisk answers a
    MESSAGE that is not text/plain with 415 before the dialplan runs (docs/gateways.md), so
    this is for a PBX whose messaging module passes other types on.
    """
    if event.get("Event") != "UserEvent" or event.get("UserEvent") != USER_EVENT:
        return None
    try:
        raw = {key: base64.b64decode(str(event.get(key, "")), validate=True)
               for key in ("From", "To", "Body", "CallID", "CSeq", "ContentType")}
    except (binascii.Error, ValueError):
        log.warning("ignored a %s event whose fields are not Base64 (check dialplan/textback.conf)",
                    USER_EVENT)
        return None
    fields = {key: value.decode("utf-8", "replace") for key, value in raw.items() if key != "Body"}
    content_type = fields["ContentType"].strip() or "text/plain; charset=UTF-8"
    media_type, charset = _media_type(content_type)
    body, media = "", ()
    if media_type == "text/plain":
        body = raw["Body"].decode(charset, "replace")
    else:
        media = (InboundMedia("", one_line_type(content_type), len(raw["Body"]), raw["Body"]),)
    return InboundText(sender=fields["From"], recipient=fields["To"], body=body,
                       gateway_id=message_id(fields["CallID"], fields["CSeq"]), media=media)


def _media_type(content_type: str) -> tuple[str, str]:
    """('text/plain', 'iso-8859-1') from 'text/plain;charset=ISO-8859-1'; UTF-8 when the charset
    is missing or one Python does not know."""
    message = EmailMessage()
    try:
        message["Content-Type"] = content_type
        media_type = message.get_content_type()
        charset = message.get_content_charset() or "utf-8"
    except (ValueError, TypeError, IndexError):
        return "application/octet-stream", "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        charset = "utf-8"
    return media_type, charset


def one_line_type(content_type: str) -> str:
    """A declared type as one short printable line (it came from a SIP header)."""
    return "".join(ch for ch in content_type if ch.isprintable())[:120]


def message_id(call_id: str, cseq: str) -> str | None:
    """'Call-ID CSeq' ('a84b4c76e66710@carrier 7 MESSAGE'), the same for every delivery of one
    SIP MESSAGE; None when the dialplan passed no Call-ID (an older dialplan/textback.conf)."""
    call_id = call_id.strip()
    return f"{call_id} {' '.join(cseq.split())}".strip() if call_id else None
