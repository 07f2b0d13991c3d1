"""Each CRM: the credentials work (Salesforce: the configured OAuth flow gets a token), the
reader may read every object it reads (each tried with a read that changes nothing), and the
rules' stage map names stages the CRM has.

Salesforce's refresh-token flow signs in with the newest refresh token the state store keeps
and, when the connected app rotates them, saves the one it is given there: the sign-in has
spent the one before, which the workers would otherwise still send.
"""

from __future__ import annotations

from pathlib import Path

from handlers.rules import Rules
from schemas.errors import ProvisionerError
from worker.check.lines import Line, fail, ok, warn
from worker.check.probe import get, refused
from worker.settings import Settings

# What the HubSpot reader reads, and the scope each read needs (developers.hubspot.com scopes).
HUBSPOT_READS = (
    ("deals", "/crm/v3/objects/deals", "crm.objects.deals.read"),
    ("companies", "/crm/v3/objects/companies", "crm.objects.companies.read"),
    ("line items", "/crm/v3/objects/line_items", "crm.objects.line_items.read"),
    ("owners", "/crm/v3/owners", "crm.objects.owners.read"),
)
HUBSPOT_ASSOCIATIONS = (
    ("a deal's companies", "companies", "crm.objects.companies.read"),
    ("a deal's line items", "line_items", "crm.objects.line_items.read"),
)
PIPEDRIVE_READS = (("deals", "/api/v2/deals"), ("organizations", "/api/v2/organizations"))
SALESFORCE_OBJECTS = ("Opportunity", "Account", "OpportunityLineItem", "User")


def check_crms(settings: Settings, rules: Rules) -> list[Line]:
    from worker.bootstrap import build_crms, keeps_refresh_token

    store = _token_store(settings) if keeps_refresh_token(settings) else None
    lines: list[Line] = []
    try:
        for name, crm in build_crms(settings, rules, store=store).items():
            try:
                lines += CHECKS[name](crm, rules)
            except ProvisionerError as exc:
                lines.append(fail(name, f"cannot read: {exc.message}", "retry later"))
    finally:
        if store is not None:
            store.close()
    return lines


def _token_store(settings: Settings):
    """The state store, for Salesforce's rotated refresh token; None unless the database
    exists at this release's schema: the check never creates or migrates one (the store's own
    check says what is wrong with it)."""
    from adapters import migrate
    from adapters.sql import DRIVER_ERRORS, dialect_for
    from adapters.store import SqlStore

    url = settings.database_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    try:
        versions = migrate.status(dialect_for(url))
        if versions.pending or versions.unknown:
            return None
        return SqlStore.from_url(url)
    except (*DRIVER_ERRORS, OSError, ValueError):
        return None


def _stage_lines(crm: str, mapped: dict, known: dict[str, str]) -> list[Line]:
    lines = []
    for stage in mapped:
        if stage in known:
            lines.append(ok(crm, f"stage {stage!r} ([crm.{crm}.stages]) exists: {known[stage]}"))
        else:
            lines.append(
                fail(
                    crm,
                    f"stage {stage!r} ([crm.{crm}.stages] in PROVISIONER_RULES) is in no pipeline",
                    f"use one of the CRM's stage ids in [crm.{crm}.stages] (it has: "
                    f"{', '.join(sorted(known)[:12]) or 'none'})",
                )
            )
    return lines


def _hubspot(crm, rules: Rules) -> list[Line]:
    answer = get(crm.http, "/account-info/v3/details")
    if refused(answer):
        return [
            fail(
                "hubspot",
                f"the token is refused ({answer.status_code})",
                "set HUBSPOT_ACCESS_TOKEN to the private app's access token (Settings > "
                "Integrations > Private apps)",
            )
        ]
    lines = [ok("hubspot", f"token works: portal {answer.json().get('portalId')}")]
    first_deal = None
    for what, path, scope in HUBSPOT_READS:
        answer = get(crm.http, path, {"limit": 1})
        lines.append(_hubspot_read(what, scope, answer))
        if what == "deals" and not refused(answer):
            first_deal = next(iter(answer.json().get("results") or []), {}).get("id")
    # The reader reads a deal's company and line items through the v4 associations, which
    # need the other object's scope too: tried on a deal there is, if there is one.
    for what, kind, scope in HUBSPOT_ASSOCIATIONS:
        if first_deal is None:
            lines.append(warn("hubspot", f"no deal to try reading {what} with"))
            continue
        path = f"/crm/v4/objects/deals/{first_deal}/associations/{kind}"
        lines.append(_hubspot_read(what, scope, get(crm.http, path, {"limit": 1})))
    answer = get(crm.http, "/crm/v3/pipelines/deals")
    if refused(answer):
        lines.append(
            fail(
                "hubspot",
                f"cannot read the deal pipelines ({answer.status_code})",
                "give the app the scope crm.objects.deals.read",
            )
        )
        return lines
    known = {
        str(stage["id"]): f"{stage.get('label')} in {pipeline.get('label')}"
        for pipeline in answer.json().get("results", [])
        for stage in pipeline.get("stages", [])
    }
    lines.append(ok("hubspot", f"reads the deal pipelines ({len(known)} stages)"))
    return lines + _stage_lines("hubspot", rules.spec.crm.table("hubspot").stages, known)


