"""The repository's own documents: the README is short, its results table is the generated one, and every link in
the README and docs/ resolves to a file inside the repository."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks.learning.plan import load_plan
from benchmarks.learning.report import README_BEGIN, README_END, readme_table, record_tables

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target); a target's #anchor and "title" are not part of the path.
PACKAGES = ("agents", "envs", "meta", "evaluation", "benchmarks", "tests")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>#]*)[^)]*\)")


def test_the_readme_is_a_page_of_at_most_120_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 120


def test_the_readme_table_is_the_one_generated_from_docs_results_json():
    text = (ROOT / "README.md").read_text()
    table = text[text.index(README_BEGIN) + len(README_BEGIN) : text.index(README_END)]
    records = json.loads((ROOT / "docs" / "results.json").read_text())
    expected = readme_table(load_plan(ROOT / "benchmarks" / "plans" / "headline.yaml"), records)
    assert table.strip() == expected.strip()
    assert "|" in table, "the README's results table is empty: run the report"


def test_the_numbers_of_results_md_are_the_ones_of_docs_results_json():
    plan = load_plan(ROOT / "benchmarks" / "plans" / "headline.yaml")
    shown = (ROOT / "docs" / "results.md").read_text().splitlines()
    expected = [line for line in record_tables(plan, json.loads((ROOT / "docs" / "results.json").read_text())) if line]
    # every table line generated from the records appears in results.md, in the same order
    at = iter(shown)
    missing = [line for line in expected if line not in at]
    assert not missing, f"{len(missing)} lines of results.md are not the records' (first: {missing[0]})"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_of_a_document_is_a_file_inside_the_repository(document):
    for target in LINK.findall(document.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or not target:  # https:, mailto:, or an anchor in the page
            continue
        path = (document.parent / target).resolve()
        assert path.is_relative_to(ROOT), f"{document.name} links outside the repository: {target}"
        assert path.exists(), f"{document.name} links to {target}, which does not exist"


def test_no_document_or_source_file_points_at_the_teams_notes_outside_the_repository():
    sources = [*ROOT.glob("*.py"), *(p for d in PACKAGES for p in (ROOT / d).rglob("*.py"))]
    needle = "../" + "shared"  # split so that this file does not name it
    assert not [p.name for p in [*DOCUMENTS, *sources] if needle in p.read_text()]


def _expand(text: str) -> str:
    """``a/{b,c}.py`` as ``a/b.py a/c.py``, the way the module map abbreviates sibling modules."""
    brace = re.compile(r"([\w/.]*)\{([^}]*)\}([\w/.]*)")
    while m := brace.search(text):
        text = text[: m.start()] + " ".join(f"{m[1]}{x.strip()}{m[3]}" for x in m[2].split(",")) + text[m.end() :]
    return text


def test_the_module_map_names_every_module_of_the_packages():
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    table = _expand(architecture[architecture.index("## Module map") :])
    named = {word for span in re.findall(r"`([^`]+)`", table) for word in span.split()}
    modules = [
        p.relative_to(ROOT).as_posix()
        for d in PACKAGES
        if d != "tests"
        for p in (ROOT / d).rglob("*.py")
        if p.name != "__init__.py"
    ]
    missing = [m for m in modules if not any(m == n or (n.endswith("/") and m.startswith(n)) for n in named)]
    assert not missing, f"docs/architecture.md's module map leaves out {missing}"
