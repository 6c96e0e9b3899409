"""`textback` subcommands that belong to one room each; importing a module registers its commands."""
from textback.commands import selftest  # noqa: F401
from textback.commands import init  # noqa: F401
