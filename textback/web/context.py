"""What the HTTP rooms (inbox, reports, API, operations, consent page) may use of the running
daemon, and nothing more: the config, the open store, the metrics, the media files, a way to
wake the outbox, signed media links, the check of an owner's photos for MMS and the AMI state.

The daemon builds one once its store is open; a room never sees the daemon itself, so no
room can reach into a worker's state, and the web package never imports the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

from textback.config import Config, Secrets
from textback.core.media import Attachment
from textback.core.msp import MspAccess
from textback.mediafiles import MediaStore, Outbound
from textback.ops.metrics import Metrics
from textback.store import Store

# Signed links to media under web.public_url, valid media.link_hours from a moment: (media id,
# moment) -> URL; None without a `web:` listener to serve them.
MediaLinker = Callable[[int, float], str]


@dataclass(frozen=True)
class HttpContext:
    config: Config
    secrets: Secrets
    store: Store
    metrics: Metrics
    media_files: MediaStore
    wake_outbox: Callable[[], None]  # a reply was queued: the outbox sends it now
    media_linker: Callable[[], Awaitable[MediaLinker | None]]
    ami_logged_in: Callable[[], bool]
    last_ami_event_at: Callable[[], float | None]  # a logged-in connection's last event, or None
    # An owner's attachments to a reply, checked for the gateway's MMS and stored (or each
    # refused, saying why): textback.mediafiles.accept_outbound on the daemon's gateway.
    outbound_media: Callable[[Sequence[Attachment]], Awaitable[Outbound]]
    # A fleet's MSP admins, who may sign in here by the console's hand-off (None: no console).
    msp: MspAccess | None = None
