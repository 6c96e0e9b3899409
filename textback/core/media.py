"""What a homeowner's photo, video or file is, and how a text that carries them reads. No I/O.

A provider tells textback a media item's URL, its declared content type and
sometimes its size; the bytes arrive later (textback/workers/media.py). This
module decides, from values only:

- which declared types are worth fetching and showing (ALLOWED): photos,
  video, PDF and vCard; anything else is kept as a named attachment, never
  shown inline, and SVG or HTML is never rendered whatever it claims to be;
- whether the bytes are what was declared (their magic numbers), so a
  "photo" that is in fact HTML or SVG is not served as one;
- how a text reads where it is listed: "sent 2 photos", "(empty text)",
  never a blank line;
- for an owner's reply with photos (an MMS), which photos go as they are and which as a
  JPEG rendition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal

Kind = Literal["image", "video", "document"]

# The declared types textback shows: what MMS carries in practice (Twilio's and Telnyx's
# accepted types), each with its kind and the file extension it is saved and offered under.
ALLOWED: dict[str, tuple[Kind, str]] = {
    "image/jpeg": ("image", "jpg"),
    "image/png": ("image", "png"),
    "image/gif": ("image", "gif"),
    "image/webp": ("image", "webp"),
    "image/heic": ("image", "heic"),
    "image/heif": ("image", "heif"),
    "video/mp4": ("video", "mp4"),
    "video/3gpp": ("video", "3gp"),
    "video/quicktime": ("video", "mov"),
    "application/pdf": ("document", "pdf"),
    "text/vcard": ("document", "vcf"),
}
# Names providers and phones use for the same types.
ALIASES = {
    "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "video/3gpp2": "video/3gpp",
    "text/x-vcard": "text/vcard", "text/directory": "text/vcard", "image/heic-sequence": "image/heic",
    "image/heif-sequence": "image/heif",
}
# Never rendered, whatever the bytes say: they can carry script.
NEVER_RENDERED = frozenset({"image/svg+xml", "text/html", "application/xhtml+xml", "text/xml",
                            "application/xml"})
ATTACHMENT_TYPE = "application/octet-stream"  # how a kept-but-not-shown file is served

# ISO base media (ftyp) brands: HEIF stills, 3GPP, QuickTime; any other ftyp is MP4.
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif"}
_QUICKTIME_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}


def normalise_type(declared: str) -> str:
    """'Image/JPG; name=x' -> 'image/jpeg': lower case, no parameters, the usual name."""
    bare = declared.split(";", 1)[0].strip().lower()
    return ALIASES.get(bare, bare)


def kind_of(content_type: str) -> Kind | None:
    """The kind textback shows a type as, or None: kept as a named attachment only."""
    entry = ALLOWED.get(normalise_type(content_type))
    return entry[0] if entry else None


def extension(content_type: str) -> str:
    entry = ALLOWED.get(normalise_type(content_type))
    return entry[1] if entry else "bin"


def sniff(head: bytes) -> str | None:
    """The allowed type these first bytes (at least 32) belong to, by magic number, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:11].upper() == b"BEGIN:VCARD":
        return "text/vcard"
    box = head[4:8]
    if box == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            return "image/heic"
        if brand.startswith((b"3gp", b"3g2")):
            return "video/3gpp"
        if brand == b"qt  ":
            return "video/quicktime"
        return "video/mp4"
    if box in _QUICKTIME_ATOMS:
        return "video/quicktime"
    return None


def matches(declared: str, sniffed: str | None) -> bool:
    """Do the bytes (their sniffed type) agree with the declared type? HEIC and HEIF are one
    family, and so are MP4 and QuickTime (phones label one as the other)."""
    declared = normalise_type(declared)
    if sniffed is None:
        return False
    family = {"image/heif": "image/heic", "video/quicktime": "video/mp4"}
    return family.get(declared, declared) == family.get(sniffed, sniffed)


@dataclass(frozen=True)
class Shown:
    """How one item is listed: its kind (None: a named attachment) and whether it failed."""

    kind: Kind | None
    failed: bool = False


_NOUNS = {"image": ("photo", "photos"), "video": ("video", "videos"),
          "document": ("file", "files"), None: ("attachment", "attachments")}
EMPTY_TEXT = "(empty text)"


def media_phrase(items: Iterable[Shown]) -> str:
    """'2 photos and a video', or '' when there are none."""
    counts: dict[Kind | None, int] = {}
    for item in items:
        counts[item.kind] = counts.get(item.kind, 0) + 1
    parts = []
    for kind in ("image", "video", "document", None):
        n = counts.get(kind, 0)
        one, many = _NOUNS[kind]
        if n == 1:
            parts.append(f"{'an' if one[0] in 'aeiou' else 'a'} {one}")
        elif n > 1:
            parts.append(f"{n} {many}")
    if len(parts) > 1:
        return ", ".join(parts[:-1]) + " and " + parts[-1]
    return parts[0] if parts else ""


def summary(body: str, items: Iterable[Shown]) -> str:
    """A text as one line in a list: its words, else what it carried ('2 photos'), else
    '(empty text)'. Never blank."""
    if body.strip():
        return body
    phrase = media_phrase(items)
    if phrase:
        return phrase[0].upper() + phrase[1:]
    return EMPTY_TEXT


def sent_line(items: Iterable[Shown]) -> str:
    """'sent 2 photos' for an alert, '' when the text carried nothing; failures said so."""
    items = list(items)
    phrase = media_phrase(items)
    if not phrase:
        return ""
    failed = sum(1 for i in items if i.failed)
    tail = ""
    if failed:
        tail = (" (it could not be fetched)" if len(items) == 1
                else f" ({failed} could not be fetched)")
    return f"sent {phrase}{tail}"


def shown_items(rows: Iterable[Any]) -> list[Shown]:
    """Media rows as the counting functions of textback.core.media want them."""
    out = []
    for row in rows:
        kind = kind_of(row["content_type"] or row["declared_type"]) if (
            row["state"] != "kept" or row["shown"]) else None
        out.append(Shown(kind, failed=row["state"] == "failed"))
    return out


@dataclass(frozen=True)
class Attachment:
    """A file an owner attached to a reply (an email's part, a web upload), to text as MMS.
    `name` is the sender's, shown back to the owner only; never a path."""

    name: str
    declared_type: str
    data: bytes


# Photos an MMS carries as they are when small; a larger one, or a HEIC or WebP photo (which
# many phones cannot show), goes as a JPEG of at most 1280 px (textback.mediafiles).
MMS_PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/gif"})
MMS_PHOTO_BYTES = 600_000


def needs_mms_rendition(content_type: str, size: int) -> bool:
    """Does a checked photo go as a JPEG rendition rather than as it is? A GIF never does (it
    may be animated): one too large for the MMS is refused instead."""
    content_type = normalise_type(content_type)
    if kind_of(content_type) != "image" or content_type == "image/gif":
        return False
    return content_type not in MMS_PHOTO_TYPES or size > MMS_PHOTO_BYTES


def not_sent_lines(refused: Iterable[tuple[str, str]]) -> str:
    """'    IMG_1.svg: not sent: image/svg+xml is never shown' lines for an owner's notice; a
    sender's file name is one printable line of at most 80 characters (never a header)."""
    def shown(name: str) -> str:
        cleaned = " ".join("".join(c if c.isprintable() else " " for c in name).split())
        return cleaned if len(cleaned) <= 80 else cleaned[:79] + "…"
    return "".join(f"\n    {shown(name) or 'an unnamed file'}: {why}" for name, why in refused)
