"""Hostile dataset text is data, never markup: it stays inert in the HTML (checked in Chromium) and the PDF."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markupsafe import escape

from tasks import report, store
from tasks.config import AuditConfig
from tasks.pipeline.batch import audit_batch
from tasks.pipeline.plan import plan_run
from tasks.pipeline.steps import judge_run_task
from tests.conftest import SAMPLES

HOSTILE = SAMPLES / "hostile.jsonl"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
PWNED = "PWNED"


@pytest.fixture(scope="module")
def hostile_report(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The report of an audit of the hostile corpus (ids, texts and labels all attacker-chosen)."""
    folder = tmp_path_factory.mktemp("hostile")
    config = AuditConfig.model_validate(
        {
            "model": {"name_or_path": str(tiny_model_dir)},
            "data": {"dataset": str(HOSTILE), "id_column": "id", "max_length": 64},
            "methods": {"methods": ["attention_last", "rollout", "leave_one_out", "random"], "random_draws": 1},
            "interventions": {"interventions": ["none"]},
            "output": {"db": str(folder / "audit.duckdb"), "out_dir": str(folder)},
        }
    )
    plan = plan_run(config)
    from tasks.model.loading import load_model

    result = audit_batch(
        load_model(config.model), list(plan.examples), config.methods, config.interventions, config.execution
    )
    with store.connect(config.output.db) as connection:
        store.register_run(connection, plan.run_id, config.model_dump(mode="json"), plan.manifest)
        store.write_batch(connection, plan.run_id, result, plan.labels)
        store.finish_run(connection, plan.run_id)
    judge_run_task.fn(config.output.db, plan.run_id, config.methods.methods, config.verdict)
    with store.connect(config.output.db, read_only=True) as connection:
        context = report.build_context(connection, None, generated_at=datetime(2026, 1, 1, tzinfo=UTC))
    html = report.render_html(context)
    path = folder / "report.html"
    path.write_text(html, encoding="utf-8")
    return path, html


def test_the_hostile_corpus_is_large_and_varied():
    rows = [json.loads(line) for line in HOSTILE.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 20
    texts = " ".join(row["text"] for row in rows)
    for attack in ("<script", "onerror=", "javascript:", "</style>", "<iframe", "http-equiv"):
        assert attack in texts


class Elements(HTMLParser):
    """Every element of a page with its attributes (text is ignored: it is data)."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))


TEMPLATE_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "nav", "section", "div", "h1", "h2", "h3", "h4", "p",
    "span", "strong", "em", "code", "pre", "table", "thead", "tbody", "tr", "th", "td", "ol", "ul", "li", "a", "figure",
    "figcaption", "img", "input", "sub", "script",
}  # fmt: skip


def test_no_hostile_markup_survives_as_markup(hostile_report):
    _, html = hostile_report
    elements = Elements(html).elements
    assert {tag for tag, _ in elements} <= TEMPLATE_TAGS
    assert [tag for tag, _ in elements].count("script") == 1  # the report's own filter script
    for tag, attrs in elements:
        assert not any(name.startswith("on") for name in attrs), f"an event handler on <{tag}>"
        assert not any(str(value).lower().startswith("javascript:") for value in attrs.values())
        assert not str(attrs.get("id", "")).startswith("pwned")
        if tag == "img":
            assert str(attrs["src"]).startswith("data:image/svg+xml;base64,")
        if tag == "a":
            assert str(attrs["href"]).startswith("#")
        if tag == "meta":
            assert attrs.get("http-equiv") in (None, "Content-Security-Policy")
    for row in map(json.loads, HOSTILE.read_text(encoding="utf-8").splitlines()):
        assert str(escape(row["text"])) in html, "a hostile text is missing from the example table"


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (scripts/install-system-deps.sh installs it)")
@pytest.mark.parametrize("with_policy", [True, False])
def test_no_script_runs_when_chromium_loads_the_report(hostile_report, tmp_path, with_policy):
    """Loaded in a real browser, no hostile script runs, with and without the page's security policy."""
    path, html = hostile_report
    if not with_policy:  # escaping alone must keep the text inert
        html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
        path = tmp_path / "report-without-policy.html"
        path.write_text(html, encoding="utf-8")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=3000",
        "--dump-dom",
    ]
    dom = subprocess.run([CHROMIUM, *flags, path.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert "<title>Attention faithfulness audit" in dom, "the page did not load"
    title = re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
    assert PWNED not in title, "a hostile script changed the title"
    elements = Elements(dom).elements
    assert {tag for tag, _ in elements} <= TEMPLATE_TAGS | {"tbody"}
    assert not any("data-pwned" in attrs or str(attrs.get("id", "")).startswith("pwned") for _, attrs in elements)


def test_the_pdf_shows_the_hostile_text_as_text(hostile_report, tmp_path):
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    _, html = hostile_report
    pdf = tmp_path / "report.pdf"
    report.render_pdf(html, pdf)  # loads nothing but data: URIs, so the attacker URLs are never fetched
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert re.search(r"<b id=pwned-\d+>", text), "a hostile id is not shown literally in the PDF"
