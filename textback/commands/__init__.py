"""`textback` subcommands that belong to one room each; importing a module registers its commands."""
import textback.commands.web  # noqa: F401
