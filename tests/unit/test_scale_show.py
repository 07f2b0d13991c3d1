"""The show's own parts, without services: the scenario tells the story it promises, and the
order verdict catches a project's outcomes going back (and forgives a re-sent copy)."""

from __future__ import annotations

import json
import random

from tests.scale_show.scenario import build
from tests.scale_show.verdict import out_of_order


def test_the_scenario_has_the_size_asked_and_keeps_each_projects_order():
    scenario = build(random.Random(7), events=1000, projects=200)
    assert len(scenario.publications) == 1000
    assert len(scenario.order) == 200 and scenario.copies > 0
    for pid, ids in scenario.order.items():
        firsts = []
        for p in scenario.publications:
            if p.project == pid and p.event_id not in firsts:
                firsts.append(p.event_id)
        assert firsts == ids
        types = [
            json.loads(p.body)["data"].get("status", json.loads(p.body)["type"])
            for p in scenario.publications
            if p.project == pid and not p.copy
        ]
        assert types[0] == "deal.closed_won" and types.count("in_progress") == 2
        assert types.index("on_hold") < len(types) - 1
    assert not scenario.provisioned & scenario.not_provisioned
    assert set(scenario.connected).isdisjoint(scenario.provisioned)


def _outcome(id_: str, cause: str) -> dict:
    return {"id": id_, "type": "timesheet.provisioned", "causationid": cause}


def test_outcomes_going_back_in_a_projects_order_are_named():
    scenario = build(random.Random(1), events=8, projects=2)
    first, second = scenario.order["SP1"][:2]
    in_order = [_outcome("a", first), _outcome("b", second), _outcome("a", first)]
    assert out_of_order(scenario, in_order) == []  # the repeat of "a" is a re-sent copy
    backwards = [_outcome("b", second), _outcome("a", first)]
    assert out_of_order(scenario, backwards) == [
        "SP1: an outcome of its event #1 (timesheet.provisioned) came after outcomes of its "
        "event #2"
    ]
