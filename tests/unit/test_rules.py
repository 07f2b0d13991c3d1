"""What the rules file decides for an offering (``handlers.rules``), one semantic a test."""

from __future__ import annotations

import pytest

from handlers.rules import Rules, RulesError, load_rules
from schemas.inbound import Offering, Project
from tests import builders


def write_rules(tmp_path, text: str) -> str:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def rules_from(tmp_path, text: str) -> Rules:
    return load_rules(write_rules(tmp_path, text))


def project_with(offering_name="Discovery", *, client="Acme Corp", kind=None) -> Project:
    raw = builders.project(
        builders.offering(offering_name, kind=kind),
        client={"id": builders.rid("C"), "name": client},
    )
    return Project.model_validate(raw)


def plan(rules: Rules, project: Project, tool=None):
    offering: Offering = project.offerings[0]
    return rules.plan_for(project, offering, tool=tool)


def problem(tmp_path, text: str) -> str:
    with pytest.raises(RulesError) as caught:
        rules_from(tmp_path, text)
    return str(caught.value)


def test_without_a_file_the_built_in_defaults_apply():
    got = plan(load_rules(None), project_with("Discovery"))

    assert (got.tool, got.provision_on, got.assign_team, got.missing_member, got.rule) == (
        "harvest",
        "in_progress",
        True,
        "warn",
        None,
    )
    assert got.name.endswith(" - Discovery")


def test_defaults_apply_to_an_offering_no_rule_matches(tmp_path):
    rules = rules_from(
        tmp_path,
        """
        [defaults]
        tool = "toggl"
        provision_on = "closed_won"
        assign_team = false
        missing_member = "fail"

        [[rules]]
        match = { offering = "Support*" }
        provision_on = "manual"
        """,
    )

    got = plan(rules, project_with("Discovery"))

    assert (got.tool, got.provision_on, got.assign_team, got.missing_member, got.rule) == (
        "toggl",
        "closed_won",
        False,
        "fail",
        None,
    )


def test_the_first_matching_rule_wins_over_later_ones(tmp_path):
    rules = rules_from(
        tmp_path,
        """
        [[rules]]
        match = { offering = "Support*" }
        provision_on = "manual"

        [[rules]]
        match = { offering = "*Retainer" }
        provision_on = "closed_won"
        """,
    )

    got = plan(rules, project_with("Support Retainer"))

    assert (got.rule, got.provision_on) == (0, "manual")


def test_a_rule_overrides_only_the_keys_it_sets(tmp_path):
    rules = rules_from(
        tmp_path,
        """
        [defaults]
        tool = "toggl"
        name = "{offering}"
        missing_member = "fail"

        [[rules]]
        match = { offering = "Support*" }
        provision_on = "manual"
        """,
    )

    got = plan(rules, project_with("Support"))

    assert (got.provision_on, got.tool, got.name, got.missing_member, got.assign_team) == (
        "manual",
        "toggl",
        "Support",
        "fail",
        True,
    )


def test_an_offering_glob_matches_the_name_whatever_its_case(tmp_path):
    rules = rules_from(
        tmp_path,
        """
        [[rules]]
        match = { offering = "support*" }
        provision_on = "manual"
        """,
    )

    assert plan(rules, project_with("SUPPORT Retainer")).rule == 0
    assert plan(rules, project_with("Premium Support")).rule is None


def test_a_client_glob_matches_the_client_name(tmp_path):
    rules = rules_from(
        tmp_path,
        """
        [[rules]]
        match = { client = "Globex*" }
        tool = "clockify"
        """,
    )

    assert plan(rules, project_with(client="Globex Corporation")).tool == "clockify"
    assert plan(rules, project_with(client="Acme Globex")).tool == "harvest"


def test_a_kind_glob_matches_case_insensitively(tmp_path):
    rules = rules_from(
        tmp_path,
        """
        [[rules]]
        match = { kind = "fixed_*" }
        tool = "clockify"
        """,
    )

    assert plan(rules, project_with(kind="Fixed_Bid")).tool == "clockify"
    assert plan(rules, project_with(kind="time_and_materials")).tool == "harvest"
    assert plan(rules, project_with(kind=None)).tool == "harvest"


