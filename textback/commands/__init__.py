"""`textback` subcommands that belong to one room each; importing a module registers its commands."""

from textback.commands import (compliance, consent, hooks, init, ops, retention,  # noqa: F401
                               selftest, tokens, web)