def _hubspot_read(what: str, scope: str, answer) -> Line:
    if refused(answer):
        return fail(
            "hubspot",
            f"cannot read {what} ({answer.status_code}: {_hubspot_scopes(answer, scope)})",
            f"give the app the scope {_hubspot_scopes(answer, scope)}",
        )
    return ok("hubspot", f"reads {what} ({scope})")


def _hubspot_scopes(answer, fallback: str) -> str:
    """The scopes HubSpot's MISSING_SCOPES answer names, else the one the read needs."""
    try:
        body = answer.json()
        found = [
            scope
            for error in body.get("errors") or []
            for scope in (error.get("context") or {}).get("requiredGranularScopes") or []
        ]
    except (ProvisionerError, AttributeError, TypeError):
        found = []
    return " or ".join(str(s) for s in found) or fallback


def _pipedrive(crm, rules: Rules) -> list[Line]:
    answer = get(crm.http, "/api/v1/users/me")
    if refused(answer):
        return [
            fail(
                "pipedrive",
                f"the token is refused ({answer.status_code})",
                "set PIPEDRIVE_API_TOKEN to the API token of Personal preferences > API, and "
                "PIPEDRIVE_BASE_URL to the company's https://COMPANY.pipedrive.com",
            )
        ]
    me = answer.json().get("data") or {}
    lines = [
        ok("pipedrive", f"token works: company {me.get('company_name') or me.get('company_id')}")
    ]
    first_deal = None
    for what, path in PIPEDRIVE_READS:
        answer = get(crm.http, path, {"limit": 1})
        if refused(answer):
            lines.append(_pipedrive_refused(what, answer.status_code))
            continue
        lines.append(ok("pipedrive", f"reads {what}"))
        if what == "deals" and (rows := answer.json().get("data")):
            first_deal = rows[0].get("id")
    if first_deal is not None:
        answer = get(crm.http, f"/api/v2/deals/{first_deal}/products", {"limit": 1})
        line = (
            _pipedrive_refused("deal products", answer.status_code)
            if refused(answer)
            else (ok("pipedrive", "reads deal products"))
        )
        lines.append(line)
    answer = get(crm.http, "/api/v2/stages")
    if refused(answer):
        lines.append(_pipedrive_refused("stages", answer.status_code))
        return lines
    known = {str(s["id"]): str(s.get("name")) for s in answer.json().get("data") or []}
    lines.append(ok("pipedrive", f"reads the stages ({len(known)})"))
    return lines + _stage_lines("pipedrive", rules.spec.crm.table("pipedrive").stages, known)


def _pipedrive_refused(what: str, status: int) -> Line:
    return fail(
        "pipedrive",
        f"cannot read {what} ({status})",
        "give the token's user a permission set that sees all deals, organizations and "
        "products (Company settings > Permission sets), or use an admin's token",
    )


def _salesforce(crm, rules: Rules) -> list[Line]:
    try:
        http = crm.http  # the configured flow gets a token here
    except ProvisionerError as exc:
        return [
            fail(
                "salesforce",
                f"no token: {exc.message}",
                "check the settings of the configured flow (SALESFORCE_CLIENT_ID, ...; "
                "SALESFORCE_LOGIN_URL) against the connected app",
            )
        ]
    lines = [ok("salesforce", f"signed in ({crm.session.instance_url()})")]
    stages: dict[str, str] | None = None
    for sobject in SALESFORCE_OBJECTS:
        answer = get(http, f"/sobjects/{sobject}/describe")
        if answer.status_code == 401:
            return [
                fail(
                    "salesforce",
                    "the session is refused (401)",
                    "set a working OAuth flow (SALESFORCE_CLIENT_ID, ...) or a fresh "
                    "SALESFORCE_ACCESS_TOKEN",
                )
            ]
        if refused(answer) or not answer.json().get("queryable", True):
            lines.append(
                fail(
                    "salesforce",
                    f"cannot read {sobject} ({answer.status_code})",
                    f"give the integration user Read on {sobject} (profile or permission set)",
                )
            )
            continue
        lines.append(ok("salesforce", f"reads {sobject}"))
        if sobject == "Opportunity":
            stages = _picklist(answer.json(), "StageName")
    if stages is None:
        return lines
    return lines + _stage_lines("salesforce", rules.spec.crm.table("salesforce").stages, stages)


def _picklist(describe: dict, field: str) -> dict[str, str]:
    for entry in describe.get("fields") or []:
        if entry.get("name") == field:
            return {
                str(v.get("value")): str(v.get("label"))
                for v in entry.get("picklistValues") or []
                if v.get("active", True)
            }
    return {}


CHECKS = {"hubspot": _hubspot, "pipedrive": _pipedrive, "salesforce": _salesforce}
