"""One trial: fakes and a worker of its own, the scenario published under faults, the system
settled, the invariants checked, and everything of the trial removed again.

Phases: set up (fakes with their users and pre-made projects, a fresh namespace and SQLite
file, the worker) -> faults on, events published in waves -> faults off once the work queues
drained or the fault window closed -> settle (one worker, no faults, until the queues are
empty) -> gather and check. Cleanup runs whatever happens (``ExitStack``).
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from fakes.clockify import FakeClockify
from fakes.harvest import FakeHarvest
from fakes.toggl import FakeToggl
from tests.chaos import evidence
from tests.chaos.broker import TrialBroker
from tests.chaos.expectation import Expectation, from_publications, rules_of
from tests.chaos.faults import FaultProfile
from tests.chaos.invariants import Facts, Failure, check, liveness
from tests.chaos.scenario import RULES, TEAM, Premade, Publication, Scenario, build
from tests.chaos.supervisor import Monkey, Worker
from worker.topology import Topology

VENDOR_TIMEOUT = 2.0  # seconds; a late answer comes after it
UNLIMITED = (100_000, 1.0)  # the fakes' own rate limits stay out of the way of the faults
WAVE_GAP = 3.0  # seconds between the waves of publications
QUIET = 5.0  # seconds the queues must stay empty to count as drained


@dataclass(frozen=True)
class Options:
    amqp_url: str = "amqp://guest:guest@localhost:5672/"
    events: int = 300
    bad_share: float = 0.06  # of the publications, bad bodies
    retry_delays: str = "0.5,1,2,2,3"
    concurrency: int = 8
    vendor_latency: float = 0.05  # seconds each fake takes per request, like a real API
    # The worker paces Toggl as it would a real account (1/1 there): its work backs up while
    # the rest flows, which is when restarts and the consumer timeout bite.
    toggl_rate: str = "4/1"
    fault_seconds: float = 90.0  # the longest faults are injected in one trial
    settle_seconds: float = 180.0  # how long the queues may take to drain afterwards
    waves: int = 3  # the events are published in this many waves during the faults
    keep: bool = False  # keep every trial's directory, not only failed ones


@dataclass
class TrialResult:
    seed: int
    counts: Counter = field(default_factory=Counter)  # faults injected, events published
    dead_letters: Counter = field(default_factory=Counter)  # by code
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    most_runs: int = 0  # most runs begun for one event on redeliveries (worker_crashed margin)
    kind: str = "chaos"  # or "lost webhooks" (tests.chaos.lost_webhooks)
    directory: Path | None = None  # kept when the trial failed


def run_trial(seed: int, options: Options, broker_restart: bool = False) -> TrialResult:
    rng = random.Random(seed)
    scenario = build(rng, options.events, options.bad_share)
    result = TrialResult(seed)
    result.counts.update(good=scenario.good, bad=scenario.bad, copies=scenario.copies)

    def phases(stack: ExitStack, directory: Path) -> None:
        trial = Trial(stack, rng, options, directory)
        publications = trial.set_up(scenario)
        trial.publish_under_faults(publications, broker_restart, result)
        facts = trial.settle_and_gather(publications)
        result.most_runs = evidence.most_runs(trial.db)
        record(result, facts)
        result.failures.extend(Failure("fault_not_done", e) for e in trial.monkey.errors)

    return guarded(result, options, phases)


def guarded(
    result: TrialResult, options: Options, phases: Callable[[ExitStack, Path], None]
) -> TrialResult:
    """Runs a trial's ``phases`` in a directory of its own, undoing what they started
    whatever happens; the directory is kept when the trial failed (or ``options.keep``)."""
    started = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix=f"chaos-{result.seed}-"))
    try:
        with ExitStack() as stack:
            phases(stack, directory)
    except Exception as exc:  # the trial itself broke: a failure to report, not a crash
        result.failures.append(Failure("trial_error", f"{type(exc).__name__}: {exc}"))
    result.seconds = time.monotonic() - started
    if result.failures or options.keep:
        result.directory = directory
    else:
        shutil.rmtree(directory, ignore_errors=True)
    return result


def record(result: TrialResult, facts: Facts) -> None:
    """The invariants' verdicts and figures on what one trial gathered."""
    result.dead_letters.update(letter.code for letter in facts.dead_letters)
    result.failures.extend(check(facts))
    found = liveness(facts)
    result.counts.update(live_expected=found.expected, live=found.live, live_excused=found.excused)


