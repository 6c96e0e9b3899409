"""The text of a CRM note: the missed call and the conversation so far. No I/O."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

MAX_NOTE_CHARS = 60_000  # under HubSpot's 65,536; GoHighLevel documents no lower limit


def _when(value: float | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value).timestamp()
    return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def note_text(event: dict[str, Any], thread: list[dict[str, Any]]) -> str:
    """What happened (a missed call, a reply), then every text of the thread, oldest first."""
    data = event["data"]
    if event["type"] == "call.missed":
        head = (f"Missed call from {data['caller']} to {data['business_number']} at "
                f"{_when(data['ended_at'])} ({data['reason']}); "
                f"{'a text-back was queued' if data['text_queued'] else 'no text-back: ' + data['decision']}.")
    else:
        head = f"Text from {data['from']} to {data['to']} at {_when(data['received_at'])}."
    lines = [head, "", "Conversation so far (textback):"]
    for message in thread:
        who = "Caller" if message["direction"] == "in" else "Business"
        lines.append(f"{_when(message['created_at'])}  {who}: {message['body']}")
    if not thread:
        lines.append("(no texts yet)")
    text = "\n".join(lines)
    return text if len(text) <= MAX_NOTE_CHARS else text[:MAX_NOTE_CHARS - 1] + "…"
