"""What the inbox's session check leaves on a request for the handlers and pages after it:
aiohttp's typed request storage (`web.RequestKey`), so no two rooms can clash on a name."""

from __future__ import annotations

from aiohttp import web
from multidict import MultiDictProxy

from textback.config import OwnerConfig

USER = web.RequestKey("user", OwnerConfig)  # who is signed in
CSRF = web.RequestKey("csrf", str)  # the session's CSRF token, for the page's forms
SESSION = web.RequestKey("session", dict)  # the store's session row
UNREAD = web.RequestKey("unread", int)  # the unread count every page's title shows
FORM = web.RequestKey("form", MultiDictProxy)  # a POST's form, its CSRF token checked
