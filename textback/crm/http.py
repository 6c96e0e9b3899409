"""One JSON request to a CRM's API; a failure becomes CrmRetry with the status and Retry-After."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from textback.core.alerts import one_line
from textback.crm import CrmRetry
from textback.core.delivery import parse_retry_after


async def call(http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str],
               body: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        async with http.request(method, url, json=body, headers=headers,
                                allow_redirects=False) as response:
            if 200 <= response.status < 300:
                return await response.json(content_type=None) or {}
            if response.status == 401:
                raise CrmRetry(401, "HTTP 401: the CRM refused the token (expired, revoked or "
                                    "without the scope); check the token file")
            raise CrmRetry(response.status,
                           f"HTTP {response.status} {one_line(response.reason or '', 60)}",
                           parse_retry_after(response.headers.get("Retry-After"), time.time()))
    except asyncio.TimeoutError:
        raise CrmRetry(None, "the CRM did not answer in time") from None
    except aiohttp.ClientError as exc:
        raise CrmRetry(None, one_line(f"{type(exc).__name__}: {exc}", 200)) from None
