"""`textback` subcommands that belong to one room each. They import only
textback.commands.common, never textback.cli; cli.py adds each of COMMANDS to its group."""

from textback.commands import (compliance, consent, hooks, init, intake, msp, ops, retention,
                               selftest, tokens, web)

COMMANDS = (compliance.compliance, consent.consent, hooks.webhooks, init.init, intake.intake,
            ops.status, retention.prune, selftest.selftest, tokens.token, web.passwd,
            msp.msp_password)
