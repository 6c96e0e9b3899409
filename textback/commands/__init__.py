"""`textback` subcommands that belong to one room each; importing a module registers its commands."""

from textback.commands import consent, hooks, init, ops, retention, selftest, tokens, web  # noqa: F401
