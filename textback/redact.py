"""Secrets out of every text that leaves the process: log lines, stored errors, CLI output. No I/O.

Providers' error messages and aiohttp's exceptions quote the request URL,
and the Kannel and VoIP.ms-style gateways carry their password in its query
string. Rather than trust each message, every configured secret is known
here in the forms it travels in (as written, percent-encoded once or twice,
Base64) and replaced wherever it appears.
"""

from __future__ import annotations

import base64
import logging
import re
from typing import Iterable
from urllib.parse import quote, quote_plus

MASK = "[secret]"
# A form shorter than this would mask ordinary words.
MIN_PLAIN = 4
_URL_QUERY = re.compile(r"(https?://[^\s'\"<>?]+)\?[^\s'\"<>]*")


class Redactor:
    def __init__(self, secrets: Iterable[str]):
        forms: set[str] = set()
        for secret in (s for s in secrets if s):
            forms |= {secret, quote(secret, safe=""), quote_plus(secret),
                      base64.b64encode(secret.encode()).decode(),
                      base64.b64encode(secret.encode()).decode().rstrip("=")}
            forms.add(quote(quote(secret, safe=""), safe=""))  # a URL inside a URL (Kannel's dlr-url)
        self._forms = sorted((f for f in forms if len(f) >= MIN_PLAIN), key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, self._forms))) if self._forms else None

    @classmethod
    def union(cls, redactors: Iterable["Redactor"]) -> "Redactor":
        """One redactor masking what each of `redactors` masks (several companies' secrets in
        one process, whose log lines any of them may reach)."""
        merged = cls(())
        merged._forms = sorted({form for r in redactors for form in r._forms}, key=len,
                               reverse=True)
        merged._pattern = (re.compile("|".join(map(re.escape, merged._forms)))
                           if merged._forms else None)
        return merged

    def __call__(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern else text

    def url(self, text: str) -> str:
        """Also drop every URL's query string: it is where gateways put their credentials."""
        return self(_URL_QUERY.sub(r"\1?…", text))


class RedactingFilter(logging.Filter):
    """Masks secrets in every record a handler writes, arguments and tracebacks included."""

    def __init__(self, redactor: Redactor):
        super().__init__()
        self._redact = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self._redact(message), None
        if record.exc_text:
            record.exc_text = self._redact(record.exc_text)
        return True


def install(redactor: Redactor) -> None:
    """Put the filter on every handler of the root logger (call after logging is configured)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter(redactor))
