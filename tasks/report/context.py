"""The report's context: everything it shows, computed from one run of the database.

``build_context`` is the only part of the report that reads the database: one read per result table
of the run (``RunTables.read``: the whole table, or for the tables that grow fastest with the examples
the report's view of it, reduced by DuckDB: ``store.VIEWS``), the run's row, the previous run's
verdicts (for the comparison) and the tokens of the few examples shown as heatmaps. Everything after that is pure
functions over the frames. The generation time is an argument, so a stored run renders the same
report twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

import pandas as pd

from tasks import store
from tasks.config import AuditConfig, OutputSettings
from tasks.errors import AuditError
from tasks.explain.registry import METHODS, spec_of
from tasks.flags import command_line
from tasks.report import aggregates, facts, figures, sentences
from tasks.report.aggregates import AgreementRow, FaithfulnessRow, PlausibilityRow, SanityRow, SegmentShare
from tasks.report.comparison import Comparison, RunVerdicts, compare, previous_run, read_run_verdicts
from tasks.report.heatmaps import HeatmapExample, heatmaps, representative_examples
from tasks.report.interventions import InterventionReport, summarise_interventions
from tasks.report.literature import Outcome, RunNumbers, check_findings
from tasks.report.methodology import AppendixSection, methodology_appendix
from tasks.report.removal import SoftRow, SurvivalRow, soft_rows, survival_rows
from tasks.report.seeds import SeedReport, seed_chart, seed_report, seed_sentences
from tasks.report.verdicts import VerdictReport, summarise_verdicts
from tasks.report.views import view_sentences
from tasks.verdict.resolve import resolve


@dataclass(frozen=True)
class ReportContext:
    """Everything the report shows, computed from one run in the database."""

    run_id: str
    status: str
    generated_at: str
    created_at: str
    updated_at: str
    config: dict[str, Any]
    command: str
    manifest_rows: Sequence[tuple[str, str]]
    dataset_rows: Sequence[tuple[str, str]]
    summary: Sequence[str]
    details: Sequence[str]
    verdict: VerdictReport
    example_table: Sequence[dict[str, Any]]
    examples_total: int
    examples_query: str
    verdict_settings: Sequence[tuple[str, str]]
    plausibility: Sequence[PlausibilityRow]
    failures: Sequence[dict[str, Any]]
    not_applicable: Sequence[dict[str, str]]
    segments: Sequence[SegmentShare]
    comparison: Comparison | None
    sanity: Sequence[SanityRow]
    literature: Sequence[Outcome]
    consistency: Mapping[str, str]
    faithfulness: Sequence[FaithfulnessRow]
    agreement: Sequence[AgreementRow]
    completeness: Mapping[str, str]
    heatmaps: Sequence[HeatmapExample]
    charts: Mapping[str, str]
    methods: Sequence[dict[str, str]]
    metrics: Sequence[dict[str, str]]
    settings: Sequence[tuple[str, str]]
    strength_bands: str
    costs: Sequence[dict[str, Any]]
    cost_bound: Mapping[str, str]
    interventions: InterventionReport
    coverage: Sequence[str]
    methodology: Sequence[AppendixSection]
    classes: Sequence[str] = field(default_factory=tuple)
    removal_survival: Sequence[SurvivalRow] = field(default_factory=tuple)
    soft_faithfulness: Sequence[SoftRow] = field(default_factory=tuple)
    seeds: SeedReport | None = None

    @property
    def example_verdict_titles(self) -> list[str]:
        """The explanations with a verdict column in the example table."""
        return [title for title, _ in self.example_table[0]["verdicts"]] if self.example_table else []

    @property
    def example_table_capped(self) -> bool:
        """Whether the example table shows fewer examples than the run has (``--example-rows``)."""
        return len(self.example_table) < self.examples_total

    @property
    def example_pairs(self) -> bool:
        """Whether the example table has a second-text column (some example is a text pair)."""
        return any(row["text_pair"] is not None for row in self.example_table)


@dataclass(frozen=True)
class RunTables:
    """The result tables of one run that the report reads, each read once.

    ``metrics`` holds the per-example rows without those at each rationale size k, whose means are
    ``metric_curves``; ``interventions`` holds the per-example rows of the masked heads with the largest
    mean change only, every head's means being ``head_masking``; ``head_agreement`` holds each head's
    mean (``store.VIEWS``).
    """

    examples: pd.DataFrame
    metrics: pd.DataFrame
    metric_curves: pd.DataFrame
    costs: pd.DataFrame
    interventions: pd.DataFrame
    head_masking: pd.DataFrame
    head_agreement: pd.DataFrame
    failures: pd.DataFrame
    not_applicable: pd.DataFrame
    sanity_checks: pd.DataFrame
    agreement_matrix: pd.DataFrame
    slice_verdicts: pd.DataFrame
    example_verdicts: pd.DataFrame
    seed_distances: pd.DataFrame
    seed_agreement: pd.DataFrame

    @classmethod
    def read(cls, connection: Any, run_id: str) -> RunTables:
        """One read per field, in field order: its ``store.VIEWS`` entry where it has one, else the whole table."""
        return cls(
            **{
                table.name: (store.read_view if table.name in store.VIEWS else store.read_table)(
                    connection, table.name, run_id
                )
                for table in fields(cls)
            }
        )


@dataclass(frozen=True)
class Analysis:
    """The numbers of one run before they become words and charts."""

    methods: Sequence[str]
    faithfulness: Sequence[FaithfulnessRow]
    agreement: Sequence[AgreementRow]
    completeness: Mapping[str, str]
    charts: dict[str, str]
    interventions: InterventionReport
    plausibility: Sequence[PlausibilityRow]
    failures: Sequence[dict[str, Any]]
    not_applicable: Sequence[dict[str, Any]]
    sanity: Sequence[SanityRow]
    consistency: Mapping[str, str]
    verdict: VerdictReport
    seeds: SeedReport | None = None


def build_context(
    connection: Any,
    run_id: str | None,
    *,
    generated_at: datetime,
    seed: int = 0,
    example_rows: int = OutputSettings().example_rows,
) -> ReportContext:
    """Read one run from the database and compute everything the report shows.

    Args:
        connection: An open DuckDB connection (read-only is enough).
        run_id: The run; None for the most recently updated one.
        generated_at: The time printed as the report's generation time.
        seed: The seed of every bootstrap interval and of the example table's sample.
        example_rows: Rows of the example table at most (``OutputSettings.example_rows``).

    Raises:
        AuditError: The run does not exist or has no stored examples.
    """
    run = store.read_run(connection, run_id)
    run_id = str(run["run_id"])
    tables = RunTables.read(connection, run_id)
    if tables.examples.empty:
        raise AuditError(f"the run {run_id} has no stored examples yet", "run (or resume) the audit first")
    config = AuditConfig.model_validate(run["config"])
    tables = replace(tables, costs=facts.wall_shares(tables.costs, facts.batches_at_once(config, run["manifest"])))
    analysis = analyse(tables, config, run["manifest"], seed)
    earlier = previous_run(connection, run_id)
    comparison = (
        compare(
            read_run_verdicts(connection, earlier),
            RunVerdicts(run, tables.example_verdicts, tables.slice_verdicts),
            seed=seed,
        )
        if earlier
        else None
    )
    chosen = representative_examples(tables.examples, tables.metrics)
    shown: list[HeatmapExample] = []
    if chosen:
        tokens, scores = store.read_example_tokens(connection, run_id, [example_id for _, example_id in chosen])
        shown = heatmaps(chosen, tables.examples, tokens, scores, analysis.methods)
    return assemble(
        run,
        config,
        tables,
        analysis,
        comparison,
        shown,
        generated_at=generated_at,
        seed=seed,
        example_rows=example_rows,
    )


def run_methods(config: AuditConfig, manifest: Mapping[str, Any]) -> list[str]:
    """The run's methods: the configured ones the registry knows, then the imported explanations."""
    imported = manifest.get("explanations", {}).get("methods", [])
    return [*(name for name in config.methods.methods if name in METHODS), *imported]


