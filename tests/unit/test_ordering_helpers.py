"""The order checker of ``tests.ordering`` finds what it is for: a project's outcomes out
of publish order, missing, or of the wrong kind; repeats of an outcome are allowed."""

from __future__ import annotations

from tests import ordering


def outcomes_for(scenario: ordering.Scenario, order: list[str]) -> list[dict]:
    return [{"type": scenario.expected[event_id][0], "causationid": event_id} for event_id in order]


def test_the_scenario_keeps_each_projects_order_and_mixes_the_projects():
    scenario = ordering.scenario(20, seed=3)
    for ids in scenario.by_project.values():
        published = [e["id"] for e in scenario.events if e["id"] in set(ids)]
        assert published == ids
    firsts = [scenario.project_of(e["id"]) for e in scenario.events[:20]]
    assert len(set(firsts)) > 5  # not one project after another


def test_outcomes_in_publish_order_pass_even_with_a_redelivery_repeating_some():
    scenario = ordering.scenario(3, seed=1)
    published = [e["id"] for e in scenario.events]
    assert ordering.order_problems(scenario, outcomes_for(scenario, published)) == []
    repeated = published[:5] + published[2:5] + published[5:]
    assert ordering.order_problems(scenario, outcomes_for(scenario, repeated)) == []


def test_a_swapped_missing_or_wrong_outcome_is_a_problem():
    scenario = ordering.scenario(1)
    first, second, third, fourth = next(iter(scenario.by_project.values()))
    swapped = outcomes_for(scenario, [first, third, second, fourth])
    missing = outcomes_for(scenario, [first, second, fourth])
    wrong = outcomes_for(scenario, [first, second, third, fourth])
    wrong[3]["type"] = "timesheet.provisioned"  # provisioned again instead of restored
    for outcomes in (swapped, missing, wrong):
        assert ordering.order_problems(scenario, outcomes)
