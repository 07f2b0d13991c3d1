"""``provisioner crm reconcile --every`` without a broker or a CRM: its argument rules, the
loop's timing on an injected clock, the lock's skip path, the per-CRM outcomes and their
metrics, and stopping mid-sweep; and HubSpot's search budget when pacing is shared."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import structlog
from structlog.testing import capture_logs

from adapters.shared_pacing import SharedPacer
from handlers.rules import load_rules
from tests.builders import rid
from worker import metrics
from worker.bootstrap import build_crms
from worker.commands.main import main
from worker.pacing import account_budget, pacing_store
from worker.reconcile import Sweep, SweepAbandoned, Window
from worker.reconcile_schedule import Schedule, Stopping, next_tick
from worker.settings import load_settings

T0 = 1_772_443_800.3  # 2026-03-02 09:30:00.3 UTC, just past a quarter hour


@pytest.fixture(autouse=True)
def plain_logging(restore_logging):
    """An earlier test's command may have pointed structlog at a stream now closed."""
    structlog.reset_defaults()


class FakeClock:
    """Time that moves only when the loop sleeps or a sweep takes some."""

    def __init__(self, now: float):
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class MemoryLock:
    """The sweep lock as a value: ``free`` says whether it can be taken."""

    queue = "t.reconcile"

    def __init__(self, free: bool = True):
        self.free = free
        self.held = False
        self.taken = 0

    def acquire(self) -> bool:
        if not self.free:
            return False
        self.held, self.taken = True, self.taken + 1
        return True

    def release(self) -> None:
        self.held = False


def swept(crm: str, examined: int = 3, published: int = 2) -> Sweep:
    moment = datetime.fromtimestamp(T0, UTC)
    return Sweep(crm, "62515", Window(moment, moment), False, examined, published, 1)


def sample(name: str, **labels) -> float:
    return metrics.RECONCILE.get_sample_value(name, labels) or 0.0


class Sweeps:
    """``sweep_each`` that records when it ran and stops the schedule after ``runs``."""

    def __init__(self, clock: FakeClock, stopping: Stopping, crms, runs: int, takes=0.0):
        self.clock, self.stopping, self.crms, self.runs, self.takes = (
            clock, stopping, crms, runs, takes
        )  # fmt: skip
        self.started: list[float] = []
        self.held_while_sweeping: list[bool] = []
        self.lock: MemoryLock | None = None

    def __call__(self, abandon):
        self.started.append(self.clock())
        self.held_while_sweeping.append(bool(self.lock and self.lock.held))
        self.clock.now += self.takes
        if len(self.started) >= self.runs:
            self.stopping()
        for crm in self.crms:
            yield crm, swept(crm)


def schedule(crms, *, interval=900.0, runs=3, takes=0.0, lock=None, at=T0):
    clock, stopping = FakeClock(at), Stopping()
    sweeps = Sweeps(clock, stopping, crms, runs, takes)
    sweeps.lock = lock or MemoryLock()
    loop = Schedule(
        crms=list(crms), interval=interval, lock=sweeps.lock, sweep_each=sweeps,
        stopping=stopping, clock=clock, sleep=clock.sleep,
    )  # fmt: skip
    return loop, sweeps, clock


# -- arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--every", "15m", "--since", "1h"],
        ["--every", "15m", "--dry-run"],
        ["--every", "soon"],
        ["--every", "0"],
    ],
)
def test_every_with_since_or_dry_run_or_no_duration_exits_2_with_one_line(argv, capsys):
    status = main(["crm", "reconcile", *argv])

    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("provisioner: --every ")


# -- when the sweeps run -----------------------------------------------------------------


def test_ticks_fall_on_the_multiples_of_the_interval_so_replicas_try_together():
    assert next_tick(T0, 900) == T0 - 0.3 + 900
    assert next_tick(T0 - 0.3, 900) == T0 - 0.3 + 900  # on a tick: the next one
    assert next_tick(7.5, 1) == 8


def test_the_first_sweep_runs_at_once_and_the_next_on_each_tick():
    loop, sweeps, _ = schedule(["hubspot"], runs=3)

    loop.run()

    tick = T0 - 0.3
    assert sweeps.started == [T0, tick + 900, tick + 1800]
    assert sweeps.held_while_sweeping == [True, True, True]
    assert loop.lock.held is False


def test_a_sweep_longer_than_its_interval_lets_the_ticks_it_covered_pass():
    loop, sweeps, _ = schedule(["hubspot"], interval=60.0, runs=2, takes=150.0)

    loop.run()

    # The first ends at T0 + 150 (09:32:30.3): the ticks of 09:31 and 09:32 are gone.
    assert sweeps.started == [T0, T0 - 0.3 + 180]


