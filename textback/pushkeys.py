"""The VAPID key pair (RFC 8292) that signs every push: made once, kept in the state directory.

A browser's subscription is bound to the public key it was made with, so the key must outlive
restarts and upgrades: it is made at `textback init` or the first start, written 0600 (never
replaced once there), and read from then on.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02


def load_or_create(path: Path) -> Vapid02:
    """The key pair in `path`, made there first if absent (created with O_EXCL and mode 0600,
    so two processes starting at once keep the same key and no other user can read it)."""
    if not path.exists():
        key = Vapid02()
        key.generate_keys()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: read theirs
        else:
            with os.fdopen(fd, "wb") as out:
                out.write(key.private_pem())
            return key
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        os.chmod(path, 0o600)  # a copied file keeps no group or world access
    return Vapid02.from_pem(path.read_bytes())


def application_server_key(key: Vapid02) -> str:
    """The public key as the browser's PushManager.subscribe wants it: the uncompressed P-256
    point, base64url without padding."""
    raw = key.public_key.public_bytes(serialization.Encoding.X962,
                                      serialization.PublicFormat.UncompressedPoint)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
