"""Writing a file so that a reader sees the old file or the whole new one, never half of
either, and a crash just after leaves the new one on disk.

The bytes go to a temporary file in the same directory, are flushed to the disk, take their
mode (and group) before anyone can open them, and are renamed over the target in one step;
a failure on the way removes the temporary file. Used for what is read while it is being
replaced (the AGI script's routing table), what was accepted from a caller (a photo), and
what guards a sign-in (an MSP admin's password hash).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_durably(path: Path, data: bytes, mode: int, group: int | None = None) -> None:
    """Replace `path` by `data` in one step, with `mode` and, when given, `group`."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(descriptor, mode)
        if group is not None:
            os.fchown(descriptor, -1, group)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
