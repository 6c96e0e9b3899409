"""A push service on loopback (RFC 8030) that checks what a real one checks and proves the rest.

Built from the RFCs, not from textback: each subscription it hands out has a P-256 key pair
and an auth secret made here (as a browser makes them), so it can check the VAPID token
(RFC 8292: ES256, `aud` the endpoint's origin, `exp` within 24 hours, `sub` a mailto:) and
decrypt the body (RFC 8291 over RFC 8188 aes128gcm) with the browser's private key, written
out below with `cryptography` alone. A message that fails a check is answered as a push
service answers it (400, 401, 403) and kept in `refused`; one that passes is kept, decrypted,
in `received`. `answers` queues the statuses to give next (503, 410...), per subscription.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
import secrets

PUSH_SERVICE_PORT = 18095


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def raw_public(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.X962,
                                         serialization.PublicFormat.UncompressedPoint)


def decrypt(body: bytes, private_key: ec.EllipticCurvePrivateKey, auth_secret: bytes) -> bytes:
    """RFC 8291 section 3.4 and RFC 8188 section 2: one record, its padding delimiter 0x02."""
    salt, record_size, id_length = body[:16], struct.unpack(">I", body[16:20])[0], body[20]
    sender_public = body[21:21 + id_length]
    ciphertext = body[21 + id_length:]
    assert id_length == 65 and sender_public[0] == 4, "keyid is not an uncompressed P-256 point"
    assert len(ciphertext) <= record_size, "more than one record"
    sender = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sender_public)
    shared = private_key.exchange(ec.ECDH(), sender)
    key_info = b"WebPush: info\x00" + raw_public(private_key) + sender_public
    ikm = _hkdf(auth_secret, shared, key_info, 32)
    cek = _hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
    nonce = _hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
    padded = AESGCM(cek).decrypt(nonce, ciphertext, None)
    unpadded = padded.rstrip(b"\x00")
    assert unpadded.endswith(b"\x02"), "the last record's delimiter is not 0x02"
    return unpadded[:-1]


def check_vapid(authorization: str, audience: str, now: float) -> dict[str, Any]:
    """RFC 8292 section 3: `vapid t=<JWT>, k=<public key>`; the JWT's claims, or AssertionError."""
    scheme, _, params = authorization.partition(" ")
    assert scheme.lower() == "vapid", f"scheme {scheme!r} is not vapid"
    parts = dict(p.strip().split("=", 1) for p in params.split(","))
    token, key = parts["t"], unb64url(parts["k"])
    header_b64, claims_b64, signature_b64 = token.split(".")
    header = json.loads(unb64url(header_b64))
    assert header.get("alg") == "ES256" and header.get("typ", "JWT") == "JWT", header
    signature = unb64url(signature_b64)
    assert len(signature) == 64, "an ES256 signature is r||s, 64 bytes"
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key)
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                               int.from_bytes(signature[32:], "big"))
    try:
        public.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise AssertionError("the JWT's signature does not verify with k") from None
    claims = json.loads(unb64url(claims_b64))
    assert claims.get("aud") == audience, f"aud {claims.get('aud')!r} is not {audience!r}"
    assert now < claims["exp"] <= now + 24 * 3600, f"exp {claims['exp']} not within 24 h"
    assert str(claims.get("sub", "")).startswith("mailto:"), f"sub {claims.get('sub')!r}"
    return claims | {"k": parts["k"]}


@dataclass
class Subscription:
    token: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    def form(self) -> dict[str, str]:
        """What the browser posts to /push/subscribe."""
        return {"endpoint": self.endpoint, "p256dh": b64url(raw_public(self.private_key)),
                "auth": b64url(self.auth)}


@dataclass
class Received:
    token: str
    headers: dict[str, str]
    claims: dict[str, Any]
    payload: dict[str, Any]
    at: float


@dataclass
class PushService:
    port: int = PUSH_SERVICE_PORT
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    answers: dict[str, list[int]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    tries: int = 0
    _runner: web.AppRunner | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def subscribe(self) -> Subscription:
        token = secrets.token_urlsafe(16)
        made = Subscription(token, f"{self.origin}/wpush/v2/{token}",
                            ec.generate_private_key(ec.SECP256R1()), secrets.token_bytes(16))
        self.subscriptions[token] = made
        return made

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/wpush/v2/{token}", self._push)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> "PushService":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def _push(self, request: web.Request) -> web.Response:
        self.tries += 1
        subscription = self.subscriptions.get(request.match_info["token"])
        if subscription is None:
            return web.Response(status=404, text="no such subscription")
        queued = self.answers.get(subscription.token) or []
        body = await request.read()
        try:
            assert request.headers.get("Content-Encoding") == "aes128gcm", "not aes128gcm"
            assert request.headers.get("TTL", "").isdigit(), "no TTL header (RFC 8030 5.2)"
            claims = check_vapid(request.headers.get("Authorization", ""), self.origin, time.time())
        except (AssertionError, KeyError, ValueError) as problem:
            self.refused.append(f"403 {problem}")
            return web.Response(status=403, text=str(problem))
        try:
            payload = json.loads(decrypt(body, subscription.private_key, subscription.auth))
        except (AssertionError, InvalidTag, ValueError, IndexError) as problem:
            self.refused.append(f"400 cannot decrypt: {problem!r}")
            return web.Response(status=400, text="cannot decrypt")
        if queued:
            status = queued.pop(0)
            if status >= 300:
                return web.Response(status=status, text="as the test asked")
        self.received.append(Received(subscription.token, dict(request.headers), claims, payload,
                                      time.time()))
        return web.Response(status=201, headers={"Location": f"{self.origin}/m/{self.tries}"})
