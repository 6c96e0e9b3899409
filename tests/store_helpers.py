"""Reading the store the way no production path needs to: for assertions only."""

from __future__ import annotations

from textback.store import Store


async def outbox_states(store: Store) -> dict[str, int]:
    """How many outbox rows are in each state."""
    rows = await store._all("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state")
    return {row["state"]: row["n"] for row in rows}
