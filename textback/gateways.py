"""Which SMS backend the config names, built: the one place a new built-in gateway is added."""

from __future__ import annotations

from typing import Callable

from ami_listener.connection import AmiConnection
from sms_gateway.asterisk import AsteriskGateway
from sms_gateway.base import Gateway
from sms_gateway.http import HttpGateway
from sms_gateway.kannel import KannelGateway
from sms_gateway.log import LogGateway
from sms_gateway.plugins import load_gateway
from sms_gateway.telnyx import TelnyxGateway
from sms_gateway.twilio import TwilioGateway
from textback.config import Config, Secrets


def build_gateway(config: Config, ami: AmiConnection, secrets: Secrets,
                  ami_for_sender: Callable[[str], AmiConnection] | None = None) -> Gateway:
    """The configured SMS backend. A new built-in backend is added here. The asterisk gateway
    sends through `ami`, or, given `ami_for_sender`, through the AMI of the PBX serving the
    business number a text goes from."""
    g = config.gateway
    public = g.callbacks.public_base_url if g.callbacks else None
    if g.type == "asterisk":
        a = g.asterisk
        return AsteriskGateway(ami, a.destination, a.from_uri, a.trunk, a.host, a.timeout_seconds,
                               ami_for_sender=ami_for_sender)
    if g.type == "twilio":
        return TwilioGateway(g.twilio, secrets.gateway, public)
    if g.type == "telnyx":
        return TelnyxGateway(g.telnyx, secrets.gateway, public)
    if g.type == "kannel":
        return KannelGateway(g.kannel, secrets.gateway, public)
    if g.type == "http":
        return HttpGateway(g.http, secrets.gateway)
    if g.type == "plugin":
        return load_gateway(g.plugin.name, g.plugin.options)
    return LogGateway()
