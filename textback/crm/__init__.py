"""CRM adapters: the webhook events, followed into a CRM's own API (HubSpot, GoHighLevel, ...).

An adapter is a class in the `textback.crm` entry-point group (the built-in
ones are registered in pyproject.toml like a third party's would be). It gets
its options and token from the config and one event at a time, with the
conversation's thread so far; it raises `CrmRetry` for a try that failed.
The delivery worker treats it as one more endpoint: the same outbox, order
per conversation, backoff, expiry and delivery log as the webhooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import aiohttp

GROUP = "textback.crm"


class CrmRetry(Exception):
    """A try that failed: its HTTP status (if any), why, and the CRM's Retry-After."""

    def __init__(self, status: int | None, error: str, retry_after: float | None = None):
        super().__init__(error)
        self.status = status
        self.retry_after = retry_after


class Adapter(Protocol):
    events: tuple[str, ...]  # the event types it acts on

    def __init__(self, options: dict[str, Any], token: str, http: aiohttp.ClientSession): ...

    async def handle(self, event: dict[str, Any], thread: list[dict[str, Any]]) -> None: ...


@dataclass(frozen=True)
class Lead:
    """Whom an event is about, as a CRM matches people: the number, a name, the owner's id."""

    phone: str
    name: str
    owner_id: str


def lead_of(event: dict[str, Any]) -> Lead | None:
    """The caller an event is about; None for a withheld number (nothing to match them by)."""
    data = event["data"]
    phone = data.get("from") if event["type"] == "reply.received" else data.get("caller")
    if not phone:
        return None
    return Lead(phone, data.get("contact_name") or data.get("caller_name") or "",
                data.get("owner_id") or "")


def intake_mapping(options: dict[str, Any], key: str) -> dict[str, str]:
    """An adapter's map of intake fields to the CRM's names (`options[key]`); a field that is
    not an intake field is refused when the adapter is built, never ignored."""
    from textback.core.intake import FIELDS

    mapping = {str(k): str(v) for k, v in (options.get(key) or {}).items()}
    unknown = sorted(set(mapping) - set(FIELDS))
    if unknown:
        raise ValueError(f"options.{key} names {', '.join(unknown)}: the intake fields are "
                         f"{', '.join(FIELDS)}")
    return mapping


def intake_values(event: dict[str, Any], mapping: dict[str, str]) -> dict[str, str]:
    """A reply.received event's intake facts under the CRM's own field names: `mapping` (an
    adapter's option) names, for each intake field, the property or custom field that holds
    it; each gets the fact's canonical value (a person's value, when one was set)."""
    facts = event["data"].get("intake") or {} if event["type"] == "reply.received" else {}
    return {target: facts[name]["value"] for name, target in mapping.items() if name in facts}


def adapter_class(kind: str) -> type:
    """The adapter registered as `kind` in the textback.crm group; LookupError naming the known."""
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    if kind not in found:
        raise LookupError(f"no CRM adapter {kind!r} in the {GROUP} entry points "
                          f"(installed: {', '.join(sorted(found)) or 'none'})")
    return found[kind].load()
