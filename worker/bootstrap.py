"""The composition root: settings in, a wired worker out. Production and tests both use it."""

from __future__ import annotations

import structlog

from adapters.http import DEFAULT_TIMEOUT, default_retrying
from adapters.read_cache import ReadCache
from adapters.store import SqlStore
from handlers.ports import CrmReader, TimesheetTool
from handlers.rules import Rules, RulesError, load_rules
from handlers.run import Deps
from schemas.errors import Permanent, Transient
from worker import logs, metrics, probes
from worker.consumer import Consumer
from worker.crm_reads import SharedDealReads
from worker.pacing import PacingStore, pacers, pacing_store
from worker.processing import Processor
from worker.settings import Settings
from worker.topology import Topology

CLOCKIFY_PLAN_RATES = {"free": "30/3600", "paid": "50/1"}


def build_tools(settings: Settings, shared: PacingStore | None = None) -> dict[str, TimesheetTool]:
    pace = pacers(settings, shared)
    tools: dict[str, TimesheetTool] = {}
    common = dict(
        retrying=default_retrying(hold_off_ceiling=settings.hold_off_ceiling),
        read_timeout=settings.vendor_timeout,
        observer=metrics.VENDOR_CALLS,
    )

    def reads() -> ReadCache:  # one each: a tool's ids mean nothing to another
        return ReadCache(settings.tool_cache_ttl)

    enabled = settings.enabled_tools()
    if "harvest" in enabled:
        from adapters.harvest import HarvestTool

        tools["harvest"] = HarvestTool(
            settings.harvest_account_id,
            settings.harvest_access_token.get_secret_value(),
            base_url=settings.harvest_base_url,
            pacer=pace("harvest", settings.harvest_rate),
            reads=reads(),
            **common,
        )
    if "toggl" in enabled:
        from adapters.toggl import TogglTool

        tools["toggl"] = TogglTool(
            settings.toggl_api_token.get_secret_value(),
            settings.toggl_workspace_id,
            base_url=settings.toggl_base_url,
            pacer=pace("toggl", settings.toggl_rate),
            reads=reads(),
            **common,
        )
    if "clockify" in enabled:
        from adapters.clockify import ClockifyTool

        tools["clockify"] = ClockifyTool(
            settings.clockify_api_key.get_secret_value(),
            settings.clockify_workspace_id,
            base_url=settings.clockify_base_url,
            pacer=pace(
                "clockify", settings.clockify_rate or CLOCKIFY_PLAN_RATES[settings.clockify_plan]
            ),
            plan=settings.clockify_plan,
            reads=reads(),
            **common,
        )
    return tools


def build_crms(
    settings: Settings,
    rules: Rules,
    shared: PacingStore | None = None,
    store: SqlStore | None = None,
) -> dict[str, CrmReader]:
    """The CRMs with credentials, each reading the properties the rules name. ``store``: the
    state store, where a rotated Salesforce refresh token is kept (the caller closes it)."""
    pace = pacers(settings, shared)
    crms: dict[str, CrmReader] = {}
    common = dict(
        retrying=default_retrying(hold_off_ceiling=settings.hold_off_ceiling),
        read_timeout=settings.vendor_timeout,
        observer=metrics.VENDOR_CALLS,
    )
    enabled = settings.enabled_crms()
    if "hubspot" in enabled:
        from adapters.hubspot import SEARCH_RATE, HubSpotCrm

        crms["hubspot"] = HubSpotCrm(
            settings.hubspot_access_token.get_secret_value(),
            base_url=settings.hubspot_base_url,
            fields=rules.spec.crm.fields("hubspot"),
            pacer=pace("hubspot", settings.hubspot_rate),
            # Search is limited apart from the account's budget: with PACING_URL, every
            # process sweeping this account shares one search budget too.
            search_pacer=pace("hubspot", "{}/{}".format(*SEARCH_RATE), limit="search"),
            **common,
        )
    if "pipedrive" in enabled:
        from adapters.pipedrive import PipedriveCrm

        crms["pipedrive"] = PipedriveCrm(
            settings.pipedrive_api_token.get_secret_value(),
            base_url=settings.pipedrive_base_url,
            fields=rules.spec.crm.fields("pipedrive"),
            pacer=pace("pipedrive", settings.pipedrive_rate),
            **common,
        )
    if "salesforce" in enabled:
        from adapters.salesforce import SalesforceCrm

        crms["salesforce"] = SalesforceCrm(
            salesforce_session(settings, store),
            fields=rules.spec.crm.fields("salesforce"),
            pacer=pace("salesforce", settings.salesforce_rate),
            limits=metrics.SALESFORCE_LIMITS,
            **common,
        )
    return crms


def keeps_refresh_token(settings: Settings) -> bool:
    """Salesforce signs in with the refresh-token flow, whose rotated tokens the state store
    keeps: a process without a store of its own opens one for it."""
    return "salesforce" in settings.enabled_crms() and settings.salesforce_flow() == "refresh_token"


