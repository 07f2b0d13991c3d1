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
        ('budget_by = "task_fees"', "fees per task"),
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


# -- the commercial shape (issue 21) --------------------------------------------------------
EUR_12000 = {"amount": "12000.00", "currency": "EUR"}
EUR_95 = {"amount": "95.00", "currency": "EUR"}


def priced(kind=None, *, url="https://app.example.com/deals/42", **fields) -> Project:
    raw = builders.project(
        builders.offering("Build", kind=kind, **fields),
        client={"id": "C-7", "name": "Acme Corp"},
        url=url,
    )
    raw["id"] = "P-9"
    raw["offerings"][0]["id"] = "O-3"
    return Project.model_validate(raw)


def test_a_fixed_bid_offering_is_fixed_fee_for_its_price_by_default():
    got = plan(load_rules(None), priced("fixed_bid", price=EUR_12000))

    assert (got.fixed_fee, got.fee.amount, got.fee.currency) == (True, "12000.00", "EUR")
    assert got.money_budget is None


def test_other_kinds_are_not_fixed_fee_unless_a_rule_says(tmp_path):
    rules = rules_from(tmp_path, '[[rules]]\nmatch = { kind = "retainer" }\nfixed_fee = true\n')

    assert plan(rules, priced("time_and_materials", price=EUR_12000)).fee is None
    assert plan(rules, priced("retainer", price=EUR_12000)).fee.amount == "12000.00"


def test_a_rule_can_turn_the_fixed_fee_of_a_fixed_bid_off(tmp_path):
    rules = rules_from(tmp_path, "[defaults]\nfixed_fee = false\n")

    got = plan(rules, priced("fixed_bid", price=EUR_12000))

    assert (got.fixed_fee, got.fee) == (False, None)


def test_money_budget_makes_the_price_the_budget(tmp_path):
    rules = rules_from(tmp_path, "[defaults]\nmoney_budget = true\n")

    got = plan(rules, priced(price=EUR_12000))

    assert got.money_budget.value == 12000 and got.warnings == ()


def test_a_money_budget_without_a_price_says_so(tmp_path):
    got = plan(rules_from(tmp_path, "[defaults]\nmoney_budget = true\n"), priced())

    assert got.money_budget is None
    assert got.warnings == ("money_budget: the offering has no price, so no budget in money",)


def test_the_offering_rate_is_billed_by_default_and_none_turns_it_off(tmp_path):
    rules = rules_from(tmp_path, '[[rules]]\nmatch = { kind = "internal" }\nhourly_rate = "none"\n')

    assert plan(rules, priced(hourly_rate=EUR_95)).hourly_rate.amount == "95.00"
    assert plan(rules, priced("internal", hourly_rate=EUR_95)).hourly_rate is None


@pytest.mark.parametrize(
    ("rate", "offering", "expected"),
    [
        ("150.00", {"price": EUR_12000}, ("150.00", "EUR")),
        ("150.00", {"hourly_rate": {"amount": "90", "currency": "GBP"}}, ("150.00", "GBP")),
        ("150.00 USD", {"price": EUR_12000}, ("150.00", "USD")),
    ],
)
def test_a_fixed_rate_is_in_the_offering_currency_unless_it_names_one(
    tmp_path, rate, offering, expected
):
    rules = rules_from(tmp_path, f'[defaults]\nhourly_rate = "{rate}"\n')

    got = plan(rules, priced(**offering)).hourly_rate

    assert (got.amount, got.currency) == expected


def test_a_fixed_rate_without_any_currency_is_left_out_with_a_warning(tmp_path):
    got = plan(rules_from(tmp_path, '[defaults]\nhourly_rate = "150"\n'), priced())

    assert got.hourly_rate is None
    assert "no currency" in got.warnings[0] and '"150 EUR"' in got.warnings[0]


@pytest.mark.parametrize("rate", ["150,00", "-5", "150.00 eur", "1e3", "offer"])
def test_a_malformed_hourly_rate_is_refused_naming_the_key(tmp_path, rate):
    says = problem(tmp_path, f'[defaults]\nhourly_rate = "{rate}"\n')

    assert "defaults.hourly_rate" in says and '"150.00 EUR"' in says


def test_code_and_notes_templates_fill_their_placeholders(tmp_path):
    rules = rules_from(
        tmp_path,
        """
        [defaults]
        code = "{project_id}-{offering_id}"
        notes = "{client}: {offering}. Deal: {deal_url}"
        """,
    )

    got = plan(rules, priced())

    assert got.code == "P-9-O-3"
    assert got.notes == "Acme Corp: Build. Deal: https://app.example.com/deals/42"


def test_deal_url_is_empty_when_the_project_has_no_url(tmp_path):
    rules = rules_from(tmp_path, '[defaults]\nnotes = "Deal: {deal_url}"\n')

    assert plan(rules, priced(url=None)).notes == "Deal: "


def test_deal_url_belongs_to_the_notes_not_the_code(tmp_path):
    says = problem(tmp_path, '[defaults]\ncode = "{deal_url}"\n')

    assert "defaults.code" in says and "unknown placeholder {deal_url}" in says


def test_a_rule_template_reaches_the_plan_and_the_templates_per_tool(tmp_path):
    rules = rules_from(
        tmp_path,
        """
        [defaults]
        template = "111"

        [[rules]]
        match = { kind = "retainer" }
        tool = "toggl"
        template = "https://track.toggl.com/1/projects/222"

        [[rules]]
        match = { kind = "training" }
        tool = "clockify"
        """,
    )

    assert plan(rules, priced()).template == "111"
    assert rules.templates() == {
        "harvest": {"111"},
        "toggl": {"https://track.toggl.com/1/projects/222"},
        "clockify": {"111"},
    }


def test_harvest_project_cost_is_accepted_and_budgets_the_price(tmp_path):
    rules = rules_from(tmp_path, '[harvest]\nbudget_by = "project_cost"\n')

    got = plan(rules, priced(price=EUR_12000))

    assert (got.options["budget_by"], got.money_budget.amount) == ("project_cost", "12000.00")


def test_a_template_missing_in_its_tool_is_a_start_up_problem_naming_file_and_reference(
    tmp_path,
):
    from tests.unit.memory_tool import MemoryTool
    from worker.bootstrap import template_problems

    harvest, toggl = MemoryTool("harvest"), MemoryTool("toggl")
    there = harvest.add_project(None, "Template")
    rules = rules_from(
        tmp_path,
        f"""
        [defaults]
        template = "{there}"

        [[rules]]
        match = {{ kind = "training" }}
        tool = "toggl"
        template = "999"
        """,
    )

    problems = template_problems(rules, {"harvest": harvest, "toggl": toggl})

    assert problems == [f"{rules.source}: template '999': no project 999"]
