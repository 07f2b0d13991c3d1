"""The README and docs/ link only to files inside the repository that exist: a reader of a
clone (or of the package's page) must be able to follow every link."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_stays_in_the_repository_and_exists(doc):
    links = [m.group(1).split("#")[0] for m in LINK.finditer(doc.read_text(encoding="utf-8"))]
    local = [link for link in links if link and not re.match(r"[a-z]+:", link)]
    outside = [link for link in local if ROOT not in (doc.parent / link).resolve().parents]
    missing = [link for link in local if not (doc.parent / link).exists()]
    assert (outside, missing) == ([], [])
