"""`textback` subcommands that belong to one room each; importing a module registers its commands."""
from textback.commands import hooks  # noqa: F401
from textback.commands import tokens  # noqa: F401
