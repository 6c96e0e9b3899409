"""Media on disk: fetched bytes checked, stored by their SHA-256, renditions made.

Files live under the state directory (`media.directory`, by default `media/`
next to the database), at `<aa>/<bb>/<sha256>`: the same photo sent twice is
one file, a name never comes from a provider or a homeowner, and the database
holds only the digest. A file is written to a temporary name and renamed, so a
crash never leaves half a photo under a digest.

`inspect` decides how an item may be shown. Its bytes must be what was
declared (magic numbers, then Pillow for images, whose pixel count must stay
under MAX_PIXELS: a decompression bomb is an error, never a warning).
Anything else is kept as a named attachment, served only for download.
HEIC/HEIF photos get a JPEG rendition for browsers and email; the original is
kept. An owner's alert attaches the photos as smaller JPEGs, up to a total
(`alert_attachments`). An owner's attachments to a reply pass the same checks
(`prepare_outbound`) before they are texted as MMS. All of this is CPU work:
callers run it in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from PIL import Image, ImageOps
from pillow_heif import register_heif_opener

from sms_gateway.base import mms_limits
from textback.core import media
from textback.core.media import shown_items
from textback.durable import write_durably
from textback.store.media import NewMedia

if TYPE_CHECKING:
    from textback.config import Config

register_heif_opener()

# The daemon alone reads what callers sent; the web serves it through signed links.
MEDIA_FILE_MODE = 0o600
# A photo of more pixels than this is refused before it is decoded (a 48-megapixel phone
# camera is well under it). Pillow's own check only warns below twice its limit.
MAX_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
RENDITION_MAX_SIDE = 2048  # the JPEG made from a HEIC photo, for browsers and email
RENDITION_QUALITY = 85
EMAIL_MAX_SIDE = 1280  # a photo attached to an owner's alert


@dataclass(frozen=True)
class Inspected:
    """How a fetched item is kept: `shown` (inline) or only as a named attachment, and why."""

    content_type: str  # the type it is served as: the checked type, or application/octet-stream
    shown: bool
    note: str = ""  # why it is not shown, for the thread and the owner
    width: int | None = None
    height: int | None = None


def inspect(data: bytes, declared: str) -> Inspected:
    """Check `data` against its declared type."""
    declared = media.normalise_type(declared)
    if declared in media.NEVER_RENDERED:
        return Inspected(media.ATTACHMENT_TYPE, False, f"{declared} is never shown")
    if media.kind_of(declared) is None:
        return Inspected(media.ATTACHMENT_TYPE, False,
                         f"{declared or 'an undeclared type'} is not a type textback shows")
    sniffed = media.sniff(data[:64])
    if not media.matches(declared, sniffed):
        return Inspected(media.ATTACHMENT_TYPE, False,
                         f"declared {declared} but the file is "
                         f"{sniffed or 'not a type textback recognises'}")
    if media.kind_of(declared) != "image":
        return Inspected(declared, True)
    try:
        width, height = _checked_image(data)
    except ValueError as exc:
        return Inspected(media.ATTACHMENT_TYPE, False, str(exc))
    return Inspected(declared, True, width=width, height=height)


def _checked_image(data: bytes) -> tuple[int, int]:
    """Open (headers only), bound the pixel count, then let Pillow verify the file."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ValueError(f"a {width}x{height} image is more pixels than textback decodes "
                                 f"(a decompression bomb?)")
            image.verify()
    except Image.DecompressionBombError as exc:
        raise ValueError(f"refused as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, ValueError) and "pixels" in str(exc):
            raise
        raise ValueError(f"not a readable image: {exc}") from None
    return width, height


def jpeg_rendition(data: bytes, max_side: int = RENDITION_MAX_SIDE) -> bytes:
    """A JPEG of an already inspected image, turned upright and at most `max_side` pixels."""
    with Image.open(io.BytesIO(data)) as image:
        upright = ImageOps.exif_transpose(image)
        upright.thumbnail((max_side, max_side))
        out = io.BytesIO()
        upright.convert("RGB").save(out, "JPEG", quality=RENDITION_QUALITY)
        return out.getvalue()


@dataclass
class MediaCopy:
    """What `MediaStore.copy_from` did: files copied, already there, and those it could not
    copy (missing from the source, or whose bytes no longer match their digest)."""

    copied: int = 0
    present: int = 0
    missing: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)


