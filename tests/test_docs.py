"""The docs can be walked: every link and path in README.md and docs/ resolves, every page is reachable
from the README, and every `tests/<file>.py::<test>` a page under docs/ cites exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

DOCS = sorted((PROJECT_ROOT / "docs").glob("*.md"))
README = PROJECT_ROOT / "README.md"
PAGES = [README, *DOCS]
TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
# A Markdown link or image, `[text](target)` or `[text](target "title")`; the target is group 1.
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# A path into the repository named in prose or code (`orchestrations/intake.py`, docs/concurrency.md), not
# part of a URL (`az://runs/...`, `https://.../docs/...`) or of a longer path.
TOP_FOLDERS = ("bench", "docs", "function_app", "infra", "local_runner", "orchestrations", "runner", "samples",
               "scripts", "tests")
REPOSITORY_PATH = re.compile(rf"(?<![\w/.:~-])((?:{'|'.join(TOP_FOLDERS)})/[\w./*-]*[\w*/])")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def heading_anchors(markdown: str) -> set[str]:
    """The `#anchors` GitHub gives a page's headings: lower case, punctuation dropped, spaces to hyphens,
    and `-1`, `-2`, ... after a repeated one."""
    anchors: set[str] = set()
    for heading in HEADING.findall(FENCE.sub("", markdown)):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in anchors:
            n += 1
            candidate = f"{slug}-{n}"
        anchors.add(candidate)
    return anchors


def broken_links(page: Path, markdown: str) -> list[str]:
    """Each relative Markdown link of `page` whose file, or `#anchor` in a Markdown file, does not exist."""
    broken = []
    for target in MARKDOWN_LINK.findall(FENCE.sub("", markdown)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # https:, mailto:, az:
            continue
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            shown = linked.relative_to(PROJECT_ROOT) if linked.is_relative_to(PROJECT_ROOT) else linked
            broken.append(f"{target}: no file {shown}")
        elif anchor and linked.suffix == ".md":
            text = markdown if linked == page else linked.read_text()
            if anchor not in heading_anchors(text):
                broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    return broken


def missing_paths(markdown: str) -> list[str]:
    """Each repository path the text names (`orchestrations/intake.py`, `scripts/azd-*.sh`) that matches nothing."""
    missing = []
    for path in REPOSITORY_PATH.findall(markdown):
        if "<" in path or "{" in path:  # a pattern such as `docs/<page>.md`
            continue
        if not (any(PROJECT_ROOT.glob(path.rstrip("/"))) if "*" in path else (PROJECT_ROOT / path).exists()):
            missing.append(path)
    return missing


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_relative_link_a_page_makes_resolves_anchors_included(page: Path) -> None:
    assert broken_links(page, page.read_text()) == []


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_repository_path_a_page_names_exists(page: Path) -> None:
    assert missing_paths(page.read_text()) == []


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    readme = README.read_text()
    linked = {Path(target.partition("#")[0]).name for target in MARKDOWN_LINK.findall(readme)}
    named = set(re.findall(r"docs/([\w.-]+\.md)", readme))

    assert [page.name for page in DOCS if page.name not in linked | named] == []


def test_the_link_checks_find_a_broken_link_a_missing_anchor_and_a_missing_path() -> None:
    page = PROJECT_ROOT / "docs" / "architecture.md"
    text = (
        "# Title\n[ok](settings.md) [ok](#title) [ok](https://example.com/x.md) [gone](no-such-page.md)\n"
        "[no anchor](settings.md#no-such-heading) [self](#missing)\n"
        "`orchestrations/intake.py` `scripts/azd-*.sh` `orchestrations/no_such_module.py` az://runs/x/y.csv\n"
        "```\n[in a code block](not-checked.md)\n```\n"
    )

    assert broken_links(page, text) == [
        "no-such-page.md: no file docs/no-such-page.md",
        "settings.md#no-such-heading: no heading #no-such-heading in settings.md",
        "#missing: no heading #missing in architecture.md",
    ]
    assert missing_paths(text) == ["orchestrations/no_such_module.py"]
    assert heading_anchors("# A `code` title: yes!\n## Again\n## Again\n") == {"a-code-title-yes", "again", "again-1"}


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