def test_an_entry_with_several_match_keys_needs_all_of_them(tmp_path):
    rules = rules_from(
        tmp_path,
        """
        [[rules]]
        match = { client = "Globex*", kind = "fixed_bid", offering = "Build*" }
        tool = "clockify"
        """,
    )
    everything = project_with("Build Phase", client="Globex Inc", kind="fixed_bid")
    wrong_client = project_with("Build Phase", client="Acme", kind="fixed_bid")
    wrong_kind = project_with("Build Phase", client="Globex Inc", kind="retainer")
    wrong_name = project_with("Discovery", client="Globex Inc", kind="fixed_bid")

    assert plan(rules, everything).tool == "clockify"
    assert [plan(rules, p).tool for p in (wrong_client, wrong_kind, wrong_name)] == ["harvest"] * 3


@pytest.mark.parametrize("trigger", ["in_progress", "closed_won", "manual"])
def test_each_provision_on_value_reaches_the_plan(tmp_path, trigger):
    rules = rules_from(tmp_path, f'[defaults]\nprovision_on = "{trigger}"\n')

    assert plan(rules, project_with()).provision_on == trigger


def test_a_name_template_fills_every_placeholder(tmp_path):
    rules = rules_from(
        tmp_path,
        '[defaults]\nname = "{client}|{project}|{project_id}|{offering}|{offering_id}"\n',
    )
    project = project_with("Discovery", client="Acme Corp")

    got = plan(rules, project)

    offering_id = project.offerings[0].id
    assert got.name == f"Acme Corp|Website Rebuild|{project.id}|Discovery|{offering_id}"


def test_a_rendered_name_is_cut_to_what_the_tools_accept(tmp_path):
    rules = rules_from(tmp_path, '[defaults]\nname = "{offering}"\n')

    assert len(plan(rules, project_with("x" * 400)).name) == 250


def test_an_unknown_placeholder_names_the_file_the_entry_and_the_key(tmp_path):
    path = write_rules(
        tmp_path,
        """
        [[rules]]
        match = { offering = "A*" }
        name = "{offering}"

        [[rules]]
        match = { offering = "B*" }
        name = "{customer} {offering}"
        """,
    )

    with pytest.raises(RulesError) as caught:
        load_rules(path)

    message = str(caught.value)
    assert message.startswith(f"{path}: rules[2].name: ")
    assert "unknown placeholder {customer}" in message


def test_an_unknown_placeholder_in_the_defaults_is_named(tmp_path):
    assert "defaults.name: " in problem(tmp_path, '[defaults]\nname = "{deal}"\n')


def test_a_format_spec_in_a_placeholder_is_rejected(tmp_path):
    assert "defaults.name: " in problem(tmp_path, '[defaults]\nname = "{project:>10}"\n')


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[defaults]\ncolour = 'red'\n", "defaults.colour"),
        (
            "[[rules]]\nmatch = { offering = 'A*' }\nprovison_on = 'manual'\n",
            "rules[1].provison_on",
        ),
        ("[[rules]]\nmatch = { project = 'A*' }\n", "rules[1].match.project"),
        ("[harvest]\nbill_to = 'Tasks'\n", "harvest.bill_to"),
        ("[jira]\nproject = 'X'\n", "jira"),
    ],
)
def test_unknown_keys_are_rejected_by_name(tmp_path, text, where):
    assert f": {where}: Extra inputs are not permitted" in problem(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[defaults]\ntool = 'jira'\n", "defaults.tool"),
        ("[defaults]\nprovision_on = 'won'\n", "defaults.provision_on"),
        ("[defaults]\nmissing_member = 'skip'\n", "defaults.missing_member"),
        ("[[rules]]\nmatch = {}\ntool = 'asana'\n", "rules[1].tool"),
        ("[harvest]\nbill_by = 'Hours'\n", "harvest.bill_by"),
        ("[harvest]\nbudget_by = 'hours'\n", "harvest.budget_by"),
    ],
)
def test_a_bad_enum_value_is_rejected_naming_the_key(tmp_path, text, where):
    assert f": {where}: Input should be " in problem(tmp_path, text)


