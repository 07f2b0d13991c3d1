"""The settings and command-line reference pages are generated from the code and committed
up to date: a setting or an option added without regenerating them fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.commands import docs_reference
from worker.ingress.settings import IngressSettings
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("page", list(docs_reference.PAGES), ids=lambda p: p.name)
def test_the_committed_reference_page_is_the_one_the_code_generates(page):
    assert (ROOT / page).read_text(encoding="utf-8") == docs_reference.PAGES[page](), (
        f"{page} is stale: run {docs_reference.REGENERATE}"
    )


def test_every_setting_of_the_worker_and_the_ingress_has_a_row():
    page = docs_reference.settings_page()
    aliases = {
        f.alias for f in (*Settings.model_fields.values(), *IngressSettings.model_fields.values())
    }
    assert sorted(a for a in aliases if f"| `{a}` |" not in page) == []


def test_every_subcommand_has_a_section_with_its_usage():
    from worker.commands.main import parser

    page = docs_reference.cli_page()
    names = [name for name, _, _ in docs_reference._subcommands(parser())]
    assert "run" in names and "dlq" in names
    assert [n for n in names if f"## `provisioner {n}`" not in page] == []
    assert "provisioner dlq replay [-h]" in page


def test_a_comment_above_a_field_becomes_its_description():
    comments = docs_reference.field_comments(IngressSettings)
    assert comments["read_timeout"].startswith("A client that has not sent its whole request")
    assert comments["bind"] == ""


def test_the_command_writes_both_pages_under_the_root_it_is_given(tmp_path):
    (tmp_path / "docs" / "reference").mkdir(parents=True)
    assert docs_reference.main(["--root", str(tmp_path)]) == 0
    for page in docs_reference.PAGES:
        assert (tmp_path / page).read_text(encoding="utf-8") == docs_reference.PAGES[page]()
