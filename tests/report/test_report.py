"""The report: every number comes from the database, the HTML is deterministic, self-contained and
escapes the dataset's text, and the PDF carries the same content."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tasks import report, store
from tasks.config import AuditConfig, DataSpec, InterventionOptions, MethodOptions, ModelSpec, stable_hash
from tasks.data.corpora import Corpus, content_fingerprint
from tasks.data.encoding import encode_corpus
from tasks.explain.registry import METHODS
from tasks.model.loading import load_model
from tasks.pipeline.batch import audit_batch
from tasks.pipeline.plan import run_manifest
from tasks.pipeline.steps import judge_run_task
from tasks.records import MethodFamily
from tasks.report.aggregates import PlausibilityRow, SegmentShare
from tasks.report.context import RunTables
from tasks.report.render import TEMPLATES
from tasks.report.sections import SECTIONS as SECTION_LIST
from tasks.verdict.resolve import resolve
from tests.conftest import TEXTS

HOSTILE = "<script>window.pwned=1</script><img src=x onerror=alert(1)>"
HOSTILE_ID = f"row-6 {HOSTILE}"
"""The hostile example's id: ids come from the user's id column and the report shows them whole."""
ESCAPED = "&lt;script&gt;window.pwned=1&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
GENERATED_AT = datetime(2024, 5, 17, 9, 30, tzinfo=UTC)
METHOD_IDS = ("attention_last", "rollout", "attention_norm", "integrated_gradients", "leave_one_out", "random")
SECTIONS = (
    "summary",
    "verdict",
    "faithfulness",
    "agreement",
    "interventions",
    "sanity",
    "literature",
    "examples",
    "completeness",
    "manifest",
    "methodology",
    "cost",
    "reproduce",
)


@dataclasses.dataclass(frozen=True)
class StoredRun:
    """A run of the tiny model written to a database the way the audit flow writes it."""

    db: Path
    run_id: str
    config: AuditConfig
    misclassified: str


@pytest.fixture(scope="module")
def stored_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> StoredRun:
    """Six examples (one hostile), gold labels that the model gets right except on the hostile one."""
    bundle = load_model(ModelSpec(name_or_path=str(tiny_model_dir)))
    texts = [*TEXTS, f"{HOSTILE} what a film"]
    ids = [str(i) for i in range(len(TEXTS))] + [HOSTILE_ID]
    frame = pd.DataFrame({"example_id": ids, "text": texts, "label": None, "metadata": [{}] * len(texts)})
    config = resolve(
        AuditConfig(
            model=ModelSpec(name_or_path=str(tiny_model_dir)),
            data=DataSpec(dataset="reviews.csv"),
            methods=MethodOptions(methods=METHOD_IDS, ig_steps=(4, 8), ig_rule="gausslegendre", random_draws=2),
            interventions=InterventionOptions(permutation_draws=20, erasure_draws=4, adversarial_steps=20),
        )
    )
    examples = encode_corpus(frame, bundle.tokenizer, bundle.labels, config.data.max_length)
    result = audit_batch(bundle, examples, config.methods, config.interventions, config.execution)
    predicted = {p.example_id: p.predicted for p in result.predictions}
    n_classes = len(bundle.labels)
    gold = {i: (predicted[i] + 1) % n_classes if i == HOSTILE_ID else predicted[i] for i in ids}
    result = dataclasses.replace(
        result, examples=tuple(dataclasses.replace(e, label=gold[e.example_id]) for e in result.examples)
    )
    frame["label"] = [bundle.labels[gold[i]] for i in ids]
    corpus = Corpus(
        name="reviews.csv",
        split="test",
        frame=frame,
        labels=(),
        fingerprint=content_fingerprint(frame),
        rows_in_split=len(frame),
        source={"kind": "local", "path": "reviews.csv"},
    )
    run_id = stable_hash({"identity": config.identity(), "test": "report"})
    db = tmp_path_factory.mktemp("report") / "audit.duckdb"
    with store.connect(db) as connection:
        store.register_run(connection, run_id, config.model_dump(mode="json"), run_manifest(config, bundle, corpus))
        store.write_batch(connection, run_id, result, bundle.labels)
        store.finish_run(connection, run_id)
    judge_run_task.fn(db, run_id, config.methods.methods, config.verdict)
    return StoredRun(db=db, run_id=run_id, config=config, misclassified=HOSTILE_ID)


@pytest.fixture(scope="module")
def connection(stored_run: StoredRun) -> Iterator[duckdb.DuckDBPyConnection]:
    with store.connect(stored_run.db, read_only=True) as opened:
        yield opened


@pytest.fixture(scope="module")
def context(connection: duckdb.DuckDBPyConnection) -> report.ReportContext:
    return report.build_context(connection, None, generated_at=GENERATED_AT)


@pytest.fixture(scope="module")
def html(context: report.ReportContext) -> str:
    return report.render_html(context)


def section(html: str, name: str) -> str:
    match = re.search(rf'<section id="{name}">(.*?)</section>', html, flags=re.S)
    assert match is not None, f"no section {name}"
    return match.group(1)


def three_places(value: float) -> str:
    """A mean as the summary sentences write it."""
    return f"{value:.3f}"


def table_number(value: float) -> str:
    """A mean as the tables write it: a value that rounds to zero has no minus sign."""
    text = three_places(value)
    return "0.000" if text == "-0.000" else text


def mean_aopc_comprehensiveness(connection: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, float]:
    """Per method, the mean over examples of the per-example AOPC (random draws averaged first)."""
    rows = connection.execute(
        """
        SELECT method, avg(value) FROM (
            SELECT method, example_id, avg(value) AS value FROM metrics
            WHERE run_id = ? AND metric = 'aopc_comprehensiveness'
            GROUP BY method, example_id
        ) GROUP BY method
        """,
        [run_id],
    ).fetchall()
    return dict(rows)


# --- what the context says ------------------------------------------------------------------


def test_the_report_of_no_run_id_is_the_latest_run(context: report.ReportContext, stored_run: StoredRun) -> None:
    assert context.run_id == stored_run.run_id
    assert context.generated_at == "2024-05-17 09:30 UTC"


def test_every_configured_method_has_a_faithfulness_row(context: report.ReportContext, stored_run: StoredRun) -> None:
    assert [row.method for row in context.faithfulness] == list(stored_run.config.methods.methods)


def test_the_random_baseline_is_the_baseline_and_the_others_are_judged_against_it(
    context: report.ReportContext,
) -> None:
    verdicts = {row.method: row.beats_random for row in context.faithfulness}

    assert verdicts.pop("random") == "baseline"
    assert set(verdicts.values()) <= {"yes", "partly", "no"}


def test_the_detailed_findings_quote_the_aopc_means_in_the_database(
    context: report.ReportContext, connection: duckdb.DuckDBPyConnection, stored_run: StoredRun
) -> None:
    means = mean_aopc_comprehensiveness(connection, stored_run.run_id)
    assert set(means) == set(METHOD_IDS)
    details = " ".join(context.details)

    for method in METHOD_IDS:
        if METHODS[method].family != MethodFamily.ATTENTION:
            continue
        sentence = next(s for s in context.details if s.startswith(METHODS[method].title))
        assert f"lowers the predicted-class probability by {three_places(means[method])} [" in sentence
        assert f"(AOPC comprehensiveness; random: {three_places(means['random'])}," in sentence
    best = max((m for m in METHOD_IDS if m != "random"), key=means.__getitem__)
    assert f"the most faithful explanation is {METHODS[best].title.lower()} ({three_places(means[best])})" in details


def test_the_faithfulness_table_shows_the_aopc_means_in_the_database(
    html: str, connection: duckdb.DuckDBPyConnection, stored_run: StoredRun
) -> None:
    means = mean_aopc_comprehensiveness(connection, stored_run.run_id)
    table = section(html, "faithfulness")
    rows = re.findall(r'<tr class="family-\w+">\s*<td>(.*?)<span.*?<span class="mean">(.*?)</span>', table, re.S)

    assert dict(rows) == {METHODS[m].title: table_number(means[m]) for m in METHOD_IDS}


def test_the_accuracy_sentence_counts_the_one_misclassification(context: report.ReportContext) -> None:
    assert context.summary[0].startswith("The model was audited on 6 examples; it classifies 83.3 % of the 6 labelled")


def test_the_most_confident_misclassification_is_shown(context: report.ReportContext, stored_run: StoredRun) -> None:
    reasons = [example.reason for example in context.heatmaps if example.example_id == stored_run.misclassified]

    assert any(reason.startswith("Most confident misclassification (p = ") for reason in reasons)


def test_integrated_gradients_completeness_is_reported(context: report.ReportContext, html: str) -> None:
    assert context.completeness["examples"] == "6"
    assert any(sentence.startswith("Integrated gradients satisfied completeness") for sentence in context.summary)
    assert re.fullmatch(r"4 steps: \d \(.+ %\); 8 steps: \d \(.+ %\)", context.completeness["steps"])
    shown = section(html, "completeness")
    assert "Steps used" in shown and context.completeness["steps"] in shown


# --- what the HTML is -----------------------------------------------------------------------


def test_the_html_has_every_section(html: str) -> None:
    assert re.findall(r'<section id="([\w-]+)">', html) == list(SECTIONS)
    assert all(f'<a href="#{name}">' in html for name in SECTIONS), "the contents do not link every section"


def test_rendering_the_same_run_twice_gives_the_same_bytes(connection: duckdb.DuckDBPyConnection, html: str) -> None:
    again = report.render_html(report.build_context(connection, None, generated_at=GENERATED_AT))

    assert again == html


def test_the_only_script_is_the_reports_own_filter_allowed_by_its_hash(html: str) -> None:
    own = (TEMPLATES / "report.js").read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S | re.I)
    assert scripts == [own]
    digest = base64.b64encode(hashlib.sha256(own.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in html and "default-src 'none'" in html


def test_the_hostile_text_appears_only_escaped(html: str) -> None:
    assert html.lower().count("<script") == 1  # the report's own filter script, checked above
    assert "<img src=x" not in html
    assert "onerror=" not in re.sub(r">[^<]*<", "><", html), "an onerror attribute is inside a tag"
    assert f"<code>row-6 {ESCAPED}</code>" in section(html, "examples")
    heatmap_tokens = re.findall(r"<span style=[^>]*>([^<]*)</span>", section(html, "examples"))
    assert "&lt;" in heatmap_tokens and "script" in heatmap_tokens


def test_the_html_loads_nothing_from_outside(html: str) -> None:
    sources = re.findall(r'\bsrc="([^"]*)"', html)
    links = re.findall(r'\bhref="([^"]*)"', html)

    assert sources, "the report has no charts"
    assert len(re.findall(r"<img\b", html)) == len(sources)
    assert all(source.startswith("data:image/svg+xml;base64,") for source in sources)
    assert all(link.startswith("#") for link in links)
    assert not re.search(r"url\(\s*['\"]?(?!data:)", html), "the CSS loads a resource"
    assert "@import" not in html
    assert not re.search(r"<(link|iframe|object|embed)\b", html, re.I)
    assert not re.search(r"<script\b[^>]*\bsrc=", html, re.I)


def test_the_literature_section_says_its_cutoffs_are_this_audits_own(html: str) -> None:
    assert "The cutoffs that turn a paper's words into a test" in section(html, "literature")
    assert "are this audit's own, not the papers'" in section(html, "literature")


def test_the_html_names_the_run_and_its_command(html: str, stored_run: StoredRun) -> None:
    assert f"<code>{stored_run.run_id}</code>" in html
    assert "attention-audit run --model" in section(html, "reproduce")


# --- the PDF ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) is not installed")
def test_the_pdf_carries_the_run_id_and_the_summary(html: str, stored_run: StoredRun, tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"

    report.render_pdf(html, path)

    assert path.read_bytes().startswith(b"%PDF-")
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
    assert stored_run.run_id in text
    assert "Executive summary" in text


def test_every_intervention_of_the_run_has_its_subsection_and_finding(html: str, stored_run: StoredRun) -> None:
    for name in stored_run.config.interventions.interventions:
        assert f'id="intervention-{name}"' in html
    assert "Head importance" not in html or "data:image/svg+xml;base64," in html


def test_the_summary_reports_intervention_findings_from_the_database(stored_run: StoredRun) -> None:
    with store.connect(stored_run.db, read_only=True) as connection:
        context = report.build_context(connection, None, generated_at=GENERATED_AT)
        everything = connection.execute(
            """SELECT avg(value) FROM interventions
               WHERE intervention = 'uniform' AND layer IS NULL AND statistic = 'flip'"""
        ).fetchone()[0]
    sentence = next(s for s in context.summary if s.startswith("Uniform attention in every layer"))
    assert f"flips {100 * everything:.1f} % of decisions" in sentence


def test_the_verdict_in_the_report_is_the_one_stored(context: report.ReportContext, stored_run: StoredRun) -> None:
    with store.connect(stored_run.db, read_only=True) as connection:
        stored = connection.execute(
            "SELECT method, verdict FROM slice_verdicts WHERE run_id = ? AND slice = 'overall'", [stored_run.run_id]
        ).fetchall()
    assert {(row.method, row.verdict) for row in context.verdict.overall} == set(stored)
    assert any(sentence.startswith("Verdict over all examples") for sentence in context.summary)
    assert any(sentence.startswith("Recommendation:") for sentence in context.summary)


def test_the_json_summary_carries_the_verdicts_and_headline_metrics(context: report.ReportContext) -> None:
    document = json.loads(json.dumps(report.summary_document(context)))
    assert document["run_id"] == context.run_id
    overall = [v for v in document["verdicts"] if v["slice"] == "overall"]
    assert {v["method"] for v in overall} == {m for m in METHOD_IDS if METHODS[m].family == MethodFamily.ATTENTION}
    assert all(v["verdict"] in {"faithful", "not faithful", "inconclusive"} for v in document["verdicts"])
    assert {row["method"] for row in document["faithfulness"]} == set(METHOD_IDS)
    assert document["recommended_explanation"] == context.verdict.recommended


def test_every_inconclusive_slice_says_how_many_examples_would_decide_it(
    context: report.ReportContext, html: str
) -> None:
    rows = [row for _, _, _, members in context.verdict.slices for row in members]
    inconclusive = [row for row in rows if row.verdict == "inconclusive"]
    assert inconclusive, "the six-example run has no inconclusive slice"
    assert all(row.to_decide is not None for row in inconclusive)
    assert all(row.to_decide is None for row in rows if row.verdict != "inconclusive")
    table = section(html, "verdict")
    assert all(row.to_decide.short in table for row in inconclusive)
    document = json.loads(json.dumps(report.summary_document(context)))
    stored = {(v["method"], v["slice"], v["slice_value"]): v["examples_to_decide"] for v in document["verdicts"]}
    for row in inconclusive:
        decided = stored[(row.method, row.slice, row.slice_value)]
        assert decided["examples"] == row.to_decide.examples and decided["verdict"] == row.to_decide.verdict
        assert decided["examples"] is None or decided["examples"] > row.n


# --- one list of sections, each table read once -----------------------------------------------


def contents_and_body(html: str) -> tuple[list[str], list[str]]:
    """The ids the contents link to, and the ids of the rendered sections."""
    nav = re.search(r'<nav class="toc">(.*?)</nav>', html, re.S)
    assert nav is not None
    links = re.findall(r'<a href="#([\w-]+)">', nav.group(1))
    return links, re.findall(r'<section id="([\w-]+)">', html)


def test_every_section_has_its_partial_and_every_partial_its_section() -> None:
    partials = {path.name.removesuffix(".html.j2") for path in (TEMPLATES / "sections").glob("*.html.j2")}

    assert [section.id for section in SECTION_LIST] == list(dict.fromkeys(s.id for s in SECTION_LIST))
    assert {section.id for section in SECTION_LIST} == partials


@pytest.mark.parametrize("shown", [(), ("failures", "not-applicable"), ("over-time", "segments", "plausibility")])
def test_the_contents_and_the_body_come_from_the_same_list(
    context: report.ReportContext, shown: tuple[str, ...]
) -> None:
    """Hidden sections are missing from both; every link has its target and every section its link."""
    fake = dataclasses.replace(
        context,
        failures=[{"example_id": "x", "error": "RuntimeError: boom", "attempts": 3}] if "failures" in shown else [],
        not_applicable=[{"kind": "intervention", "name": "uniform", "reason": "no"}]
        if "not-applicable" in shown
        else [],
        segments=[SegmentShare("Random", context.faithfulness[0].comprehensiveness)] if "segments" in shown else [],
        plausibility=[
            PlausibilityRow(
                row.method,
                row.title,
                row.family,
                row.sufficiency,
                row.sufficiency,
                row.sufficiency,
                plausible=True,
                faithful=False,
            )
            for row in context.faithfulness
        ]
        if "plausibility" in shown
        else [],  # fmt: skip
    )
    html = report.render_html(fake)
    links, sections = contents_and_body(html)
    expected = [s.id for s in SECTION_LIST if s.shown(fake)]

    assert sections == expected
    assert [link for link in links if link in sections] == sections
    for link in links:
        assert f'id="{link}"' in html, f"the contents link to #{link}, which is not in the report"
    assert ("failures" in sections) == ("failures" in shown)
    assert ("not-applicable" in sections) == ("not-applicable" in shown)
    assert ("segments" in sections) == ("segments" in shown)
    assert ("plausibility" in sections) == ("plausibility" in shown)
    assert {"summary", "verdict", "methodology", "reproduce"} <= set(sections)


def test_build_context_reads_each_table_of_the_run_once(
    connection: duckdb.DuckDBPyConnection, stored_run: StoredRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: Counter[tuple[str, str]] = Counter()
    read_table, read_view = store.read_table, store.read_view

    def counting(read: Callable[..., pd.DataFrame]) -> Callable[..., pd.DataFrame]:
        def counted(connection: duckdb.DuckDBPyConnection, table: str, run_id: str) -> pd.DataFrame:
            reads[(table, run_id)] += 1
            return read(connection, table, run_id)

        return counted

    monkeypatch.setattr(store, "read_table", counting(read_table))
    monkeypatch.setattr(store, "read_view", counting(read_view))
    report.build_context(connection, None, generated_at=GENERATED_AT)

    assert reads, "build_context read no table through store.read_table or store.read_view"
    assert {run_id for _, run_id in reads} == {stored_run.run_id}
    assert all(count == 1 for count in reads.values()), reads
    assert {table for table, _ in reads} == {table.name for table in dataclasses.fields(RunTables)}


def test_the_summary_ranks_the_attention_views_with_their_evidence_and_cost(
    context: report.ReportContext, connection: duckdb.DuckDBPyConnection, stored_run: StoredRun
) -> None:
    sentence = next(s for s in context.summary if s.startswith("Attention and attention-derived views"))
    overall = connection.execute(
        "SELECT method, verdict, comprehensiveness_mean FROM slice_verdicts WHERE run_id = ? AND slice = 'overall' "
        "AND method IN ('attention_last', 'rollout', 'attention_norm')",
        [stored_run.run_id],
    ).fetchall()
    rank = {"faithful": 0, "inconclusive": 1, "not faithful": 2}
    expected = [m for m, _, _ in sorted(overall, key=lambda r: (rank[r[1]], -r[2]))]
    titles = {
        "attention_last": "last-layer attention",
        "rollout": "attention rollout",
        "attention_norm": "norm-based attention",
    }
    positions = [sentence.index(f". {titles[m]} (") for m in expected]
    assert positions == sorted(positions)
    for method, verdict, gain in overall:
        seconds, forward, backward, examples = connection.execute(
            "SELECT sum(seconds), sum(forward_rows), sum(backward_rows), sum(examples) FROM costs "
            "WHERE run_id = ? AND stage = ?",
            [stored_run.run_id, method],
        ).fetchone()
        words = (
            f"{titles[method]} ("
            + ("decomposes what attention mixes" if method == "attention_norm" else "reads the weights")
            + f"): {verdict}, {gain:+.3f}"
        )
        assert words in sentence
        assert (
            f"{seconds / examples:.3f} s, {forward / examples:g} extra forward and {backward / examples:g} backward"
            in sentence
        )


def test_a_decomposition_is_judged_without_the_interventions_on_the_weights(
    connection: duckdb.DuckDBPyConnection, stored_run: StoredRun
) -> None:
    reasons = dict(
        connection.execute(
            "SELECT method, reason FROM slice_verdicts WHERE run_id = ? AND slice = 'overall'", [stored_run.run_id]
        ).fetchall()
    )
    assert "do not decide" in reasons["attention_norm"]
    assert "do not decide" not in reasons["attention_last"] and "do not decide" not in reasons["rollout"]