def test_a_stop_while_waiting_ends_the_loop_without_another_sweep():
    loop, sweeps, clock = schedule(["hubspot"], runs=99)

    def stop_during_wait(seconds):
        clock.now += seconds
        if len(clock.slept) == 3:
            loop.stopping()
        clock.slept.append(seconds)

    loop.sleep = stop_during_wait
    loop.run()

    assert len(sweeps.started) == 1 and max(clock.slept) <= 0.5


# -- the lock and the outcomes -----------------------------------------------------------


def test_a_replica_that_finds_the_lock_taken_skips_the_interval_and_counts_it():
    crm = rid("crm")
    before = sample("provisioner_reconcile_sweeps_total", crm=crm, outcome="skipped_locked")
    loop, sweeps, _ = schedule([crm], lock=MemoryLock(free=False))

    with capture_logs() as lines:
        loop.once()

    assert sweeps.started == []
    assert [line["event"] for line in lines] == ["reconcile_skipped_locked"]
    after = sample("provisioner_reconcile_sweeps_total", crm=crm, outcome="skipped_locked")
    assert after == before + 1
    assert sample("provisioner_reconcile_last_success_timestamp_seconds", crm=crm) == 0.0


def test_a_crm_swept_sets_its_last_success_and_one_that_fails_is_counted_and_retried():
    good, bad = rid("good"), rid("bad")
    clock, stopping = FakeClock(T0), Stopping()
    calls = []

    def sweep_each(abandon):
        calls.append(clock())
        if len(calls) == 2:
            stopping()
        yield bad, "bad: connect timed out after 5s"
        yield good, swept(good, examined=4, published=3)

    loop = Schedule(
        crms=[bad, good], interval=60.0, lock=MemoryLock(), sweep_each=sweep_each,
        stopping=stopping, clock=clock, sleep=clock.sleep,
    )  # fmt: skip

    loop.run()

    assert len(calls) == 2  # the failure did not end the loop
    assert sample("provisioner_reconcile_sweeps_total", crm=bad, outcome="failed") == 2
    assert sample("provisioner_reconcile_sweeps_total", crm=good, outcome="ok") == 2
    assert sample("provisioner_reconcile_last_success_timestamp_seconds", crm=good) == calls[1]
    assert sample("provisioner_reconcile_last_success_timestamp_seconds", crm=bad) == 0.0
    assert sample("provisioner_reconcile_deals_examined_total", crm=good) == 8
    assert sample("provisioner_reconcile_deals_published_total", crm=good) == 6
    assert sample("provisioner_reconcile_interval_seconds") == 60.0


def test_a_stop_mid_sweep_abandons_it_releases_the_lock_and_counts_no_outcome():
    crm = rid("crm")
    clock, stopping, lock = FakeClock(T0), Stopping(), MemoryLock()

    def sweep_each(abandon):
        stopping()  # SIGTERM arrives while the CRM is read
        if abandon():
            raise SweepAbandoned(f"{crm}: stopped after 0 deals")
        yield crm, swept(crm)

    loop = Schedule(
        crms=[crm], interval=60.0, lock=lock, sweep_each=sweep_each,
        stopping=stopping, clock=clock, sleep=clock.sleep,
    )  # fmt: skip

    loop.run()

    assert lock.taken == 1 and lock.held is False
    for outcome in metrics.SWEEP_OUTCOMES:
        assert sample("provisioner_reconcile_sweeps_total", crm=crm, outcome=outcome) == 0


def test_a_lock_lost_mid_sweep_abandons_it():
    lock = MemoryLock()
    loop, _, _ = schedule(["hubspot"], lock=lock)
    lock.acquire()
    assert loop._abandon() is False

    lock.held = False  # the keeper saw the lock's connection go

    assert loop._abandon() is True


# -- HubSpot's search budget -------------------------------------------------------------


def test_with_shared_pacing_hubspot_search_has_a_shared_budget_of_its_own(monkeypatch, tmp_path):
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", "pat-na1-0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    monkeypatch.setenv("PROVISIONER_PACING_URL", "redis://127.0.0.1:6379/3")
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text("")
    settings = load_settings()

    hubspot = build_crms(settings, load_rules(str(rules_file)), pacing_store(settings))["hubspot"]

    search, account = hubspot.search_pacer, hubspot.http.pacer
    assert isinstance(search, SharedPacer) and isinstance(account, SharedPacer)
    assert search.budget == account_budget(settings, "hubspot") + ":search"
    assert account.budget == account_budget(settings, "hubspot")
    assert (search.calls, search.period) == (4, 1.0)