def analyse(tables: RunTables, config: AuditConfig, manifest: Mapping[str, Any], seed: int) -> Analysis:
    """Every dataset-level row and chart of one run (charts in the order the report has always drawn them)."""
    methods = run_methods(config, manifest)
    families = {name: spec_of(name).family.value for name in methods}
    titles = {name: spec_of(name).title for name in methods}
    faithfulness = aggregates.faithfulness_rows(tables.metrics, methods, seed)
    agreement = aggregates.agreement_rows(tables.metrics, tables.examples, methods, seed)
    charts = figures.metric_charts(tables.metrics, tables.metric_curves, faithfulness, agreement, families, titles)
    interventions = summarise_interventions(
        tables.interventions,
        tables.head_agreement,
        tables.examples,
        int(manifest.get("model", {}).get("layers", 0)),
        seed,
        options=config.verdict,
        head_means=tables.head_masking,
    )
    plausibility = aggregates.plausibility_rows(tables.metrics, faithfulness, seed)
    if plausibility:
        charts["plausibility"] = figures.plausibility_chart(plausibility, faithfulness)
    sanity = aggregates.sanity_rows(tables.sanity_checks, config, seed)
    if sanity:
        charts["sanity"] = figures.sanity_chart(tables.sanity_checks, config)
    seeds = seed_report(
        tables.seed_distances,
        tables.seed_agreement,
        tables.interventions,
        tables.metrics,
        config.verdict.references,
        seed,
    )
    if seeds is not None:
        charts["seeds"] = seed_chart(tables.seed_distances, tables.interventions)
    if not tables.agreement_matrix.empty:
        charts["matrix"] = figures.matrix_chart(tables.agreement_matrix, methods)
    verdict = summarise_verdicts(
        tables.slice_verdicts,
        {row.method: row.sufficiency.mean for row in faithfulness},
        config.verdict,
    )
    return Analysis(
        methods=methods,
        faithfulness=faithfulness,
        agreement=agreement,
        completeness=aggregates.completeness(tables.metrics, config.methods.ig_steps, config.methods.ig_rule),
        charts=charts,
        interventions=interventions,
        plausibility=plausibility,
        failures=aggregates.failures(tables.failures),
        not_applicable=aggregates.not_applicable(tables.not_applicable),
        sanity=sanity,
        consistency=aggregates.consistency(tables.agreement_matrix, config),
        verdict=verdict,
        seeds=seeds,
    )


