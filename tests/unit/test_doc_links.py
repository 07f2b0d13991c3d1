"""The README and docs/ link only to files inside the repository that exist: a reader of a
clone (or of the package's page) must be able to follow every link. The site's pages link
only inside docs/ (what mkdocs can build), every page is in the site's navigation, and the
README stays a front page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")
PAGES = sorted((ROOT / "docs").rglob("*.md"))
DOCS = [ROOT / "README.md", *PAGES]
README_MOST_LINES = 250


def local_links(doc: Path) -> list[str]:
    links = [m.group(1).split("#")[0] for m in LINK.finditer(doc.read_text(encoding="utf-8"))]
    return [link for link in links if link and not re.match(r"[a-z]+:", link)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_stays_in_the_repository_and_exists(doc):
    local = local_links(doc)
    outside = [link for link in local if ROOT not in (doc.parent / link).resolve().parents]
    missing = [link for link in local if not (doc.parent / link).exists()]
    assert (outside, missing) == ([], [])


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_site_page_links_only_inside_docs(page):
    docs = ROOT / "docs"
    outside = [
        link for link in local_links(page) if docs not in (page.parent / link).resolve().parents
    ]
    assert outside == []


def nav_entries(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [page for value in node.values() for page in nav_entries(value)]
    return [page for item in node for page in nav_entries(item)]


def test_every_page_is_in_the_site_navigation_and_every_entry_exists():
    nav = nav_entries(yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"])
    pages = {str(p.relative_to(ROOT / "docs")) for p in PAGES}
    assert (sorted(pages - set(nav)), sorted(set(nav) - pages)) == ([], [])


def test_the_readme_fits_a_front_page_and_keeps_the_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MOST_LINES
    assert "```sh\nmake test\n```" in readme and "make setup" in readme
