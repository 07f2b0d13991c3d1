"""``provisioner check [--json]``: every configured thing tried live and read-only, one line
each (``worker.check``). Exit 0 when all hold, 1 when something does not, 2 for settings
``run`` would refuse at start (the same one-line errors). Never prints a secret: every line
passes through a redaction of each configured secret value, the ingress's too."""

from __future__ import annotations

import argparse
import logging
import os

from worker.commands import output
from worker.commands.output import USAGE, Fail, settings_or_fail


def register(sub) -> None:
    check = sub.add_parser("check", help="try every setting live, read-only; one line each")
    check.add_argument("--json", action="store_true", help="one JSON object a line")
    check.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from handlers.rules import RulesError
    from worker import bootstrap, logs
    from worker.check import broker, crms, ingress, store, tools
    from worker.check.lines import exit_status, redacted
    from worker.commands import startup

    settings = settings_or_fail()
    # Log lines (an adapter's warning, say) go to stderr, redacted: stdout is the report,
    # one line (or JSON object) a check, and nothing else.
    logs.configure(settings.log_level, secrets=settings.secrets(), form=settings.log_format)
    # The broker check declares passively: a missing queue is an answer it expects (a warn
    # line), which pika would also report as a warning per channel it closes.
    logging.getLogger("pika").setLevel(logging.ERROR)
    startup.rules_or_fail(settings)
    try:
        rules = bootstrap.checked_rules(settings)
    except RulesError as exc:
        raise Fail(f"PROVISIONER_RULES: {exc}", USAGE) from None
    ingress_lines, ingress_secrets = ingress.check_ingress(os.environ)
    lines = [
        *broker.check_broker(settings, bootstrap.topology(settings)),
        *store.check_store(settings),
        *store.check_pacing(settings),
        *tools.check_tools(settings, rules),
        *crms.check_crms(settings, rules),
        *ingress_lines,
    ]
    secrets = [*settings.secrets(), *ingress_secrets]
    shown = [redacted(line, secrets) for line in lines]
    if args.json:
        output.json_lines(line.row() for line in shown)
    else:
        for line in shown:
            print(line.text())
    return exit_status(shown)
