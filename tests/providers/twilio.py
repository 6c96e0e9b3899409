"""A loopback Twilio that follows the documented Messages API and webhook contract.

- POST /2010-04-01/Accounts/{AccountSid}/Messages.json, form-encoded, Basic
  auth AccountSid:AuthToken; To, Body and From or MessagingServiceSid; 201
  with the Message resource (sid "SM..."), or an error body
  {"code", "message", "more_info", "status"}: 20003 (401), 21211 invalid To,
  21610 opted out (400), 20429 too many requests (429 + Retry-After).
- MMS: MediaUrl, repeated, up to 10 (21623), each an absolute http(s) URL (21620); Body may
  then be left out, but not both (21619). Twilio fetches each URL itself; here the fetch is a
  real GET before answering, kept in `fetched` (all media at most 5 MB: twilio.com/docs/
  messaging/api/media-resource).
- GET /2010-04-01/Accounts/{AccountSid}.json: the Account resource.
- Webhooks it sends: form-encoded, X-Twilio-Signature = base64(HMAC-SHA1(
  AuthToken, URL + sorted key/value pairs)) (twilio.com/docs/usage/webhooks/webhooks-security).

The signature is computed here independently of sms_gateway.twilio.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

E164 = re.compile(r"^\+[1-9]\d{7,14}$")


async def fetch_media(url: str) -> tuple[str, int, str, bytes]:
    """GET one media URL as a provider does when it sends an MMS: no cookies, no credentials.
    A URL it cannot reach is status 0 (the provider would report the MMS failed later)."""
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url, allow_redirects=False) as resp:
                return url, resp.status, resp.headers.get("Content-Type", ""), await resp.read()
    except aiohttp.ClientError:
        return url, 0, "", b""


def twilio_error(status: int, code: int, message: str, headers: dict[str, str] | None = None
                 ) -> web.Response:
    return web.json_response({"code": code, "message": message, "status": status,
                              "more_info": f"https://www.twilio.com/docs/errors/{code}"},
                             status=status, headers=headers)


@dataclass
class FakeTwilio:
    account_sid: str
    auth_token: str
    accepted: list[dict[str, str]] = field(default_factory=list)  # messages Twilio took
    attempts: int = 0  # every POST to Messages.json, taken or not
    opted_out: set[str] = field(default_factory=set)
    # Answers to give before behaving normally: ("5xx", status) or ("429", retry_after).
    script: list[tuple[str, object]] = field(default_factory=list)
    # Each media URL of an accepted MMS as Twilio fetched it: (url, HTTP status, Content-Type,
    # bytes).
    fetched: list[tuple[str, int, str, bytes]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        base = "/2010-04-01/Accounts/{sid}"
        app.router.add_post(base + "/Messages.json", self._create_message)
        app.router.add_get(base + ".json", self._account)
        return app

    def _authorised(self, request: web.Request) -> bool:
        pair = f"{self.account_sid}:{self.auth_token}".encode()
        expected = "Basic " + base64.b64encode(pair).decode()
        return (request.match_info["sid"] == self.account_sid
                and hmac.compare_digest(request.headers.get("Authorization", ""), expected))

    async def _account(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return twilio_error(401, 20003, "Authenticate")
        return web.json_response({"sid": self.account_sid, "status": "active"})

    async def _create_message(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if not self._authorised(request):
            return twilio_error(401, 20003, "Authenticate")
        if self.script:
            kind, value = self.script.pop(0)
            if kind == "429":
                return twilio_error(429, 20429, "Too Many Requests",
                                    headers={"Retry-After": str(value)})
            return web.Response(status=int(value), text="upstream unavailable")
        posted = await request.post()
        media = [str(url) for url in posted.getall("MediaUrl", [])]
        form = {key: str(value) for key, value in posted.items() if key != "MediaUrl"}
        if not form.get("Body") and not media:
            return twilio_error(400, 21619, "A text message body or media URL must be specified.")
        if len(media) > 10:
            return twilio_error(400, 21623, "Number of media files exceeds allowed limit")
        if any(urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname
               for url in media):
            return twilio_error(400, 21620, "Invalid media URL(s)")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return twilio_error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
        if not E164.match(form.get("To", "")):
            return twilio_error(400, 21211, f"The 'To' number {form.get('To')} is not a valid phone number.")
        if form["To"] in self.opted_out:
            return twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
        sid = "SM" + uuid.uuid4().hex
        self.accepted.append({**form, "sid": sid, **({"MediaUrl": media} if media else {})})
        for url in media:
            self.fetched.append(await fetch_media(url))
        return web.json_response({"sid": sid, "account_sid": self.account_sid, "status": "queued",
                                  "to": form["To"], "from": form.get("From"),
                                  "body": form.get("Body", ""), "num_media": str(len(media)),
                                  "messaging_service_sid": form.get("MessagingServiceSid")},
                                 status=201)

    def sign(self, url: str, params: dict[str, str]) -> str:
        data = url + "".join(key + params[key] for key in sorted(params))
        mac = hmac.new(self.auth_token.encode(), data.encode(), hashlib.sha1)
        return base64.b64encode(mac.digest()).decode()

    async def call(self, local_url: str, signed_url: str, params: dict[str, str],
                   signature: str | None = "valid") -> int:
        """POST a webhook as Twilio does; `signed_url` is the public URL Twilio was given."""
        headers = {}
        if signature == "valid":
            headers["X-Twilio-Signature"] = self.sign(signed_url, params)
        elif signature is not None:
            headers["X-Twilio-Signature"] = signature
        async with aiohttp.ClientSession() as session:
            async with session.post(local_url, data=params, headers=headers) as resp:
                return resp.status

    def inbound_params(self, sender: str, recipient: str, body: str) -> dict[str, str]:
        return {"ToCountry": "US", "SmsMessageSid": (sid := "SM" + uuid.uuid4().hex),
                "NumMedia": "0", "SmsSid": sid, "SmsStatus": "received", "Body": body,
                "To": recipient, "NumSegments": "1", "MessageSid": sid,
                "AccountSid": self.account_sid, "From": sender, "ApiVersion": "2010-04-01"}
