"""The reply-mail edge: an aiosmtpd server that takes owners' replies to alerts.

It runs on the daemon's event loop, so a reply is committed to the store
before the SMTP 250 goes back. Unknown recipients are refused at RCPT time;
everything else is decided by textback.core.replies.judge. A 250 means the reply
was handed to the daemon (`on_reply`), which texts it or emails the owner
why not; the one exception is an automatic reply (RFC 3834), which is only
logged, so that no responder is ever answered.

Parsing and judging a message is CPU work on attacker-shaped input, so it
runs in a worker thread with a time limit: a pathological mail can cost a
thread some seconds, never the event loop that carries calls and texts.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, Awaitable, Callable

from aiosmtpd.smtp import SMTP, Envelope, Session

from textback.core.alerts import one_line
from textback.config import Config
from textback.core.replies import Verdict, from_address, judge, token_of
from textback.store import Store

log = logging.getLogger("textback.mailin")
# How long reading one reply may take; its input is bounded too (textback.core.replies).
READ_SECONDS = 10.0

OnReply = Callable[[dict[str, Any], Verdict], Awaitable[None]]
_BARE_EOL = re.compile(rb"(?<!\r)\n|\r(?!\n)")


class ReplyMailHandler:
    def __init__(self, config: Config, store: Store, on_reply: OnReply,
                 count: Callable[[str], None] = lambda verdict: None):
        self._config = config
        self._count = count  # the verdicts decided here; the daemon counts the ones it acts on
        self._settings = config.reply_mail
        self._store = store
        self._on_reply = on_reply
        self._team = frozenset(a.lower() for a in self._settings.team_senders)

    async def _binding(self, address: str) -> dict[str, Any] | None:
        token = token_of(address, self._settings.domain)
        return await self._store.token(token, time.time()) if token else None

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if await self._binding(address) is None:
            self._count("unknown_address")
            return "550 5.1.1 No such reply address (unknown or expired)"
        if envelope.rcpt_tos:
            return "452 4.5.3 One reply address per message"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw: bytes = envelope.original_content or b""
        header_block = raw.split(b"\r\n\r\n", 1)[0]
        if _BARE_EOL.search(header_block):
            self._count("refuse")
            return "550 5.6.0 Bare CR or LF in the message header"
        binding = await self._binding(envelope.rcpt_tos[0])
        if binding is None:
            return "550 5.1.1 No such reply address (unknown or expired)"
        owner = self._config.owner(binding["owner_id"])
        try:
            message, verdict = await asyncio.wait_for(asyncio.to_thread(
                self._read, raw, envelope.mail_from, owner.email, owner.name, binding["quoted"]),
                READ_SECONDS)
        except asyncio.TimeoutError:
            log.error("a reply to conversation %d took over %g s to read; its owner is told",
                      binding["conversation_id"], READ_SECONDS)
            await self._on_reply(binding, Verdict(
                "unreadable", f"textback could not read it within {READ_SECONDS:g} seconds"))
            return "250 OK (not texted; the owner is told why)"
        except Exception:  # noqa: BLE001 - a bug here must not echo details to the sender
            log.exception("could not read a reply to conversation %d", binding["conversation_id"])
            return "451 4.3.0 Temporary failure reading the message; try again later"
        if verdict.action in ("refuse", "drop"):
            self._count(verdict.action)
        if verdict.action == "refuse":
            log.warning("refused a reply to conversation %d: %s", binding["conversation_id"],
                        verdict.reason)
            return f"550 5.7.1 {verdict.reason}"
        if verdict.action == "drop":
            log.warning("dropped mail to conversation %d's reply address from %s (envelope %s), "
                        "not texted and not answered: %s", binding["conversation_id"],
                        one_line(from_address(message) or "no single From address", 120),
                        one_line(envelope.mail_from or "<>", 120), verdict.reason)
            return "250 OK (automatic reply, not texted)"
        await self._on_reply(binding, verdict)
        return "250 OK"

    def _read(self, raw: bytes, mail_from: str | None, owner_email: str, owner_name: str,
              quoted: tuple[str, ...]) -> tuple[EmailMessage, Verdict]:
        """Parse and judge one message (runs in a worker thread); `quoted` is what its alert showed."""
        message: EmailMessage = BytesParser(policy=policy.default).parsebytes(raw)
        return message, judge(message, mail_from, owner_email, self._team,
                              self._settings.trusted_authserv_id, self._settings.max_segments,
                              owner_name, quoted)


async def serve(config: Config, store: Store, on_reply: OnReply,
                count: Callable[[str], None] = lambda verdict: None) -> asyncio.AbstractServer:
    settings = config.reply_mail
    handler = ReplyMailHandler(config, store, on_reply, count)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, data_size_limit=settings.max_bytes, enable_SMTPUTF8=True,
                     hostname=settings.domain, ident="textback reply mail"),
        host=settings.listen_host, port=settings.listen_port)
    log.info("reply mail server listening on %s:%d for reply+*@%s", settings.listen_host,
             settings.listen_port, settings.domain)
    return server