def salesforce_session(settings: Settings, store: SqlStore | None = None):
    """The Salesforce sign-in the settings name (``Settings.salesforce_flow``); each token it
    obtains is taught to the log redactor. With ``store``, a rotated refresh token is kept
    there for every process and the next start; without, in this process's memory only."""
    from adapters import salesforce_session as oauth

    def secret(value) -> str:
        return value.get_secret_value()

    flow = settings.salesforce_flow()
    client_id, login_url = settings.salesforce_client_id, settings.salesforce_login_url
    if flow == "refresh_token":
        grant = oauth.refresh_token_grant(
            client_id,
            secret(settings.salesforce_client_secret),
            secret(settings.salesforce_refresh_token),
        )
    elif flow == "client_credentials":
        grant = oauth.client_credentials_grant(client_id, secret(settings.salesforce_client_secret))
    elif flow == "jwt_bearer":
        grant = oauth.jwt_bearer_grant(
            client_id,
            settings.salesforce_username,
            settings.salesforce_private_key,
            oauth.jwt_audience(login_url),
        )
    else:
        grant = None
        structlog.get_logger(__name__).warning(
            "salesforce_static_token",
            setting="SALESFORCE_ACCESS_TOKEN",
            renewal=False,
            note="the session expires with the org's timeout (2 h by default) and every read "
            "is then vendor_auth; set an OAuth flow (SALESFORCE_CLIENT_ID, ...) to renew it",
        )
    return oauth.SalesforceSession(
        login_url,
        grant,
        retrying=default_retrying(),
        access_token=secret(settings.salesforce_access_token) if grant is None else None,
        instance_url=settings.salesforce_instance_url,
        observer=metrics.VENDOR_CALLS,
        timeout=(DEFAULT_TIMEOUT[0], settings.vendor_timeout),
        on_token=logs.learn_secret,
        keeper=store if flow == "refresh_token" else None,
    )


def topology(settings: Settings) -> Topology:
    return Topology(settings.namespace, settings.retry_delays, settings.partitions)


def checked_rules(settings: Settings) -> Rules:
    """The rules file, validated against the tools that have credentials (start-up errors)."""
    rules = load_rules(settings.rules)
    rules.check_tools(settings.enabled_tools())
    return rules


def template_problems(rules: Rules, tools: dict[str, TimesheetTool]) -> list[str]:
    """One line for each template project the rules name that its tool does not have (or
    cannot read as a project reference). A tool that does not answer now is not a problem
    of the file: the provisioning that needs the template retries then."""
    problems = []
    for tool_name, references in sorted(rules.templates().items()):
        tool = tools.get(tool_name)
        for reference in sorted(references) if tool else ():
            try:
                tool.get_project(tool.parse_reference(reference))
            except Transient:
                continue
            except Permanent as exc:
                problems.append(f"{rules.source}: template {reference!r}: {exc.message}")
    return problems


def build_deps(settings: Settings, store: SqlStore | None = None) -> Deps:
    rules = checked_rules(settings)
    shared = pacing_store(settings)  # one per process: one view of whether Redis answers
    tools = build_tools(settings, shared)
    if problems := template_problems(rules, tools):  # before the store: nothing to close
        raise RulesError("; ".join(problems), problems)
    store = store or SqlStore.from_url(settings.database_url)
    deals = SharedDealReads(build_crms(settings, rules, shared, store))
    return Deps(store=store, tools=tools, rules=rules, deals=deals)


def build_consumer(settings: Settings, deps: Deps) -> Consumer:
    topo = topology(settings)
    consumer = Consumer(
        amqp_url=settings.amqp_url,
        topology=topo,
        processor=Processor(deps, topo, source=settings.source),
        concurrency=settings.concurrency,
        prefetch=settings.prefetch,
        heartbeat=settings.heartbeat,
        shutdown_grace=settings.shutdown_grace,
        consumer_timeout=settings.consumer_timeout,
        max_held_bytes=settings.max_held_bytes,
        flush=deps.store.make_durable,
    )
    if topo.partitions > 1:
        consumer.companions = partition_companions(settings, topo, consumer)
    return consumer


def partition_companions(settings: Settings, topo: Topology, consumer: Consumer) -> list:
    """What a worker runs beside its consumer when there are partitions: an intake router
    (one process's at a time is active) and its membership among the workers, whose every
    change gives the consumer its share of the partitions."""
    from worker.membership import Membership
    from worker.partitioning import assigned
    from worker.router import IntakeRouter

    def members_changed(member: int, members: frozenset[int]) -> None:
        consumer.assign(frozenset(assigned(member, members, topo.partitions)))

    return [
        IntakeRouter(amqp_url=settings.amqp_url, topology=topo, heartbeat=settings.heartbeat),
        Membership(settings.database_url, settings.namespace, members_changed),
    ]


def serve_probes(settings: Settings, consumer: Consumer, store: SqlStore):
    """/metrics, /healthz and /readyz (``worker.probes``), unless PROVISIONER_METRICS_BIND is
    off; raises ``OSError`` when the address cannot be bound."""
    metrics.watch_consumer(consumer)
    if settings.metrics_address is None:
        return None
    looks = probes.Probes(
        connected=lambda: consumer.connected,
        turned_at=lambda: consumer.last_turn,
        store=probes.StoreCheck(store.reachable),
    )
    metrics.READY.set_function(lambda: looks.readiness() is None)
    return probes.serve(settings.metrics_address, looks)


def serve_reconcile_probes(settings: Settings, schedule, store: SqlStore):
    """The reconcile schedule's /metrics (``metrics.RECONCILE``), /healthz (its loop turns)
    and /readyz (the broker answered its last try of the lock; the store answers), on
    PROVISIONER_METRICS_BIND as ``provisioner run``; raises ``OSError`` when it cannot bind."""
    if settings.metrics_address is None:
        return None
    looks = probes.Probes(
        connected=lambda: schedule.broker_answered,
        turned_at=lambda: schedule.turned_at,
        store=probes.StoreCheck(store.reachable),
    )
    return probes.serve(settings.metrics_address, looks, metrics.RECONCILE)
