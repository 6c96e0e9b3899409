"""Whether the daemon is healthy, and if not, what is wrong, in words (pure)."""

from __future__ import annotations


def problems(ami_logged_in: bool, store_error: str | None, oldest_due_age: float | None,
             max_due_age: float) -> list[str]:
    """Each thing that keeps textback from texting missed callers now; empty when healthy."""
    found = []
    if not ami_logged_in:
        found.append("AMI is not logged in: calls are not seen")
    if store_error is not None:
        found.append(f"the database does not answer: {store_error}")
    if oldest_due_age is not None and oldest_due_age > max_due_age:
        found.append(f"a text has been due for {oldest_due_age / 60:.0f} min without being sent "
                     f"(limit {max_due_age / 60:g} min)")
    return found
