"""The lost-webhooks trial (issue 20, point 4): HubSpot's webhooks for some deals all fail
while the ingress is down longer than HubSpot retries, and one ``provisioner crm reconcile``
afterwards catches up.

A fake HubSpot holds deals won and then moved to a delivery stage the rules map to
in_progress; the ingress (``provisioner ingress``), the worker and the sweep are processes.
The deals come in three groups. Before: the ingress is up and gets both webhooks of each
deal (Closed Won, then the delivery stage). Lost: the ingress is stopped, and each webhook
is tried as HubSpot would, the first try and ten retries spread over the retry window (24
hours there, ``RETRY_WINDOW`` seconds here), every one refused at the closed port: once
the window closes HubSpot gives up and the deal is never told. After: a new ingress gets
both webhooks of each deal. Then ``crm reconcile --since <trial start>`` as a process, a
settle time, and invariant (e): every offering of every deal that should be provisioned
is, once (``tests.chaos.expectation.for_deals``), beside the other invariants.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fakes.hubspot import FakeHubSpot
from schemas.crm import crm_client_id, crm_project_id, rfc3339
from schemas.inbound import Client, Offering, Project
from tests import crm_webhooks as crm
from tests.chaos import evidence
from tests.chaos.expectation import for_deals, rules_of
from tests.chaos.invariants import Failure
from tests.chaos.scenario import RULES, Scenario
from tests.chaos.trial import Options, Trial, TrialResult, guarded, record, wait_held
from tests.e2e.crm_stack import ProcessIngress
from tests.e2e.ingress import request

IN_PROGRESS = "1385066797"  # a custom pipeline's delivery stage, as HubSpot numbers them
DEAL_RULES = f'{RULES}\n[crm.hubspot.stages]\n"{IN_PROGRESS}" = "in_progress"\n'
# HubSpot re-sends a notification whose connection failed up to 10 times, backing off
# exponentially (its webhooks overview, quoted at integrate.hubspot.com/t/3953), over about
# 24 hours (reference crm-webhooks.md §1.3); then it drops it.
RETRIES = 10
RETRY_WINDOW = 6.0  # seconds: the trial's 24 hours
LINE_ITEMS = ("Build", "Advice", "Training day", "Discovery", "Support")  # Support: manual
GROUPS = ("before", "lost", "after")


@dataclass(frozen=True)
class PlannedDeal:
    name: str
    client: str
    items: tuple[tuple[str, float], ...]  # (line item name, hours)
    group: str  # before, lost, after


def plan_deals(rng: random.Random, count: int) -> list[PlannedDeal]:
    """``count`` deals (at least three): half of them lost, at least one before and one
    after; 1-4 line items each, clients shared now and then."""
    lost = max(1, count // 2)
    groups = ["before", "after"] + ["lost"] * lost
    groups += [rng.choice(("before", "after")) for _ in range(count - len(groups))]
    deals = []
    for n, group in enumerate(groups, start=1):
        names = rng.sample(LINE_ITEMS, rng.randint(1, 4))
        items = tuple((f"{name} {i}", rng.choice([8, 16, 40])) for i, name in enumerate(names))
        client = f"Client {rng.randint(1, max(1, count // 3))}"
        deals.append(PlannedDeal(f"Deal {n}", client, items, group))
    return deals


def retry_offsets(window: float = RETRY_WINDOW, retries: int = RETRIES) -> list[float]:
    """When a webhook is tried, in seconds after the first try: backing off, the last retry
    at the end of the window."""
    return [0.0] + [window * (2**k - 1) / (2**retries - 1) for k in range(1, retries + 1)]


def run_lost_webhooks(seed: int, options: Options) -> TrialResult:
    result = TrialResult(seed, kind="lost webhooks")

    def phases(stack: ExitStack, directory: Path) -> None:
        LostWebhooks(stack, random.Random(seed), options, directory).run(result)

    return guarded(result, options, phases)


class LostWebhooks:
    def __init__(self, stack: ExitStack, rng: random.Random, options: Options, directory: Path):
        self.stack, self.rng, self.directory = stack, rng, directory
        self.hubspot = stack.enter_context(
            FakeHubSpot(f"pat-na1-{uuid.uuid4()}", rate_limit=(1000, 10.0))
        )
        self.hubspot.add_pipeline("Delivery", [(IN_PROGRESS, "Kick-off", "false", "1.0")])
        crm_env = {"HUBSPOT_ACCESS_TOKEN": self.hubspot.token,
                   "HUBSPOT_BASE_URL": self.hubspot.origin}  # fmt: skip
        self.trial = Trial(stack, rng, options, directory, rules=DEAL_RULES, env=crm_env)
        self.secret = uuid.uuid4().hex
        self.companies: dict[str, str] = {}  # client name -> HubSpot company id

    def run(self, result: TrialResult) -> None:
        since = datetime.now(UTC) - timedelta(seconds=1)
        self.trial.set_up(Scenario([], {}))  # no publications: the deals are the scenario
        plans = plan_deals(self.rng, max(6, self.trial.options.events // 12))
        deals = {p: self._seed(p) for p in plans}
        ingress = self._ingress(0)
        for plan in plans:
            if plan.group == "before":
                self._tell(ingress, deals[plan], result)
        port = ingress.port
        ingress.stop()  # the outage starts: the port now refuses
        self._lose([deals[p] for p in plans if p.group == "lost"], port, result)
        ingress = self._ingress(1)  # a new ingress once HubSpot has given up
        for plan in plans:
            if plan.group == "after":
                self._tell(ingress, deals[plan], result)
        # Before the sweep the lost deals have nothing: without it, invariant (e) would fail.
        broker = self.trial.broker
        wait_held(lambda: not any(broker.depths().values()), self.trial.options.settle_seconds)
        _, links = evidence.journal(self.trial.db)
        lost = {crm_project_id("hubspot", deals[p][0]) for p in plans if p.group == "lost"}
        early = sum(lk.project_id in lost for lk in links)
        result.counts["lost_linked_before_sweep"] = early
        if early:
            what = f"{early} offerings of lost deals were linked before the sweep"
            result.failures.append(Failure("fault_not_done", what))
        result.counts["swept"] = self._reconcile(since)
        projects = [self._project(p, deals[p]) for p in plans]
        expected = for_deals(projects, rules_of(DEAL_RULES))
        facts = self.trial.settle_and_gather([], expected)
        live = {(lk.project_id, lk.offering_id) for lk in facts.links if not lk.archived}
        result.counts.update(
            deals=len(plans),
            offerings=sum(len(p.items) for p in plans),
            lost_deals=len(lost),
            lost_provisioned=len({o for o in expected.live & live if o[0] in lost}),
            lost_expected=len({o for o in expected.live if o[0] in lost}),
        )
        record(result, facts)

    def _seed(self, plan: PlannedDeal) -> tuple[str, list[str]]:
        """The deal in HubSpot, won; its line item ids."""
        items = [self.hubspot.add_line_item(name, hours) for name, hours in plan.items]
        if plan.client not in self.companies:  # one company a client, its deals share it
            self.companies[plan.client] = self.hubspot.add_company(plan.client)
        company = self.companies[plan.client]
        deal = self.hubspot.add_deal(plan.name, "closedwon", company=company, line_items=items)
        return deal, items

    def _project(self, plan: PlannedDeal, deal: tuple[str, list[str]]) -> Project:
        """What the worker makes of the deal, as far as the rules look (offering names)."""
        deal_id, items = deal
        offerings = [Offering(id=i, name=n) for i, (n, _) in zip(items, plan.items, strict=True)]
        company = crm_client_id("hubspot", self.companies[plan.client])
        client = Client(id=company, name=plan.client)
        return Project(id=crm_project_id("hubspot", deal_id), name=plan.name, client=client,
                       offerings=offerings)  # fmt: skip

    def _ingress(self, n: int) -> ProcessIngress:
        env = {
            "AMQP_URL": self.trial.options.amqp_url,
            "PROVISIONER_NAMESPACE": self.trial.namespace,
            "PROVISIONER_RETRY_DELAYS": self.trial.options.retry_delays,
            "HUBSPOT_CLIENT_SECRET": self.secret,
        }
        ingress = ProcessIngress(env, self.directory / f"ingress{n}.log")
        self.stack.callback(ingress.stop)
        return ingress

    def _events(self, deal_id: str) -> list[dict]:
        """Closed Won, then the delivery stage: the deal's two webhooks, as HubSpot sends."""
        portal = self.hubspot.portal_id
        return [crm.hubspot_deal_event(portal, objectId=int(deal_id), propertyValue=stage)
                for stage in ("closedwon", IN_PROGRESS)]  # fmt: skip

    def _tell(self, ingress: ProcessIngress, deal: tuple[str, list[str]], result) -> None:
        won, moved = self._events(deal[0])
        self._expect_ok(ingress.hubspot([won]))
        self.hubspot.set_stage(deal[0], IN_PROGRESS)
        self._expect_ok(ingress.hubspot([moved]))
        result.counts["webhooks_delivered"] += 2

    @staticmethod
    def _expect_ok(status: int) -> None:
        if status != 200:
            raise RuntimeError(f"the ingress answered a webhook {status}, not 200")

    def _lose(self, deals: list[tuple[str, list[str]]], port: int, result) -> None:
        """Every webhook of these deals, each tried and retried within the retry window at
        the stopped ingress's port; a try that reaches anything breaks the trial."""
        tries = []
        for n, (deal_id, _) in enumerate(deals):
            won, moved = self._events(deal_id)
            start = n * RETRY_WINDOW / (2 * len(deals))  # the deals change over the outage
            for event, at in ((won, start), (moved, start + 0.1)):
                tries += [(at + o, k, event) for k, o in enumerate(retry_offsets())]
        began = time.monotonic()
        moved_deals = set()
        for at, attempt, event in sorted(tries, key=lambda t: t[0]):
            time.sleep(max(0.0, began + at - time.monotonic()))
            if event["propertyValue"] == IN_PROGRESS and event["objectId"] not in moved_deals:
                self.hubspot.set_stage(str(event["objectId"]), IN_PROGRESS)
                moved_deals.add(event["objectId"])
            try:
                status = self._post(port, dict(event, attemptNumber=attempt))
            except ConnectionRefusedError:
                result.counts["webhook_tries_refused"] += 1
                continue
            raise RuntimeError(f"a webhook meant to be lost reached port {port}: {status}")
        result.counts["webhooks_lost"] += 2 * len(deals)

    def _post(self, port: int, event: dict) -> int:
        body = crm.dumps([event])
        uri = f"http://127.0.0.1:{port}{crm.HUBSPOT_PATH}"
        headers = crm.hubspot_v3_headers(self.secret, "POST", uri, body)
        return request(port, "POST", crm.HUBSPOT_PATH, body, headers)[0]

    def _reconcile(self, since: datetime) -> int:
        """One ``provisioner crm reconcile`` as a process; how many events it published."""
        env = self.trial.worker.env
        done = subprocess.run(
            [sys.executable, "-m", "worker.commands", "crm", "reconcile", "--crm", "hubspot",
             "--since", rfc3339(since)],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        (self.directory / "reconcile.log").write_text(done.stdout + done.stderr)
        found = re.search(r"published (\d+)", done.stdout)
        if done.returncode != 0 or found is None:
            raise RuntimeError(f"crm reconcile exited {done.returncode}: {done.stderr[-300:]}")
        return int(found[1])