def summary_sentences(
    tables: RunTables, config: AuditConfig, analysis: Analysis, comparison: Comparison | None
) -> list[str]:
    """The executive summary: verdict and findings, what was skipped, sanity check, seed baseline, what moved."""
    return [
        *sentences.summary(
            tables.examples,
            analysis.verdict,
            analysis.interventions,
            analysis.completeness,
            analysis.plausibility,
            analysis.failures,
        ),
        *view_sentences(analysis.verdict, tables.costs),
        *sentences.not_applicable_sentences(analysis.not_applicable),
        *sentences.sanity_sentences(analysis.sanity, config),
        *seed_sentences(analysis.seeds),
        *([" ".join(comparison.sentences()[:4]) + "."] if comparison else []),
    ]


def assemble(
    run: Mapping[str, Any],
    config: AuditConfig,
    tables: RunTables,
    analysis: Analysis,
    comparison: Comparison | None,
    shown: Sequence[HeatmapExample],
    *,
    generated_at: datetime,
    seed: int,
    example_rows: int,
) -> ReportContext:
    """The context from what was read and computed (a declarative field-by-field table)."""
    manifest, methods, metrics = run["manifest"], analysis.methods, tables.metrics
    return ReportContext(
        run_id=run["run_id"],
        status=run["status"],
        generated_at=generated_at.strftime("%Y-%m-%d %H:%M UTC"),
        created_at=str(run["created_at"])[:19],
        updated_at=str(run["updated_at"])[:19],
        config=run["config"],
        command=command_line(config, resolve(AuditConfig())),
        manifest_rows=facts.manifest_rows(manifest),
        dataset_rows=facts.dataset_rows(tables.examples),
        summary=summary_sentences(tables, config, analysis, comparison),
        details=sentences.method_details(analysis.faithfulness, analysis.agreement),
        verdict=analysis.verdict,
        example_table=facts.example_table(tables.examples, tables.example_verdicts, methods, example_rows, seed),
        examples_total=len(tables.examples),
        examples_query=store.example_table_query(run["run_id"]),
        verdict_settings=facts.verdict_settings(config),
        plausibility=analysis.plausibility,
        failures=analysis.failures,
        not_applicable=analysis.not_applicable,
        segments=aggregates.segment_shares(metrics, methods, seed),
        comparison=comparison,
        sanity=analysis.sanity,
        literature=check_findings(RunNumbers(metrics, tables.interventions, tuple(methods), tables.head_masking)),
        consistency=analysis.consistency,
        faithfulness=analysis.faithfulness,
        agreement=analysis.agreement,
        completeness=analysis.completeness,
        heatmaps=shown,
        charts=analysis.charts,
        methods=facts.method_definitions(methods),
        metrics=facts.metric_definitions(),
        settings=facts.settings(config, manifest),
        strength_bands=facts.strength_bands(),
        costs=facts.costs(tables.costs),
        cost_bound=facts.cost_bound(tables.costs, tables.examples, tables.metrics, manifest, config),
        interventions=analysis.interventions,
        coverage=sentences.coverage(metrics, tables.examples, methods, config),
        methodology=methodology_appendix(),
        classes=sorted(tables.examples["predicted_name"].unique()),
        removal_survival=survival_rows(metrics, methods, config.verdict, seed),
        soft_faithfulness=soft_rows(metrics, methods, seed),
        seeds=analysis.seeds,
    )
