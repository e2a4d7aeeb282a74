"""The methodology has one home, docs/methodology.md, which the report's appendix renders.

Specification:

- every registered method, metric and intervention has its own section, whose anchor is its id;
- every source a registry prints to readers names a paper (or this audit), never a file, and every paper
  it names is in the document's References;
- nothing in the code, templates or documentation points at files that are not in the repository;
- the appendix renders every top-level section, escapes raw HTML, gives each registered id its anchor,
  and says clearly when the document is missing;
- the appendix module is a leaf: it imports nothing of the project but ``tasks.errors``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tasks.errors import AuditError
from tasks.evaluate.metrics import METRICS
from tasks.explain.registry import METHODS
from tasks.interventions.registry import INTERVENTIONS
from tasks.report.methodology import METHODOLOGY, AppendixSection, anchor, methodology_appendix
from tasks.report.sections import SECTIONS
from tests.conftest import ROOT

DOCUMENT = ROOT / "docs" / "methodology.md"
REGISTERED = {
    "method": {name: spec.citation for name, spec in METHODS.items()},
    "metric": {name: spec.citation for name, spec in METRICS.items()},
    "intervention": {name: spec.citation for name, spec in INTERVENTIONS.items()},
}
ALL_IDS = sorted({name for table in REGISTERED.values() for name in table})
CITATIONS = sorted({(kind, name, citation) for kind, table in REGISTERED.items() for name, citation in table.items()})


def document_text() -> str:
    return DOCUMENT.read_text(encoding="utf-8")


def item_headings(text: str) -> list[str]:
    """The ids of the document's per-item headings: ``### `id` ``."""
    return re.findall(r"^### `([a-z0-9_]+)`\s*$", text, flags=re.MULTILINE)


def all_anchors(text: str) -> list[str]:
    return [anchor(title) for title in re.findall(r"^#{2,6} (.+?)\s*$", text, flags=re.MULTILINE)]


def appendix_ids(sections: tuple[AppendixSection, ...]) -> list[str]:
    return [section.id for section in sections] + [
        found for section in sections for found in re.findall(r'id="([^"]+)"', section.html)
    ]


# --- the document -------------------------------------------------------------------------------


def test_the_default_path_is_the_repository_document() -> None:
    assert METHODOLOGY == DOCUMENT
    assert DOCUMENT.is_file()


@pytest.mark.parametrize("kind", sorted(REGISTERED))
def test_every_registered_id_has_its_own_section(kind: str) -> None:
    headings = item_headings(document_text())
    missing = [name for name in REGISTERED[kind] if name not in headings]
    assert not missing, f"{kind}s without a '### `id`' section in docs/methodology.md: {missing}"


def test_headings_are_unique_so_every_anchor_points_at_one_place() -> None:
    anchors = all_anchors(document_text())
    duplicates = sorted({a for a in anchors if anchors.count(a) > 1})
    assert not duplicates


def test_every_link_inside_the_document_reaches_a_heading() -> None:
    text = document_text()
    targets = set(all_anchors(text))
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert links, "the document links its sections to each other"
    assert sorted(set(links) - targets) == []


def test_the_document_links_nothing_outside_the_repository_but_papers() -> None:
    text = document_text()
    assert not re.search(r"\]\((?!#)[^)]*\)", text), "links are to the document's own sections only"
    for name in ("METHODS.md", "STYLE.md", "../shared"):
        assert name not in text


@pytest.mark.parametrize(("kind", "name", "citation"), CITATIONS)
def test_every_printed_source_names_a_paper_or_this_audit_never_a_file(kind: str, name: str, citation: str) -> None:
    assert citation.strip(), f"{kind} {name} has no source"
    assert ".md" not in citation and "/" not in citation and ".py" not in citation, f"{kind} {name}: {citation!r}"
    assert re.search(r"\b(19|20)\d\d\b", citation) or "this audit" in citation, f"{kind} {name}: {citation!r}"


def test_completeness_holds_cites_the_paper_and_owns_its_tolerance() -> None:
    citation = METRICS["completeness_holds"].citation
    assert "Sundararajan et al. 2017" in citation
    assert "this audit" in citation


