"""SMS gateways: the interface and the built-in backends."""

from sms_gateway.base import Deliver, Gateway, InboundText, OutgoingText, SendResult

__all__ = ["Deliver", "Gateway", "InboundText", "OutgoingText", "SendResult"]
