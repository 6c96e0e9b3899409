"""A gateway's error codes in plain words, for owners and installers; the raw code stays beside them.

Pure: a gateway name and the error text textback stored (the send's error, or
"provider error CODE" from a delivery report) in, a sentence out. Sources:
Twilio's error dictionary, Telnyx's messaging error codes, and the SMPP
command_status values that Kannel passes on in its delivery reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Each sentence completes "We could not text NUMBER: ...".
TWILIO = {
    "30003": "their phone is switched off or out of reach",
    "30004": "they block texts from this number",
    "30005": "the number is unknown or no longer in service",
    "30006": "it is a landline, or their carrier cannot receive texts",
    "30007": "their carrier filtered the message",
    "30008": "their carrier gave no reason",
    "30034": "the business number is not registered for A2P 10DLC, so US carriers block its texts",
    "21610": "they asked not to be texted (STOP)",
    "21211": "the number is not a valid phone number",
    "21614": "the number cannot receive texts",
    "21635": "it is a landline",
}
TELNYX = {
    "40001": "it is a landline, or the number cannot receive texts",
    "40002": "their carrier filtered the message as spam",
    "40003": "their carrier blocks texts from this business number",
    "40004": "their carrier refused the message without a reason",
    "40005": "the message expired before their carrier delivered it",
    "40006": "their carrier's system was unavailable",
    "40008": "their carrier did not accept the message",
    "40009": "their carrier refused the message's content",
    "40010": "the business number is not registered for A2P 10DLC, so US carriers block its texts",
    "40300": "they asked not to be texted (STOP)",
    "10001": "the number is inactive",
    "10002": "the number is not a valid phone number",
}
# SMPP command_status (SMPP 3.4, section 5.1.3), as Kannel reports a refused submit_sm.
SMPP = {
    0x0B: "the number is not valid for the SMS centre",
    0x0A: "the SMS centre refused the business number as sender",
    0x14: "the SMS centre's queue is full",
    0x45: "the SMS centre refused the message",
    0x58: "the SMS centre is throttling the sender",
    0x61: "the SMS centre refused the message's schedule",
    0x62: "the message expired at the SMS centre",
}
# The stat: field of an SMSC delivery receipt that Kannel passes on.
RECEIPT = {
    "UNDELIV": "their carrier could not deliver the message",
    "EXPIRED": "the message expired before it reached their phone",
    "REJECTD": "their carrier refused the message",
    "DELETED": "the SMS centre deleted the message",
}

_CODE = re.compile(r"\b(\d{5})\b")
_SMPP_STATUS = re.compile(r"\b0x([0-9a-fA-F]{8})\b")
_RECEIPT_STAT = re.compile(r"\bstat:([A-Z]{7})\b")


@dataclass(frozen=True)
class Explanation:
    sentence: str  # completes "We could not text NUMBER: ..."
    code: str  # the raw code as the provider gave it, e.g. "Twilio 30007"

    def __str__(self) -> str:
        return f"{self.sentence} ({self.code})"


def explain(gateway: str, error: str) -> Explanation | None:
    """The plain words for a stored gateway error, or None when its code is not one we know."""
    if not error:
        return None
    if gateway in ("twilio", "telnyx"):
        table = TWILIO if gateway == "twilio" else TELNYX
        for code in _CODE.findall(error):
            if code in table:
                return Explanation(table[code], f"{gateway.capitalize()} {code}")
        return None
    if gateway == "kannel":
        status = _SMPP_STATUS.search(error)
        if status and int(status.group(1), 16) in SMPP:
            return Explanation(SMPP[int(status.group(1), 16)], f"SMPP status 0x{status.group(1)}")
        stat = _RECEIPT_STAT.search(error)
        if stat and stat.group(1) in RECEIPT:
            return Explanation(RECEIPT[stat.group(1)], f"delivery receipt {stat.group(1)}")
    return None


def described(gateway: str, error: str) -> str:
    """An error for a screen: the plain words with the raw error kept, or the raw error alone."""
    explanation = explain(gateway, error)
    return f"{explanation.sentence} [{error}]" if explanation else error
