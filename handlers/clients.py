"""Keeps CRM clients and tool clients one-to-one, per tool.

A CRM client without a mapping adopts the tool client of the same name when no other CRM
client holds it, else a new tool client is made. Anything that would need a guess (two CRM
clients claiming one tool client, several tool clients of one name) is ``client_ambiguous``
and names every id involved, so a person can fix it with ``provisioner clients``.

Lanes work projects in parallel and several workers may share the store, but the client map
is shared by every project: the look-up, create and map of a client name run under the
store's ``client_lock``, so that two projects of one new client neither create it twice nor
find each other's fresh mapping half-way and call it a conflict.
"""

from __future__ import annotations

from handlers.ports import ClientMapping, ProjectStore, TimesheetTool
from schemas.errors import FailureCode, Permanent
from schemas.inbound import Client


def ambiguous(message: str) -> Permanent:
    return Permanent(FailureCode.CLIENT_AMBIGUOUS, message)


def resolve_client(
    client: Client, tool: TimesheetTool, store: ProjectStore, currency: str | None = None
) -> str:
    """The tool client id for ``client``, mapping or creating it on first use. A client made
    here takes ``currency`` where the tool's clients carry one (the first offering's money
    decides it; an existing client keeps its own)."""
    mapped = store.tool_client(tool.name, client.id)
    if mapped is not None:
        return mapped
    with store.client_lock(tool.name, client.name):
        # Whoever held the lock before us may have mapped this very client.
        mapped = store.tool_client(tool.name, client.id)
        if mapped is not None:
            return mapped
        return _map_new(client, tool, store, currency)


def _map_new(client: Client, tool: TimesheetTool, store: ProjectStore, currency: str | None) -> str:
    candidates = tool.clients_named(client.name)
    if len(candidates) > 1:
        ids = ", ".join(c.id for c in candidates)
        raise ambiguous(
            f"CRM client {client.id} ({client.name!r}) matches {len(candidates)} {tool.name} "
            f"clients: {ids}; map one with `provisioner clients map`"
        )
    if candidates:
        chosen = candidates[0]
        holder = store.crm_client(tool.name, chosen.id)
        if holder not in (None, client.id):
            raise ambiguous(
                f"CRM clients {holder} and {client.id} both claim {tool.name} client "
                f"{chosen.id} ({chosen.name!r}); likely a duplicate in the CRM"
            )
    elif currency and getattr(tool, "clients_carry_currency", False):
        chosen = tool.create_client(client.name, currency=currency)
    else:
        chosen = tool.create_client(client.name)
    store.map_client(ClientMapping(tool.name, client.id, chosen.id, client.name))
    return chosen.id
