"""The text of a CRM note: the missed call and the conversation so far. No I/O."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from textback.core.media import Shown, kind_of, media_phrase, summary
from textback.core.media import shown_items

MAX_NOTE_CHARS = 60_000  # under HubSpot's 65,536; GoHighLevel documents no lower limit


def _when(value: float | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value).timestamp()
    return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _declared(media: list[dict[str, Any]]) -> list:
    """A webhook's media items as the counting functions want them (by declared type)."""
    return [Shown(kind_of(item["content_type"] or "")) for item in media]


def note_text(event: dict[str, Any], thread: list[dict[str, Any]]) -> str:
    """What happened (a missed call, a reply, with links to its photos), then every text of the
    thread, oldest first (a photo-only text as "2 photos")."""
    data = event["data"]
    if event["type"] == "call.missed":
        head = (f"Missed call from {data['caller']} to {data['business_number']} at "
                f"{_when(data['ended_at'])} ({data['reason']}); "
                f"{'a text-back was queued' if data['text_queued'] else 'no text-back: ' + data['decision']}.")
    else:
        head = f"Text from {data['from']} to {data['to']} at {_when(data['received_at'])}."
    lines = [head]
    media = data.get("media") or [] if event["type"] == "reply.received" else []
    if media:
        lines += ["", f"They sent {media_phrase(_declared(media))}"
                      f"{' (links work for a few days)' if media[0]['url'] else ''}:"]
        lines += [f"  {item['content_type'] or 'a file'}: {item['url'] or '(in the textback inbox)'}"
                  for item in media]
    lines += ["", "Conversation so far (textback):"]
    for message in thread:
        who = "Caller" if message["direction"] == "in" else "Business"
        body = message["body"]
        if message["direction"] == "in":
            body = summary(body, shown_items(message.get("media", [])))
        lines.append(f"{_when(message['created_at'])}  {who}: {body}")
    if not thread:
        lines.append("(no texts yet)")
    text = "\n".join(lines)
    return text if len(text) <= MAX_NOTE_CHARS else text[:MAX_NOTE_CHARS - 1] + "…"
