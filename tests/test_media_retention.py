"""Retention prunes a text's media with it: the rows in the batch, the files no row names after.

`textback prune --dry-run` counts the photos (and their bytes) that would go;
a prune removes their rows and then their files, but never a file a newer
text still names (the same photo sent again is one file), nor one written in
the last hour (its row may not be committed yet).
"""

from __future__ import annotations

import asyncio
import os
import time

from click.testing import CliRunner

from lab.configs import BUSINESS_NUMBER, HOMEOWNER, base_config, write_config
from textback.cli import main
from textback.mediafiles import MediaStore
from textback.pruning import prune
from textback.store import NewMedia, Store
from tests.providers.media import jpeg, png

DAY = 86400.0


async def text_with(store: Store, files: MediaStore, data: bytes, declared: str,
                    sender: str = HOMEOWNER) -> tuple[int, str]:
    digest = files.put(data)
    record = await store.record_inbound(sender, BUSINESS_NUMBER, "", "log", None, "dana", media=[
        NewMedia("", declared, len(data), digest, declared, True, len(data))])
    await store._db.execute("UPDATE alerts SET state = 'sent' WHERE id = ?", (record.alert_id,))
    await store._db.commit()
    return record.message_id, digest


async def test_prune_counts_then_removes_media_rows_and_their_files(tmp_path):
    config = write_config(tmp_path, base_config(tmp_path, **{"retention.months": 1}))
    files = MediaStore(tmp_path / "media")
    old_photo, kept_photo, shared = jpeg(), png(), jpeg(320, 240, "olive")
    store = await Store.open(tmp_path / "textback.db")
    try:
        old_id, old_digest = await text_with(store, files, old_photo, "image/jpeg")
        old_shared, shared_digest = await text_with(store, files, shared, "image/jpeg",
                                                    sender="+12125550124")
        await text_with(store, files, kept_photo, "image/png", sender="+12125550125")
        await text_with(store, files, shared, "image/jpeg", sender="+12125550126")  # recent
        long_ago = time.time() - 120 * DAY
        await store._db.execute("UPDATE messages SET created_at = ? WHERE id IN (?, ?)",
                                (long_ago, old_id, old_shared))
        await store._db.commit()
    finally:
        await store.close()
    for digest in (old_digest, shared_digest):
        os.utime(files.path(digest), (long_ago, long_ago))

    dry = await asyncio.to_thread(CliRunner().invoke, main, ["prune", "-c", str(config),
                                                             "--dry-run"])
    assert dry.exit_code == 0, dry.output
    megabytes = (len(old_photo) + len(shared)) / 1024 / 1024
    assert ("2 message(s) and 2 alert(s) would be deleted, with 2 photo(s) or file(s) "
            f"({megabytes:.1f} MB).") in dry.stdout
    assert files.path(old_digest).exists()  # a dry run touches nothing

    store = await Store.open(tmp_path / "textback.db")
    try:
        result = await prune(store, 1, "America/New_York", files=files)
        left = await store._all("SELECT sha256 FROM media ORDER BY id")
    finally:
        await store.close()
    assert result.deleted["media"] == 2 and result.files_removed == 1
    assert not files.path(old_digest).exists()
    assert files.path(shared_digest).exists()  # a recent text names the same photo
    assert len(left) == 2 and old_digest not in {row["sha256"] for row in left}


async def test_the_digest_lists_a_photo_only_text_as_what_it_carried(offline_daemon, smtp_sink):
    daemon = await offline_daemon(digest={"daily_at": "07:30"})
    files = MediaStore(daemon.config.storage.path.parent / "media")
    await text_with(daemon.store, files, jpeg(), "image/jpeg")
    await daemon.mail.send_digest(time.time() + 60)
    [mail] = await asyncio.to_thread(smtp_sink.wait_for, 1, 10)
    assert f"{HOMEOWNER}: A photo" in mail.message.get_content()
