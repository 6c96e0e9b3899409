"""Real media files, and loopback stand-ins for the hosts Twilio and Telnyx serve media from.

Twilio (twilio.com/docs/messaging/api/media-resource): a MediaUrl is
/2010-04-01/Accounts/{AccountSid}/Messages/{MessageSid}/Media/{MediaSid} on
the API host; a GET (with HTTP Basic auth AccountSid:AuthToken when media
authentication is on) answers with a redirect to the media host, which serves
the bytes without credentials. DELETE on the same resource with `.json`
answers 204. Telnyx: the webhook's `media[].url` is fetched directly.

The files are made here, with the libraries a phone's files are read with:
a JPEG and a PNG from Pillow, a HEIC from pillow-heif, an MP4 written box by
box (ISO/IEC 14496-12: ftyp, then a moov with its mvhd), a PNG whose header
promises 900 megapixels over a few kilobytes of zlib, an SVG with a script.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import io
import struct
import zlib
from dataclasses import dataclass, field

from aiohttp import web
from PIL import Image
from pillow_heif import from_pillow


def jpeg(width: int = 640, height: int = 480, colour: str = "teal") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "JPEG", quality=80)
    return out.getvalue()


def png(width: int = 64, height: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "orange").save(out, "PNG")
    return out.getvalue()


def heic(width: int = 400, height: int = 300) -> bytes:
    out = io.BytesIO()
    from_pillow(Image.new("RGB", (width, height), "purple")).save(out, quality=70)
    return out.getvalue()


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def mp4() -> bytes:
    """A minimal ISO base media file: ftyp (isom, mp41) and a moov holding an mvhd."""
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 0x200) + b"isommp41")
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = _box(b"mvhd", struct.pack(">B3xIIII", 0, 0, 0, 1000, 1000) + struct.pack(">IH", 0x10000, 0x100)
                + b"\0" * 10 + matrix + b"\0" * 24 + struct.pack(">I", 2))
    return ftyp + _box(b"moov", mvhd) + _box(b"free", b"")


def png_bomb(side: int = 30000) -> bytes:
    """A 1-bit greyscale PNG of side x side pixels (900 megapixels at the default): every row
    zeros, so its IDAT is small, and a decoder that trusted it would allocate gigabytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    row = b"\0" * (1 + (side + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


SVG_WITH_SCRIPT = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" '
                   b'height="10"><script>alert(document.cookie)</script></svg>')


@dataclass
class Item:
    """What the media host answers for one path."""

    data: bytes
    content_type: str
    trickle_seconds: float = 0.0  # pause between bytes: a server that never finishes
    redirect_to: str | None = None  # answer a redirect there instead
    unavailable_first: int = 0  # answer this many requests 503 first, as a host under load


@dataclass
class MediaHost:
    """A host that serves files by path (Twilio's media host, Telnyx's), counting requests."""

    items: dict[str, Item] = field(default_factory=dict)
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, auth

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._serve)
        return app

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path, request.headers.get("Authorization", "")))
        item = self.items.get(request.path)
        if item is None:
            return web.Response(status=404, text="not found")
        if item.unavailable_first:
            item.unavailable_first -= 1
            return web.Response(status=503, text="try later")
        if item.redirect_to:
            raise web.HTTPTemporaryRedirect(item.redirect_to)
        if not item.trickle_seconds:
            return web.Response(body=item.data, content_type=item.content_type)
        response = web.StreamResponse(headers={"Content-Type": item.content_type})
        await response.prepare(request)
        try:
            for byte in item.data:
                await response.write(bytes([byte]))
                await asyncio.sleep(item.trickle_seconds)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client gave up on the trickle, as it should
        return response


@dataclass
class TwilioMediaApi:
    """Twilio's API host for media: GET redirects (307) to the media host, DELETE removes."""

    account_sid: str
    auth_token: str
    media_base: str  # the media host's base URL
    media: dict[str, str] = field(default_factory=dict)  # MediaSid -> path on the media host
    requests: list[tuple[str, str, bool]] = field(default_factory=list)  # method, path, authorised
    deleted: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        base = "/2010-04-01/Accounts/{sid}/Messages/{message}/Media/{media}"
        app.router.add_get(base, self._get)
        app.router.add_delete(base, self._delete)
        return app

    def url(self, api_base: str, message_sid: str, media_sid: str) -> str:
        return (f"{api_base}/2010-04-01/Accounts/{self.account_sid}/Messages/{message_sid}"
                f"/Media/{media_sid}")

    def _authorised(self, request: web.Request) -> bool:
        pair = f"{self.account_sid}:{self.auth_token}".encode()
        expected = "Basic " + base64.b64encode(pair).decode()
        return (request.match_info["sid"] == self.account_sid
                and hmac.compare_digest(request.headers.get("Authorization", ""), expected))

    async def _get(self, request: web.Request) -> web.Response:
        ok = self._authorised(request)
        self.requests.append(("GET", request.path, ok))
        if not ok:
            return web.json_response({"code": 20003, "message": "Authenticate", "status": 401},
                                     status=401)
        path = self.media.get(request.match_info["media"])
        if path is None:
            return web.json_response({"code": 20404, "message": "not found", "status": 404},
                                     status=404)
        raise web.HTTPTemporaryRedirect(self.media_base + path)

    async def _delete(self, request: web.Request) -> web.Response:
        ok = self._authorised(request)
        self.requests.append(("DELETE", request.path, ok))
        if not ok:
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        media_sid = request.match_info["media"].removesuffix(".json")
        if not request.match_info["media"].endswith(".json") or media_sid not in self.media:
            return web.json_response({"code": 20404, "message": "not found"}, status=404)
        self.deleted.append(media_sid)
        del self.media[media_sid]
        return web.Response(status=204)
