"""``provisioner ingress``: the CRM webhook ingress. Settings are checked before anything
starts: exit 2 naming the variable, e.g. SALESFORCE_WEBHOOK_TOKEN missing beside
SALESFORCE_ORGANIZATION_ID (that route would otherwise take anyone's messages). The server
itself is imported only for this command, so the rest of the CLI does not pay for it."""

from __future__ import annotations

import argparse


def cmd_ingress(_args: argparse.Namespace) -> int:
    from worker.commands.output import OK, USAGE, Fail
    from worker.ingress.settings import load_ingress_settings
    from worker.settings import SettingsError

    try:
        settings = load_ingress_settings()
    except SettingsError as exc:
        raise Fail(str(exc), USAGE) from None
    from worker.ingress.server import serve

    serve(settings)
    return OK


def register(sub) -> None:
    sub.add_parser("ingress", help="the CRM webhook ingress (HTTP)").set_defaults(func=cmd_ingress)