@pytest.mark.parametrize(("kind", "name", "citation"), CITATIONS)
def test_every_cited_paper_is_in_the_references(kind: str, name: str, citation: str) -> None:
    references = document_text().split("\n## References\n", 1)[1]
    entries = [entry for entry in re.split(r"\n- ", references) if entry.strip()]
    for surname, year in re.findall(r"\b([A-Z][A-Za-z]+)(?: et al\.| & [A-Z][a-z]+)? (\d{4})", citation):
        assert any(entry.lstrip("- ").startswith(surname) and f"({year})" in entry for entry in entries), (
            f"{kind} {name} cites {surname} {year}, which is not in the References"
        )


def test_nothing_points_at_files_outside_the_repository() -> None:
    places = [ROOT / "README.md"] + [
        path
        for folder in ("tasks", "flows", "templates", "docs")
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and path.suffix in (".py", ".md", ".j2", ".css", ".js", ".json", ".html")
    ]
    offending = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in places
        for name in ("METHODS.md", "STYLE.md", "../shared")
        if name in path.read_text(encoding="utf-8")
    ]
    assert offending == []


# --- the appendix -------------------------------------------------------------------------------


def test_the_appendix_renders_every_top_level_section_in_order() -> None:
    titles = re.findall(r"^## (.+?)\s*$", document_text(), flags=re.MULTILINE)
    sections = methodology_appendix()
    assert [section.title for section in sections] == titles
    assert [section.id for section in sections] == [anchor(title) for title in titles]
    assert all(section.html.strip() for section in sections)
    assert all("<h2" not in section.html for section in sections), "the report titles each section itself"


def test_the_appendix_gives_every_registered_id_its_anchor() -> None:
    ids = appendix_ids(methodology_appendix())
    assert sorted(set(ALL_IDS) - set(ids)) == []
    assert len(ids) == len(set(ids))


def test_appendix_anchors_do_not_collide_with_the_report_s_own_sections() -> None:
    templates = "".join(path.read_text(encoding="utf-8") for path in (ROOT / "templates").rglob("*.j2"))
    report_ids = set(re.findall(r'id="([A-Za-z0-9_-]+)"', templates)) | {section.id for section in SECTIONS}
    assert sorted(set(appendix_ids(methodology_appendix())) & report_ids) == []


def test_the_appendix_renders_tables_and_formulas() -> None:
    html = "".join(section.html for section in methodology_appendix())
    assert "<table>" in html
    assert "<code>R = Â[L] · Â[L−1] ··· Â[1]</code>" in html


def test_raw_html_in_the_document_comes_out_escaped(tmp_path: Path) -> None:
    path = tmp_path / "methodology.md"
    path.write_text(
        "# Title\n\nignored preamble\n\n## First\n\n<script>alert(1)</script>\n\ntext with <b>tags</b>\n\n"
        "### `some_id`\n\n[link](javascript:alert(1))\n\n## Second part\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
        encoding="utf-8",
    )
    first, second = methodology_appendix(path)
    assert (first.id, first.title, second.id, second.title) == ("first", "First", "second-part", "Second part")
    assert "<script" not in first.html and "&lt;script&gt;alert(1)&lt;/script&gt;" in first.html
    assert "<b>" not in first.html and "&lt;b&gt;tags&lt;/b&gt;" in first.html
    assert 'href="javascript' not in first.html
    assert '<h4 id="some_id"><code>some_id</code></h4>' in first.html
    assert "ignored preamble" not in first.html + second.html
    assert "<td>1</td>" in second.html


def test_a_missing_document_is_a_clear_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "docs" / "methodology.md"
    with pytest.raises(AuditError) as raised:
        methodology_appendix(missing)
    assert str(missing) in raised.value.problem
    assert "docs/methodology.md" in raised.value.fix


def test_the_appendix_module_is_a_leaf() -> None:
    source = (ROOT / "tasks" / "report" / "methodology.py").read_text(encoding="utf-8")
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    project = {name for name in imported if name.split(".")[0] in ("tasks", "flows")}
    assert project <= {"tasks.errors"}
