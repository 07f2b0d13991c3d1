"""``provisioner asyncapi``: the AsyncAPI 3.0.0 document of the bus, as YAML or JSON.

The document comes from ``worker.asyncapi.document()``; this module only renders it. The
committed copy, ``docs/asyncapi.yaml``, is ``provisioner asyncapi --output docs/asyncapi.yaml``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from worker.commands.output import OK, USAGE, Fail

REGENERATE = "provisioner asyncapi --output docs/asyncapi.yaml"


def register(sub) -> None:
    cmd = sub.add_parser("asyncapi", help="print the AsyncAPI 3.0 document of the bus")
    cmd.add_argument("--format", choices=("yaml", "json"), default="yaml")
    cmd.add_argument("--output", metavar="FILE", help="write it to FILE instead of stdout")
    cmd.set_defaults(func=cmd_asyncapi)


def render(fmt: str = "yaml") -> str:
    from worker.asyncapi import document

    doc = document()
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    import yaml  # only this command needs it

    header = f"# Generated from the code by `{REGENERATE}`: do not edit by hand.\n"
    # Keys in the document's own order: asyncapi, info, servers, channels … reads top-down.
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)


def cmd_asyncapi(args: argparse.Namespace) -> int:
    text = render(args.format)
    if args.output is None:
        sys.stdout.write(text)
        return OK
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise Fail(f"{args.output}: {exc.strerror}", USAGE) from None
    return OK
