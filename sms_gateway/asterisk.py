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
import logging
from typing import Any

from ami_listener.connection import AmiConnection, AmiDisconnected, AmiError, AmiTimeout
from sms_gateway.base import InboundText, OutgoingText, SendResult

log = logging.getLogger("textback.gateway.asterisk")

USER_EVENT = "TextbackSmsIn"


class AsteriskGateway:
    name = "asterisk"

    def __init__(self, ami: AmiConnection, destination: str, from_uri: str,
                 trunk: str = "", host: str = "", timeout: float = 5.0):
        self._ami = ami
        self._destination = destination
        self._from_uri = from_uri
        self._fields = {"trunk": trunk, "host": host}
        self._timeout = timeout

    def _fill(self, template: str, text: OutgoingText) -> str:
        return template.format(to=text.recipient, sender=text.sender, **self._fields)

    async def send(self, text: OutgoingText) -> SendResult:
        action = {
            "Action": "MessageSend",
            "Destination": self._fill(self._destination, text),
            "From": self._fill(self._from_uri, text),
            "Base64Body": base64.b64encode(text.body.encode("utf-8")).decode("ascii"),
        }
        try:
            response = await self._ami.action(action, timeout=self._timeout)
        except AmiDisconnected as exc:
            return SendResult.retryable(str(exc))
        except AmiTimeout as exc:
            return SendResult.unknown(str(exc))
        except AmiError as exc:
            return SendResult.permanent(f"MessageSend refused: {exc}")
        return SendResult.accepted(response.get("ActionID"))

    async def check(self) -> str:
        if not self._ami.logged_in:
            raise AmiDisconnected("AMI is not connected")
        return f"asterisk gateway via AMI, destination {self._destination}"


def parse_user_event(event: dict[str, Any]) -> InboundText | None:
    """An inbound text from a TextbackSmsIn UserEvent; None for other events or bad Base64."""
    if event.get("Event") != "UserEvent" or event.get("UserEvent") != USER_EVENT:
        return None
    try:
        fields = {
            key: base64.b64decode(str(event.get(key, "")), validate=True).decode("utf-8", "replace")
            for key in ("From", "To", "Body", "CallID", "CSeq")
        }
    except (binascii.Error, ValueError):
        log.warning("ignored a %s event whose fields are not Base64 (check dialplan/textback.conf)",
                    USER_EVENT)
        return None
    return InboundText(sender=fields["From"], recipient=fields["To"], body=fields["Body"],
                       gateway_id=message_id(fields["CallID"], fields["CSeq"]))


def message_id(call_id: str, cseq: str) -> str | None:
    """'Call-ID CSeq' ('a84b4c76e66710@carrier 7 MESSAGE'), the same for every delivery of one
    SIP MESSAGE; None when the dialplan passed no Call-ID (an older dialplan/textback.conf)."""
    call_id = call_id.strip()
    return f"{call_id} {' '.join(cseq.split())}".strip() if call_id else None
