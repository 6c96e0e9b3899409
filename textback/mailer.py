"""The SMTP edge: hands composed messages to the company's relay (aiosmtplib)."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib
from pydantic import SecretStr

from textback.config import SmtpConfig


class Mailer:
    def __init__(self, config: SmtpConfig, password: SecretStr | None):
        self._config = config
        self._password = password

    @property
    def sender(self) -> str:
        return self._config.sender

    @property
    def domain(self) -> str:
        return self._config.sender.rsplit("@", 1)[1]

    def _client(self) -> aiosmtplib.SMTP:
        c = self._config
        return aiosmtplib.SMTP(
            hostname=c.host, port=c.port, timeout=c.timeout_seconds,
            use_tls=c.security == "tls", start_tls=c.security == "starttls",
            username=c.username,
            password=self._password.get_secret_value() if self._password else None,
        )

    async def send(self, message: EmailMessage) -> None:
        """Send one message, dated now if the core left it undated (it reads no clock);
        raises aiosmtplib.SMTPException or OSError on failure."""
        if "Date" not in message:
            message["Date"] = format_datetime(datetime.now().astimezone())
        client = self._client()
        async with client:
            await client.send_message(message)

    async def check(self) -> str:
        """Connect, greet and authenticate without sending; returns the server's greeting."""
        client = self._client()
        async with client:
            return f"{self._config.host}:{self._config.port} ({client.server_auth_methods or 'no auth'})"
