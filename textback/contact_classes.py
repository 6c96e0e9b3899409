"""A caller's class set in the web inbox, as the rules see it. Pure.

The inbox's class wins over the config's `contacts` and `contacts_csv`
(which stay as they are); "lead" makes the caller an ordinary one again.
"""

from __future__ import annotations

from textback.config import Config, ContactConfig

CLASSES = ("lead", "client", "vendor", "staff", "blocked")


def configured_class(config: Config, number: str) -> str:
    contact = config.contact(number)
    return contact.kind if contact is not None else "lead"


def with_class(config: Config, number: str, kind: str) -> Config:
    """`config` with `number`'s contact entry replaced by one of class `kind` (none for a lead)."""
    existing = config.contact(number)
    contacts = [c for c in config.contacts if c.number != number]
    if kind != "lead":
        contacts.insert(0, ContactConfig.model_validate(
            {"number": number, "name": existing.name if existing else "", "class": kind}))
    return config.model_copy(update={"contacts": contacts})
