"""``provisioner clients``: show and correct the CRM <-> tool client map.

It is how a person resolves ``client_ambiguous``. Nothing here may print a database URL as
given: it can hold a password.
"""

from __future__ import annotations

import argparse
import contextlib

from handlers.ports import ClientMapping
from schemas.inbound import TOOLS
from worker.commands import output
from worker.commands.output import FAILED, OK, Fail, settings_or_fail

CLIENTS_EPILOG = """\
client_ambiguous (two CRM clients claim one tool client) is resolved by a person: map the
duplicate CRM client to another tool client (clients map), or remove its mapping (clients
unmap); then replay the dead letter (provisioner dlq replay ID)."""


def register(sub) -> None:
    clients = sub.add_parser(
        "clients", help="the CRM ↔ tool client map", epilog=CLIENTS_EPILOG
    ).add_subparsers(dest="clients_command", required=True)
    listing = clients.add_parser("list", help="every mapping")
    listing.add_argument("--tool", choices=TOOLS)
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    listing.set_defaults(func=cmd_clients_list)
    mapping = clients.add_parser("map", help="map a CRM client to a tool client, replacing")
    mapping.add_argument("--tool", choices=TOOLS, required=True)
    mapping.add_argument("--crm", metavar="CRM_ID", required=True)
    mapping.add_argument("--tool-client", metavar="TOOL_CLIENT_ID", required=True)
    mapping.add_argument("--name", help="the CRM client's name (default: the one on record)")
    mapping.set_defaults(func=cmd_clients_map)
    unmap = clients.add_parser("unmap", help="remove a CRM client's mapping")
    unmap.add_argument("--tool", choices=TOOLS, required=True)
    unmap.add_argument("--crm", metavar="CRM_ID", required=True)
    unmap.set_defaults(func=cmd_clients_unmap)


@contextlib.contextmanager
def _store():
    """The state store of PROVISIONER_DATABASE_URL; a driver error becomes a one-line Fail."""
    from adapters.migrate import DatabaseTooNew
    from adapters.sql import DRIVER_ERRORS
    from adapters.store import SqlStore
    from worker.commands.db import too_new

    url = settings_or_fail().database_url
    store = None
    try:
        store = SqlStore.from_url(url)
        yield store
    except DRIVER_ERRORS as exc:
        raise Fail(f"state store: {_without_secrets(exc, url)}") from None
    except DatabaseTooNew as exc:
        raise too_new(exc, url) from None
    finally:
        if store is not None:
            store.close()


def _without_secrets(exc: Exception, url: str) -> str:
    """The driver's first line and the URL without its password, which it may carry."""
    from urllib.parse import urlsplit

    from adapters.sql import without_password

    detail = (str(exc).splitlines() or [""])[0]
    for secret in (url, urlsplit(url).password):
        if secret:
            detail = detail.replace(str(secret), "***")
    return f"{type(exc).__name__} at {without_password(url)}: {detail}"


def _mapping_line(m: ClientMapping) -> str:
    name = f" ({m.crm_client_name})" if m.crm_client_name else ""
    return f"{m.tool} CRM client {m.crm_client_id}{name} -> {m.tool} client {m.tool_client_id}"


def cmd_clients_list(args: argparse.Namespace) -> int:
    with _store() as store:
        mappings = store.client_mappings(args.tool)
    if args.json:
        output.json_lines(m.__dict__ for m in mappings)
        return OK
    if not mappings:
        print("no client mappings")
        return OK
    columns = ("tool", "crm_client_id", "crm_client_name", "tool_client_id")
    output.table(columns, [[getattr(m, c) for c in columns] for m in mappings])
    return OK


def cmd_clients_map(args: argparse.Namespace) -> int:
    with _store() as store:
        # Read before writing, to say what the decision replaced.
        replaced = [
            m
            for m in store.client_mappings(args.tool)
            if args.crm == m.crm_client_id or args.tool_client == m.tool_client_id
        ]
        name = args.name or next(
            (m.crm_client_name for m in replaced if m.crm_client_id == args.crm), None
        )
        mapping = ClientMapping(args.tool, args.crm, args.tool_client, name)
        store.remap_client(mapping)
    if mapping in replaced:
        print(f"unchanged: {_mapping_line(mapping)}")
        return OK
    print(f"mapped: {_mapping_line(mapping)}")
    for old in replaced:
        print(f"replaced: {_mapping_line(old)}")
    return OK


def cmd_clients_unmap(args: argparse.Namespace) -> int:
    with _store() as store:
        old = [m for m in store.client_mappings(args.tool) if m.crm_client_id == args.crm]
        removed = store.unmap_client(args.tool, args.crm)
    if not removed:
        raise Fail(f"no {args.tool} mapping for CRM client {args.crm}", FAILED)
    for m in old:
        print(f"unmapped: {_mapping_line(m)}")
    return OK
