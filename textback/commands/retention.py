"""`textback prune`: forget calls, texts and alerts older than retention.months."""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import click

from textback.commands.common import config_option, load_config, with_store


@click.command()
@config_option
@click.option("--dry-run", is_flag=True, help="Say what would go; change nothing.")
def prune(config_path: str | None, dry_run: bool) -> None:
    """Delete calls, texts and alerts older than retention.months (whole months), keeping each
    month's scorecard first. Opt-outs are never pruned. The daemon may keep running."""
    from textback.mediafiles import media_directory
    from textback.mediafiles import MediaStore
    from textback.pruning import prune as run_prune

    loaded = load_config(config_path)
    months = loaded.config.retention.months
    if months is None:
        click.echo("retention.months is not set: everything is kept, nothing to prune.")
        return
    tz = loaded.config.business.timezone
    files = MediaStore(media_directory(loaded.config))
    result = asyncio.run(with_store(loaded, lambda store: run_prune(
        store, months, tz, dry_run=dry_run, files=files)))
    horizon = datetime.fromtimestamp(result.horizon, ZoneInfo(tz)).strftime("%Y-%m-%d")
    verb = "would be" if dry_run else "were"
    counts = result.deleted
    click.echo(f"Before {horizon} ({months} months kept): {counts['calls']} call(s), "
               f"{counts['messages']} message(s) and {counts['alerts']} alert(s) {verb} deleted, "
               f"with {counts['media']} photo(s) or file(s) "
               f"({counts['media_bytes'] / 1024 / 1024:.1f} MB).")
    if counts["reply_tokens"]:
        click.echo(f"{counts['reply_tokens']} expired reply address(es) {verb} deleted.")
    if counts["quotes"]:
        click.echo(f"{counts['quotes']} reply address(es) {verb} cleared of what their alert "
                   "email showed.")
    if result.months_kept:
        click.echo(f"Scorecards {verb} kept for {', '.join(result.months_kept)}.")
    if not dry_run and result.batch_seconds:
        click.echo(f"{len(result.batch_seconds)} batch(es); the longest held the write lock "
                   f"{result.longest_batch * 1000:.0f} ms.", err=True)