class MediaStore:
    """Content-addressed files under one directory."""

    def __init__(self, directory: Path):
        self.directory = directory

    def path(self, digest: str) -> Path:
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError("not a SHA-256 hex digest")
        return self.directory / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes) -> str:
        """Store `data` (once) and return its digest."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        write_durably(target, data, MEDIA_FILE_MODE)
        return digest

    def read(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def copy_from(self, other: "MediaStore", digests: set[str]) -> MediaCopy:
        """Each file `digests` names, from `other` into this directory (`textback
        migrate-store`): read, checked against its name (a damaged file is not copied) and
        written as `put` writes. A file already here is kept."""
        done = MediaCopy()
        for digest in sorted(digests):
            if self.path(digest).is_file():
                done.present += 1
                continue
            try:
                data = other.read(digest)
            except FileNotFoundError:
                done.missing.append(digest)
                continue
            if hashlib.sha256(data).hexdigest() != digest:
                done.damaged.append(digest)
                continue
            self.put(data)
            done.copied += 1
        return done


    def remove_unreferenced(self, referenced: set[str], older_than: float) -> tuple[int, int]:
        """Delete the files no media row names (their texts were pruned), and temporary files
        a crash left; only those last changed before `older_than` (a file is written just
        before its row is committed). Returns (files, bytes) removed."""
        files = size = 0
        if not self.directory.is_dir():
            return 0, 0
        for path in self.directory.glob("??/??/*"):
            if path.name in referenced or not path.is_file():
                continue
            stat = path.stat()
            if stat.st_mtime >= older_than:
                continue
            path.unlink(missing_ok=True)
            files, size = files + 1, size + stat.st_size
        return files, size


@dataclass(frozen=True)
class Attached:
    """What an owner's alert carries of a text's photos: (filename, JPEG bytes) and a line
    about what did not fit or cannot be attached ("" when everything is attached)."""

    files: tuple[tuple[str, bytes], ...] = ()
    left_out: str = ""


def alert_attachments(files: "MediaStore", rows: list[dict[str, Any]], cap_bytes: int) -> Attached:
    """JPEG renditions of a text's kept photos, resized for email, until `cap_bytes` in all.
    CPU work (Pillow): run in a thread."""
    attached: list[tuple[str, bytes]] = []
    total = 0
    not_attached = []
    for n, row in enumerate(rows, start=1):
        kind = media.kind_of(row["content_type"]) if row["state"] == "kept" and row["shown"] else None
        if kind != "image":
            if row["state"] == "kept":
                not_attached.append(row)
            continue
        data = jpeg_rendition(files.read(row["rendition_sha256"] or row["sha256"]), EMAIL_MAX_SIDE)
        if total + len(data) > cap_bytes:
            not_attached.append(row)
            continue
        total += len(data)
        attached.append((f"photo-{n}.jpg", data))
    left_out = ""
    if not_attached:
        phrase = media.media_phrase(shown_items(not_attached))
        left_out = (f"{phrase[0].upper() + phrase[1:]} {'is' if len(not_attached) == 1 else 'are'}"
                    f" not attached (too large for one email, or not a photo): see the thread.")
    return Attached(tuple(attached), left_out)


def media_directory(config: "Config") -> Path:
    """Where media files are kept: `media.directory`, else `media/` beside the database."""
    return config.media.directory or config.storage.path.parent / "media"


MMS_MAX_SIDE = EMAIL_MAX_SIDE  # a photo an owner texts, when it goes as a JPEG rendition
# An attachment larger than this is refused before Pillow reads it: no MMS carries it.
OUTBOUND_READ_BYTES = 25 * 1024 * 1024


@dataclass(frozen=True)
class OutboundFile:
    """An owner's attachment, checked and on disk: the original (`sha256`) and, when it goes
    as a JPEG, the rendition the provider fetches (`rendition_sha256`)."""

    name: str
    declared_type: str
    content_type: str
    size: int
    sha256: str
    rendition_sha256: str | None
    sent_bytes: int  # what the provider fetches: the rendition's size, else the original's

    def row(self) -> NewMedia:
        """Its media row, committed with the reply (kept: the file is already on disk)."""
        return NewMedia(url="", declared_type=self.declared_type, sha256=self.sha256,
                        content_type=self.content_type, shown=True, size=self.size,
                        rendition_sha256=self.rendition_sha256)


@dataclass(frozen=True)
class Outbound:
    """What of an owner's attachments goes as MMS, and (name, why) for each that does not."""

    files: tuple[OutboundFile, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()

    def rows(self) -> list[NewMedia]:
        return [file.row() for file in self.files]


async def accept_outbound(files: MediaStore, gateway: object, public_url: str | None,
                          attachments: Sequence[media.Attachment]) -> Outbound:
    """An owner's attachments to a reply (email or web inbox), as the reply is accepted: on a
    gateway that sends MMS with a `web:` listener to serve them, checked and stored
    (prepare_outbound, in a thread); else each refused, saying why, and the words go alone."""
    if not attachments:
        return Outbound()
    limits = mms_limits(gateway)
    if limits is None or public_url is None:
        why = (f"the {getattr(gateway, 'name', '?')} gateway texts words only" if limits is None
               else "no `web:` listener (web.public_url) serves photos to the provider")
        return Outbound(refused=tuple((a.name, f"not sent: {why}") for a in attachments))
    return await asyncio.to_thread(prepare_outbound, files, list(attachments),
                                   limits.max_items, limits.max_bytes)


def prepare_outbound(files: MediaStore, attachments: list[media.Attachment],
                     max_items: int, max_bytes: int) -> Outbound:
    """Check an owner's attachments as inbound media is checked (the type allowlist, bytes
    that match it, Pillow's pixel cap: SVG, HTML or a disguised file is refused), make JPEG
    renditions where needed, keep the MMS within the gateway's limits, and store what goes.
    CPU and disk work: run in a thread, before the reply's commit."""
    kept: list[OutboundFile] = []
    refused: list[tuple[str, str]] = []
    total = 0
    for attachment in attachments:
        name, data = attachment.name, attachment.data
        if len(kept) >= max_items:  # before any decoding: a hundred files cost nothing
            refused.append((name, f"an MMS carries at most {max_items} files"))
            continue
        if len(data) > OUTBOUND_READ_BYTES:
            refused.append((name, f"{len(data) / 1e6:.1f} MB is more than any MMS carries"))
            continue
        checked = inspect(data, attachment.declared_type)
        if not checked.shown:
            refused.append((name, f"not sent: {checked.note}"))
            continue
        rendition = None
        if media.needs_mms_rendition(checked.content_type, len(data)):
            rendition = jpeg_rendition(data, MMS_MAX_SIDE)
        sent = len(rendition) if rendition is not None else len(data)
        if total + sent > max_bytes:
            refused.append((name, f"{sent / 1e6:.1f} MB would make the MMS more than "
                                  f"{max_bytes / 1e6:.1f} MB, the provider's limit"))
            continue
        total += sent
        kept.append(OutboundFile(name, attachment.declared_type, checked.content_type, len(data),
                                 files.put(data), files.put(rendition) if rendition else None,
                                 sent))
    return Outbound(tuple(kept), tuple(refused))
