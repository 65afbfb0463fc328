"""The docs name real tests: every `tests/<file>.py::<test>` a page under docs/ cites exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

DOCS = sorted((PROJECT_ROOT / "docs").glob("*.md"))
TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


@pytest.mark.parametrize("page", DOCS, ids=[page.name for page in DOCS])
def test_every_test_a_page_names_exists(page: Path) -> None:
    references = TEST_REFERENCE.findall(page.read_text())

    missing = [
        f"{path}::{name}" for path, name in references
        if not (PROJECT_ROOT / path).is_file()
        or not re.search(rf"^(async )?def {name}\(", (PROJECT_ROOT / path).read_text(), re.MULTILINE)
    ]

    assert missing == []


def test_the_reliability_page_counts_the_faults_it_lists() -> None:
    page = (PROJECT_ROOT / "docs" / "reliability.md").read_text()
    rows = re.findall(r"^\| (\d+) \|", page, re.MULTILINE)
    survived, total = map(int, re.search(r"\*\*(\d+) of (\d+) fault cases survived", page).groups())  # type: ignore[union-attr]

    assert [int(row) for row in rows] == list(range(1, len(rows) + 1))
    assert survived == total == len(rows)