def test_a_rule_without_match_is_rejected(tmp_path):
    assert "rules[1].match: Field required" in problem(tmp_path, "[[rules]]\ntool = 'toggl'\n")


def test_every_problem_is_kept_one_a_line_each_naming_the_file(tmp_path):
    path = write_rules(tmp_path, "[defaults]\ntool = 'jira'\nprovision_on = 'won'\n")

    with pytest.raises(RulesError) as caught:
        load_rules(path)

    assert [line.split(": ")[:2] for line in caught.value.problems] == [
        [path, "defaults.tool"],
        [path, "defaults.provision_on"],
    ]


def test_the_harvest_table_reaches_the_plan_options(tmp_path):
    rules = rules_from(
        tmp_path,
        """
        [harvest]
        bill_by = "Tasks"
        budget_by = "person"
        tasks = ["Design", "Development"]
        task_billable = false
        """,
    )

    assert plan(rules, project_with()).options == {
        "bill_by": "Tasks",
        "budget_by": "person",
        "tasks": ["Design", "Development"],
        "task_billable": False,
        "project_managers": False,
    }


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ('budget_by = "project_cost"', "budgets money"),
        ('budget_by = "task_fees"', "budgets money"),
        ('budget_by = "task"\ntasks = ["Design", "Development"]', "exactly one task"),
        ('budget_by = "task"', "exactly one task"),
    ],
)
def test_a_harvest_budget_the_offering_cannot_fill_is_refused(tmp_path, table, says):
    with pytest.raises(RulesError) as caught:
        rules_from(tmp_path, f"[harvest]\n{table}\n")

    assert "harvest" in str(caught.value) and says in str(caught.value)


def test_a_harvest_task_budget_with_one_task_is_accepted(tmp_path):
    rules = rules_from(tmp_path, '[harvest]\nbudget_by = "task"\ntasks = ["Design"]\n')

    assert plan(rules, project_with()).options["budget_by"] == "task"


def test_the_toggl_table_reaches_the_plan_options_of_a_toggl_offering(tmp_path):
    rules = rules_from(
        tmp_path,
        """
        [[rules]]
        match = { kind = "training" }
        tool = "toggl"

        [toggl]
        is_private = false
        """,
    )

    assert plan(rules, project_with(kind="training")).options == {"is_private": False}
    assert "is_private" not in plan(rules, project_with(kind="retainer")).options


def test_an_unset_tool_option_is_left_to_the_adapter(tmp_path):
    rules = rules_from(tmp_path, "[defaults]\ntool = 'toggl'\n")

    assert plan(rules, project_with()).options == {}


def test_an_explicit_tool_overrides_the_rules_and_brings_its_options(tmp_path):
    rules = rules_from(
        tmp_path,
        """
        [[rules]]
        match = { offering = "*" }
        tool = "clockify"

        [toggl]
        is_private = true
        """,
    )

    got = plan(rules, project_with(), tool="toggl")

    assert (got.tool, got.options, got.rule) == ("toggl", {"is_private": True}, 0)


def test_check_tools_fails_naming_the_tool_without_credentials(tmp_path):
    rules = rules_from(
        tmp_path,
        """
        [[rules]]
        match = { client = "Globex*" }
        tool = "clockify"
        """,
    )

    with pytest.raises(RulesError) as caught:
        rules.check_tools(["harvest"])

    assert str(caught.value).startswith(f"{rules.source}: names clockify ")


def test_check_tools_passes_when_every_named_tool_has_credentials(tmp_path):
    rules = rules_from(tmp_path, "[[rules]]\nmatch = {}\ntool = 'toggl'\n")

    rules.check_tools(["harvest", "toggl"])


def test_unreadable_toml_names_the_file(tmp_path):
    path = write_rules(tmp_path, "[defaults\ntool = 'harvest'\n")

    with pytest.raises(RulesError, match=r"rules\.toml: not valid TOML"):
        load_rules(path)


def test_a_missing_file_names_the_file(tmp_path):
    path = tmp_path / "absent.toml"

    with pytest.raises(RulesError, match=r"absent\.toml: cannot read rules file"):
        load_rules(path)