class Trial:
    """The phases of one trial; everything started is handed to ``stack`` to be undone."""

    def __init__(
        self,
        stack: ExitStack,
        rng: random.Random,
        options: Options,
        directory: Path,
        rules: str = RULES,
        env: dict[str, str] | None = None,
    ):
        self.stack = stack
        self.rng = rng
        self.options = options
        self.directory = directory
        self.rules = rules  # another trial kind adds its CRM's stage map
        self.env = env or {}  # and its CRM's credentials
        self.profile = FaultProfile(random.Random(rng.randrange(2**32)))

    def set_up(self, scenario: Scenario) -> list[Publication]:
        """Fakes with users and pre-made projects, a namespace, a worker; the publications
        with the ids of the pre-made projects filled in."""
        self.harvest = self.stack.enter_context(FakeHarvest(rate_limit=UNLIMITED))
        # Enterprise: no hourly quota, which 300 events would spend (the quota has its tests).
        self.toggl = self.stack.enter_context(FakeToggl(rate_limit=UNLIMITED, plan="enterprise"))
        self.clockify = self.stack.enter_context(FakeClockify(rate_limit=UNLIMITED))
        fakes = {"harvest": self.harvest, "toggl": self.toggl, "clockify": self.clockify}
        for fake in fakes.values():
            for email in TEAM:
                fake.add_user(email)
            fake.chaos = self.profile.decide
            fake.latency = self.options.vendor_latency
            fake.late_answer = VENDOR_TIMEOUT + 1.0
        refs = {ph: _premake(fakes[p.tool], p) for ph, p in scenario.premade.items()}

        self.namespace = f"chaos{uuid.uuid4().hex[:10]}"
        delays = tuple(float(d) for d in self.options.retry_delays.split(","))
        self.broker = TrialBroker(self.options.amqp_url, Topology(self.namespace, delays))
        self.stack.callback(self.broker.delete_namespace)
        self.broker.declare()
        rules = self.directory / "rules.toml"
        rules.write_text(self.rules)
        self.db = self.directory / "state.db"
        self.worker = Worker(self.worker_env(rules), self.directory / "worker.log")
        self.stack.callback(self.worker.stop)
        self.worker.start()
        return scenario.with_refs(refs)

    def publish_under_faults(
        self, publications: list[Publication], broker_restart: bool, result: TrialResult
    ) -> None:
        """Faults on, the publications in waves, faults off once the queues drained or the
        fault window closed; what was injected goes into ``result.counts``."""
        window = self.options.fault_seconds
        restart_at = self.rng.uniform(5, window * 0.6) if broker_restart else None
        self.monkey = Monkey(
            random.Random(self.rng.randrange(2**32)), self.worker, self.namespace, restart_at
        )
        self.profile.enabled = True
        self.monkey.start()
        self.stack.callback(self.monkey.stop)
        closes = time.monotonic() + window
        numbered = list(enumerate(publications))
        wave = -(-len(numbered) // self.options.waves)
        for i in range(0, len(numbered), wave):
            self.broker.publish(numbered[i : i + wave])
            time.sleep(WAVE_GAP)  # later waves meet a worker busy with the earlier ones
        wait_held(lambda: not any(self.broker.depths().values()), closes - time.monotonic())
        self.monkey.stop()
        self.profile.enabled = False
        result.counts.update(self.profile.counts)
        result.counts.update(self.monkey.counts)

    def settle_and_gather(
        self, publications: list[Publication], expected: Expectation | None = None
    ) -> Facts:
        """One worker and no faults until the queues are empty (or the deadline), then
        everything the invariants read; what should have happened is ``expected``, or
        else what the publications asked for."""

        def settled() -> bool:
            self.worker.start()  # one worker, whatever the monkey left (noted if it exited)
            return not any(self.broker.depths().values())

        drained = wait_held(settled, self.options.settle_seconds)
        undrained = {} if drained else {q: n for q, n in self.broker.depths().items() if n}
        alive = self.worker.alive()
        outcomes = self.broker.outcomes()
        letters = self.broker.dead_letters()
        self.worker.stop()
        processed, links = evidence.journal(self.db)
        fakes = (self.harvest, self.toggl, self.clockify)
        expected = expected or from_publications(publications, rules_of(self.rules))
        return Facts(
            publications=publications,
            processed=processed,
            dead_letters=letters,
            outcomes=outcomes,
            projects=evidence.vendor_projects(*fakes),
            clients=evidence.vendor_clients(*fakes),
            links=links,
            worker_alive=alive,
            unexpected_exits=list(self.worker.unexpected_exits),
            undrained=undrained,
            escaped=evidence.escaped_exceptions(self.directory / "worker.log"),
            expectation=expected,
            active_projects=evidence.active_projects(self.db),
        )

    def worker_env(self, rules: Path) -> dict[str, str]:
        harvest, toggl, clockify, options = self.harvest, self.toggl, self.clockify, self.options
        return {
            "AMQP_URL": options.amqp_url,
            "PROVISIONER_NAMESPACE": self.namespace,
            "PROVISIONER_METRICS_BIND": "off",  # several at once must not share a port
            "PROVISIONER_DATABASE_URL": f"sqlite:///{self.db}",
            "PROVISIONER_RULES": str(rules),
            "PROVISIONER_RETRY_DELAYS": options.retry_delays,
            "PROVISIONER_CONCURRENCY": str(options.concurrency),
            "PROVISIONER_VENDOR_TIMEOUT": str(VENDOR_TIMEOUT),
            "PROVISIONER_SHUTDOWN_GRACE": "5",
            "HARVEST_ACCOUNT_ID": harvest.account_id,
            "HARVEST_ACCESS_TOKEN": harvest.token,
            "HARVEST_BASE_URL": f"{harvest.origin}/v2",
            "HARVEST_RATE_LIMIT": "1000/1",
            "TOGGL_API_TOKEN": toggl.token,
            "TOGGL_WORKSPACE_ID": str(toggl.workspace_id),
            "TOGGL_BASE_URL": f"{toggl.origin}/api/v9",
            "TOGGL_RATE_LIMIT": options.toggl_rate,
            "CLOCKIFY_API_KEY": clockify.api_key,
            "CLOCKIFY_WORKSPACE_ID": clockify.workspace_id,
            "CLOCKIFY_BASE_URL": f"{clockify.origin}/api/v1",
            "CLOCKIFY_RATE_LIMIT": "1000/1",
            **self.env,
        }


def _premake(fake, premade: Premade) -> str:
    """A project made in the tool by a person before the trial: what Connect Existing names."""
    client_id = next(
        (cid for cid, c in fake.clients.items() if c["name"] == premade.client_name), None
    )
    if client_id is None:
        client_id = fake.add_client(premade.client_name)
    return str(fake.add_project(client_id, premade.name))


def wait_held(done, seconds: float, every: float = 1.0, quiet: float = QUIET) -> bool:
    """Polls ``done`` until it has held for ``quiet`` seconds on end, or ``seconds`` pass;
    True when it held. One empty listing proves little: right after a broker restart the
    quorum queues may be listed as empty before they have recovered their messages."""
    deadline = time.monotonic() + seconds
    held_since = None
    while True:
        if done():
            held_since = held_since or time.monotonic()
            if time.monotonic() - held_since >= quiet:
                return True
        else:
            held_since = None
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(every, max(0.0, deadline - time.monotonic())))
