"""Issue 15's show: three worker processes on one broker, one PostgreSQL and one Redis pacing
budget take 1,000 shuffled events (copies included) about 200 projects, and the outside sees
what one worker would have done: one vendor project per provisioned offering and none for
the others, no vendor client twice, each project's outcomes in the order of its events,
nothing dead-lettered. Then the same with one worker SIGKILLed mid-run and a fourth started.

The run itself is ``tests.scale_show`` (also ``python -m tests.scale_show``); the verdict's
lines name the project or offering and what was seen."""

from __future__ import annotations

from tests.scale_show.show import Options, run


def _show(amqp_url: str, postgres_url: str, **options) -> None:
    result = run(Options(amqp_url=amqp_url, postgres_url=postgres_url, **options))
    where = f"\nworker logs: {result.directory}" if result.directory else ""
    assert result.problems == [], (
        f"seed {result.seed}: {len(result.problems)} problems "
        f"({result.out_of_order} projects out of order):\n"
        + "\n".join(result.problems[:20])
        + where
    )
    assert result.vendor_projects > 0 and result.outcomes >= result.publications - result.copies


def test_three_workers_keep_each_projects_order_and_make_nothing_twice(amqp_url, postgres_url):
    _show(amqp_url, postgres_url, events=1000, projects=200, workers=3)


def test_a_worker_killed_mid_run_is_replaced_and_nothing_changes(amqp_url, postgres_url):
    _show(amqp_url, postgres_url, events=1000, projects=200, workers=3, kill=True)
