"""The lines ``provisioner check`` prints and the exit status they make."""

from worker.check.lines import Line, exit_status, fail, ok, redacted, warn


def test_a_line_reads_status_area_what_and_fix():
    line = fail("hubspot", "the token is refused (401)", "set HUBSPOT_ACCESS_TOKEN")
    assert line.text() == "FAIL hubspot: the token is refused (401) - set HUBSPOT_ACCESS_TOKEN"
    assert ok("store", "reachable").text() == "ok   store: reachable"


def test_a_line_as_json_has_every_key_even_without_a_fix():
    assert ok("broker", "connected").row() == {
        "status": "ok", "area": "broker", "what": "connected", "fix": None,
    }  # fmt: skip


def test_any_fail_makes_exit_1_and_warnings_alone_exit_0():
    assert exit_status([ok("a", "x"), warn("b", "y")]) == 0
    assert exit_status([ok("a", "x"), fail("b", "y", "z")]) == 1
    assert exit_status([]) == 0


def test_a_secret_quoted_back_is_replaced_in_what_and_fix():
    line = Line("FAIL", "toggl", "vendor said token abc123", "not abc123")
    expected = Line("FAIL", "toggl", "vendor said token ***", "not ***")
    assert redacted(line, ["abc123", ""]) == expected


def test_control_characters_from_a_vendor_do_not_reach_the_terminal():
    assert "\x1b" not in warn("hubspot", "stage \x1b[31mred").text()
