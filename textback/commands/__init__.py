"""`textback` subcommands that belong to one room each; importing a module registers its commands."""

from textback.commands import init, ops, retention, selftest, web  # noqa: F401
