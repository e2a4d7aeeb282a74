"""The report: a typed context built from the DuckDB file, rendered to HTML (Jinja2) and PDF (WeasyPrint).

Every number in the report comes from the database through ``build_context``; the templates only
format. The generation time is an argument, so a stored run renders the same report twice.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks import store
from tasks.config import AuditConfig
from tasks.errors import AuditError
from tasks.evaluate.metrics import METRICS
from tasks.evaluate.statistics import (
    STRENGTH_BANDS,
    Estimate,
    PairedComparison,
    bootstrap_mean,
    correlation_strength,
    paired_comparison,
)
from tasks.explain.registry import METHODS, spec_of
from tasks.flags import command_line
from tasks.records import UNDER_TEST, MethodFamily
from tasks.report import charts
from tasks.report.comparison import Comparison, compare_runs, previous_run
from tasks.report.interventions import InterventionReport, summarise_interventions
from tasks.report.literature import Outcome, RunNumbers, check_findings
from tasks.report.verdicts import VerdictReport, summarise_verdicts
from tasks.verdict.resolve import resolve

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
"""The templates folder: beside ``tasks`` in a checkout and in site-packages alike."""
BASELINE = "random"
HEATMAP_METHODS_ORDER = (MethodFamily.ATTENTION, MethodFamily.EXTERNAL, MethodFamily.REFERENCE)
MIN_TOKENS_FOR_EXAMPLES = 4
"""Representative examples are chosen among inputs with at least this many content tokens."""


# --- the context ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FaithfulnessRow:
    """One method's dataset-level faithfulness, against the random baseline."""

    method: str
    title: str
    family: str
    comprehensiveness: Estimate
    sufficiency: Estimate
    taucorr_loo: Estimate
    comprehensiveness_vs_random: PairedComparison | None
    sufficiency_vs_random: PairedComparison | None

    @property
    def beats_random(self) -> str:
        """Whether the method beats the random ranking on both AOPC measures.

        'yes' when both intervals of the paired difference exclude 0 in the faithful direction,
        'partly' when one does, 'no' otherwise ('baseline' for the random ranking itself).
        """
        if self.comprehensiveness_vs_random is None or self.sufficiency_vs_random is None:
            return "baseline"
        wins = [
            self.comprehensiveness_vs_random.difference.low > 0,
            self.sufficiency_vs_random.difference.high < 0,
        ]
        return "yes" if all(wins) else "partly" if any(wins) else "no"


@dataclass(frozen=True)
class PlausibilityRow:
    """One method against the human rationales, beside its faithfulness."""

    method: str
    title: str
    family: str
    token_f1: Estimate
    iou_f1: Estimate
    auprc: Estimate
    plausible: bool
    faithful: bool

    @property
    def quadrant(self) -> str:
        """Plausible and/or faithful, in words."""
        return {
            (True, True): "plausible and faithful",
            (True, False): "plausible, not faithful",
            (False, True): "faithful, not plausible",
            (False, False): "neither",
        }[(self.plausible, self.faithful)]


@dataclass(frozen=True)
class SanityRow:
    """One method's sanity check: how similar it stays to itself as the model is destroyed."""

    method: str
    title: str
    family: str
    fully_randomised: Estimate
    fully_randomised_signed: Estimate
    result: str  # "passes", "fails", "unclear"


@dataclass(frozen=True)
class AgreementRow:
    """One explanation's agreement with one reference, overall and by predicted class."""

    method: str
    title: str
    reference: str
    reference_title: str
    kendall_tau: Estimate
    spearman_rho: Estimate
    top_k_overlap: Estimate
    kendall_by_class: Mapping[str, Estimate]

    @property
    def strength(self) -> str:
        """The word for the mean Kendall τ (see ``STRENGTH_BANDS``)."""
        return correlation_strength(self.kendall_tau.mean)


@dataclass(frozen=True)
class HeatCell:
    """One token of a heatmap row: its text as it appears in the input, and its colour."""

    text: str
    space_before: bool
    score: float
    colour: str


@dataclass(frozen=True)
class HeatmapExample:
    """A representative example with every method's scores as coloured text."""

    reason: str
    example_id: str
    label: str | None
    predicted: str
    confidence: float
    truncated: bool
    rows: Sequence[tuple[str, str, Sequence[Sequence[HeatCell]]]]  # (method title, family, cells per text)
    pair: bool = False


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
    verdict_settings: Sequence[tuple[str, str]]
    plausibility: Sequence[PlausibilityRow]
    failures: Sequence[dict[str, Any]]
    not_applicable: Sequence[dict[str, str]]
    segments: Sequence[tuple[str, Estimate]]
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
    classes: Sequence[str] = field(default_factory=tuple)


def build_context(
    connection: Any,
    run_id: str | None,
    *,
    generated_at: datetime,
    seed: int = 0,
) -> ReportContext:
    """Read one run from the database and compute everything the report shows.

    Raises:
        AuditError: The run does not exist or has no stored examples.
    """
    run = store.read_run(connection, run_id)
    run_id = run["run_id"]
    config = AuditConfig.model_validate(run["config"])
    manifest = run["manifest"]
    examples = store.read_table(connection, "examples", run_id)
    if examples.empty:
        raise AuditError(f"the run {run_id} has no stored examples yet", "run (or resume) the audit first")
    metrics = store.read_table(connection, "metrics", run_id)
    costs = store.read_table(connection, "costs", run_id)
    imported = manifest.get("explanations", {}).get("methods", [])
    methods = [*(name for name in config.methods.methods if name in METHODS), *imported]
    families = {name: spec_of(name).family.value for name in methods}
    titles = {name: spec_of(name).title for name in methods}

    faithfulness = _faithfulness_rows(metrics, methods, seed)
    agreement = _agreement_rows(metrics, examples, methods, seed)
    completeness = _completeness(metrics)
    context_charts = _charts(metrics, faithfulness, agreement, families, titles, config)
    classes = sorted(examples["predicted_name"].unique())
    interventions = summarise_interventions(
        store.read_table(connection, "interventions", run_id),
        store.read_table(connection, "head_agreement", run_id),
        examples,
        int(manifest.get("model", {}).get("layers", 0)),
        seed,
    )
    plausibility = _plausibility_rows(metrics, faithfulness, seed)
    if plausibility:
        context_charts["plausibility"] = charts.scatter(
            [(row.title, row.auprc.mean, _gain(row.method, faithfulness), row.family) for row in plausibility],
            "plausibility: AUPRC against human rationales",
            "faithfulness: AOPC comprehensiveness gain over random",
        )
    failures = _failures(store.read_table(connection, "failures", run_id))
    not_applicable = store.read_table(connection, "not_applicable", run_id)
    skipped = [] if not_applicable.empty else not_applicable.sort_values(["kind", "name"]).to_dict("records")
    sanity_rows = _sanity(store.read_table(connection, "sanity_checks", run_id), config, seed)
    if sanity_rows:
        context_charts["sanity"] = _sanity_chart(store.read_table(connection, "sanity_checks", run_id), config)
    matrix = store.read_table(connection, "agreement_matrix", run_id)
    consistency = _consistency(matrix, config)
    if not matrix.empty:
        context_charts["matrix"] = _matrix_chart(matrix, methods)
    earlier = previous_run(connection, run_id)
    comparison = compare_runs(connection, earlier, run_id, seed=seed) if earlier else None
    verdict = summarise_verdicts(
        store.read_table(connection, "slice_verdicts", run_id),
        {row.method: row.comprehensiveness.mean for row in faithfulness},
        config.verdict.min_examples,
    )
    return ReportContext(
        run_id=run_id,
        status=run["status"],
        generated_at=generated_at.strftime("%Y-%m-%d %H:%M UTC"),
        created_at=str(run["created_at"])[:19],
        updated_at=str(run["updated_at"])[:19],
        config=run["config"],
        command=command_line(config, resolve(AuditConfig())),
        manifest_rows=_manifest_rows(manifest),
        dataset_rows=_dataset_rows(examples, manifest),
        summary=[
            *_summary(examples, verdict, interventions, completeness, plausibility, failures),
            *_not_applicable_sentences(skipped),
            *_sanity_sentences(sanity_rows, config),
            *([" ".join(comparison.sentences()[:4]) + "."] if comparison else []),
        ],
        details=_method_details(faithfulness, agreement),
        verdict=verdict,
        example_table=_example_table(examples, store.read_table(connection, "example_verdicts", run_id), methods),
        verdict_settings=_verdict_settings(config),
        plausibility=plausibility,
        failures=failures,
        not_applicable=skipped,
        segments=_segment_shares(metrics, methods, seed),
        comparison=comparison,
        sanity=sanity_rows,
        literature=check_findings(
            RunNumbers(metrics, store.read_table(connection, "interventions", run_id), tuple(methods))
        ),
        consistency=consistency,
        faithfulness=faithfulness,
        agreement=agreement,
        completeness=completeness,
        heatmaps=_heatmaps(connection, run_id, examples, metrics, methods),
        charts=context_charts,
        methods=[
            {
                "name": s.name,
                "title": s.title,
                "family": s.family.value,
                "formula": s.formula,
                "citation": s.citation,
                "signed": "signed" if s.signed else "non-negative",
            }
            for s in (spec_of(m) for m in methods)
        ],
        metrics=[
            {
                "name": s.name,
                "title": s.title,
                "kind": s.kind,
                "definition": s.definition,
                "citation": s.citation,
                "direction": {True: "higher", False: "lower", None: "—"}[s.higher_is_better],
            }
            for s in METRICS.values()
        ],
        settings=_settings(config),
        strength_bands=", ".join(
            f"|τ| < {bound:g}: {word}" if math.isfinite(bound) else f"otherwise {word}"
            for bound, word in STRENGTH_BANDS
        ),
        costs=_costs(costs),
        cost_bound=_cost_bound(costs, examples, manifest, config),
        interventions=interventions,
        coverage=_coverage(metrics, examples, methods, config),
        classes=classes,
    )


# --- aggregation ----------------------------------------------------------------------------


def per_example(metrics: pd.DataFrame, metric: str, *, k: float | None = None) -> pd.DataFrame:
    """Per-example values of one metric, methods as columns; draws (random baseline) averaged."""
    rows = metrics[metrics["metric"] == metric]
    if k is not None:
        rows = rows[np.isclose(rows["k"].astype(float), k)]
    if rows.empty:
        return pd.DataFrame()
    return rows.groupby(["example_id", "method"])["value"].mean().unstack("method")


def _faithfulness_rows(metrics: pd.DataFrame, methods: Sequence[str], seed: int) -> list[FaithfulnessRow]:
    comprehensiveness = per_example(metrics, "aopc_comprehensiveness")
    sufficiency = per_example(metrics, "aopc_sufficiency")
    tau = per_example(metrics, "taucorr_loo")
    rows = []
    for method in methods:
        if method not in comprehensiveness:
            continue
        versus_random = method != BASELINE and BASELINE in comprehensiveness
        rows.append(
            FaithfulnessRow(
                method=method,
                title=spec_of(method).title,
                family=spec_of(method).family.value,
                comprehensiveness=bootstrap_mean(comprehensiveness[method], seed=seed),
                sufficiency=bootstrap_mean(sufficiency[method], seed=seed),
                taucorr_loo=bootstrap_mean(tau[method], seed=seed) if method in tau else bootstrap_mean([]),
                comprehensiveness_vs_random=(
                    paired_comparison(comprehensiveness[method], comprehensiveness[BASELINE], seed=seed)
                    if versus_random
                    else None
                ),
                sufficiency_vs_random=(
                    paired_comparison(sufficiency[method], sufficiency[BASELINE], seed=seed) if versus_random else None
                ),
            )
        )
    return rows


def _agreement_rows(
    metrics: pd.DataFrame, examples: pd.DataFrame, methods: Sequence[str], seed: int
) -> list[AgreementRow]:
    rows = []
    agreement = metrics[metrics["metric"].isin(["kendall_tau", "spearman_rho", "top_k_overlap"])]
    predicted = examples.set_index("example_id")["predicted_name"]
    for method in methods:
        if spec_of(method).family == MethodFamily.REFERENCE:
            continue
        for reference in methods:
            if spec_of(reference).family != MethodFamily.REFERENCE:
                continue
            pair = agreement[(agreement["method"] == method) & (agreement["reference"] == reference)]
            if pair.empty:
                continue
            values = pair.groupby(["metric", "example_id"])["value"].mean()
            kendall = values.loc["kendall_tau"]
            rows.append(
                AgreementRow(
                    method=method,
                    title=spec_of(method).title,
                    reference=reference,
                    reference_title=spec_of(reference).title,
                    kendall_tau=bootstrap_mean(kendall, seed=seed),
                    spearman_rho=bootstrap_mean(values.loc["spearman_rho"], seed=seed),
                    top_k_overlap=bootstrap_mean(values.loc["top_k_overlap"], seed=seed),
                    kendall_by_class={
                        name: bootstrap_mean(kendall[kendall.index.map(predicted) == name], seed=seed)
                        for name in sorted(predicted.unique())
                    },
                )
            )
    return rows


def _coverage(metrics: pd.DataFrame, examples: pd.DataFrame, methods: Sequence[str], config: AuditConfig) -> list[str]:
    """Sentences naming the methods that skipped examples (e.g. flow above its length bound)."""
    scored = metrics[metrics["metric"] == "aopc_comprehensiveness"].groupby("method")["example_id"].agg(set)
    every = set(examples["example_id"])
    sentences = []
    for method in methods:
        lacking = sorted(every - scored.get(method, set()))
        if not lacking:
            continue
        reason = (
            f"inputs longer than {config.methods.flow_max_tokens} tokens, the --flow-max-tokens bound"
            if method == "flow"
            else "the method does not apply to them"
        )
        shown = ", ".join(lacking[:20]) + (" …" if len(lacking) > 20 else "")
        sentences.append(
            f"{spec_of(method).title} was not computed for {len(lacking)} of {len(every)} examples ({reason}): "
            f"{shown}. Its statistics cover the others."
        )
    return sentences


def _completeness(metrics: pd.DataFrame) -> dict[str, str]:
    rows = metrics[metrics["method"] == "integrated_gradients"]
    if rows.empty:
        return {}
    by_metric = rows.groupby("metric")["value"]
    errors = np.abs(by_metric.get_group("completeness_error").to_numpy())
    holds = by_metric.get_group("completeness_holds").to_numpy()
    return {
        "examples": f"{errors.shape[0]}",
        "holds": f"{100 * holds.mean():.1f} %",
        "median_abs_error": f"{np.median(errors):.2g}",
        "max_abs_error": f"{errors.max():.2g}",
        "median_relative_error": f"{np.nanmedian(by_metric.get_group('completeness_relative_error')):.2g}",
    }


# --- words ----------------------------------------------------------------------------------


def _summary(
    examples: pd.DataFrame,
    verdict: VerdictReport,
    interventions: InterventionReport,
    completeness: Mapping[str, str],
    plausibility: Sequence[PlausibilityRow] = (),
    failures: Sequence[dict[str, Any]] = (),
) -> list[str]:
    """The executive summary in plain words: the verdict first, each sentence with its numbers."""
    n = len(examples)
    labelled = examples.dropna(subset=["label"])
    if not labelled.empty:
        accuracy = float((labelled["label"] == labelled["predicted"]).mean())
        opening = (
            f"The model was audited on {n} examples; it classifies {100 * accuracy:.1f} % of the {len(labelled)} "
            "labelled ones correctly. Every explanation explains the predicted class."
        )
    else:
        opening = f"The model was audited on {n} unlabelled examples; every explanation explains the predicted class."
    sentences = [opening, *verdict.sentences, *interventions.summary, *_plausibility_sentences(plausibility)]
    if completeness:
        sentences.append(
            f"Integrated gradients satisfied completeness on {completeness['holds']} of examples "
            f"(median absolute error {completeness['median_abs_error']})."
        )
    truncated = int(examples["truncated"].sum())
    if truncated:
        sentences.append(f"{truncated} example(s) were truncated to the maximum length; their tails were not audited.")
    if failures:
        sentences.insert(
            1,
            f"{len(failures)} example(s) failed and are excluded from every number in this report (see "
            '"Failed examples"); running the same command again retries them.',
        )
    return sentences


def _sanity(rows: pd.DataFrame, config: AuditConfig, seed: int) -> list[SanityRow]:
    """Per method: similarity to the original explanation with every layer randomised, and the result."""
    if rows.empty:
        return []
    last = rows[rows["stage"] == rows["stage"].max()]
    threshold = config.sanity.similarity_max
    out = []
    for method, group in last.groupby("method", sort=False):
        absolute = bootstrap_mean(group["spearman_absolute"].to_numpy(), seed=seed)
        if math.isnan(absolute.high):
            result = "unclear"
        elif absolute.high < threshold:
            result = "passes"
        elif absolute.low > threshold:
            result = "fails"
        else:
            result = "unclear"
        spec = spec_of(method)
        out.append(
            SanityRow(method, spec.title, spec.family.value, absolute,
                      bootstrap_mean(group["spearman"].to_numpy(), seed=seed), result)
        )  # fmt: skip
    return out


def _sanity_chart(rows: pd.DataFrame, config: AuditConfig) -> str:
    means = rows.groupby(["method", "stage", "randomised"], sort=False)["spearman_absolute"].mean().reset_index()
    curves = {
        method: [(str(row.randomised), float(row.spearman_absolute)) for row in group.sort_values("stage").itertuples()]
        for method, group in means.groupby("method", sort=False)
    }
    families = {m: spec_of(m).family.value for m in curves}
    titles = {m: spec_of(m).title for m in curves}
    return charts.cascade(curves, families, titles, config.sanity.similarity_max)


def _sanity_sentences(rows: Sequence[SanityRow], config: AuditConfig) -> list[str]:
    if not rows:
        return []
    failing = [row for row in rows if row.result == "fails" and row.family != "baseline"]
    passing = [row for row in rows if row.result == "passes"]
    sentence = (
        f"Sanity check (Adebayo et al. 2018): with every layer randomised, {len(passing)} of {len(rows)} explanations "
        f"change enough to pass (absolute-value Spearman ρ with the original below {config.sanity.similarity_max:g})"
    )
    if failing:
        sentence += "; these barely change and so cannot be explaining this model: " + ", ".join(
            f"{row.title.lower()} (ρ {row.fully_randomised.mean:.2f})" for row in failing
        )
    return [sentence + "."]


def _consistency(matrix: pd.DataFrame, config: AuditConfig) -> dict[str, str]:
    """The references' agreement with each other, overall: the basis of the 'references disagree' rule."""
    if matrix.empty:
        return {}
    references = set(config.verdict.references)
    rows = matrix[(matrix["slice"] == "overall") & (matrix["statistic"] == "kendall_tau")
                  & matrix["method"].isin(references) & matrix["other"].isin(references)]  # fmt: skip
    if rows.empty:
        return {}
    pairs = "; ".join(
        f"{spec_of(r.method).title.lower()} vs {spec_of(r.other).title.lower()}: "
        f"τ {r.mean:.2f} [{r.low:.2f}, {r.high:.2f}]"
        for r in rows.itertuples(index=False)
    )
    return {"pairs": pairs, "threshold": f"{config.verdict.consistency_min:g}"}


def _matrix_chart(matrix: pd.DataFrame, methods: Sequence[str]) -> str:
    overall = matrix[(matrix["slice"] == "overall") & (matrix["statistic"] == "kendall_tau")]
    shown = [m for m in methods if m in set(overall["method"]) | set(overall["other"])]
    index = {m: i for i, m in enumerate(shown)}
    values = np.full((len(shown), len(shown)), np.nan)
    np.fill_diagonal(values, 1.0)
    for row in overall.itertuples(index=False):
        if row.method in index and row.other in index:
            values[index[row.method], index[row.other]] = values[index[row.other], index[row.method]] = row.mean
    return charts.matrix(values, [spec_of(m).title for m in shown], "Mean Kendall τ, every method against every other")


def _segment_shares(metrics: pd.DataFrame, methods: Sequence[str], seed: int) -> list[tuple[str, Estimate]]:
    """For text pairs: each method's mean share of its mass on the second text (empty for single texts)."""
    shares = per_example(metrics, "second_text_share")
    return [(spec_of(m).title, bootstrap_mean(shares[m], seed=seed)) for m in methods if m in shares]


def _not_applicable_sentences(skipped: Sequence[Mapping[str, str]]) -> list[str]:
    """One sentence naming the configured work that this model could not support, and why."""
    if not skipped:
        return []
    names = ", ".join(f"{row['name']} ({row['kind']})" for row in skipped)
    reasons = "; ".join(dict.fromkeys(row["reason"] for row in skipped))
    return [f"Not applicable to this model, so not part of this audit: {names}. Why: {reasons}."]


def _failures(rows: pd.DataFrame) -> list[dict[str, Any]]:
    if rows.empty:
        return []
    return [
        {"example_id": r.example_id, "error": f"{r.error_type}: {r.message}", "attempts": int(r.attempts)}
        for r in rows.sort_values("example_id").itertuples(index=False)
    ]


def _gain(method: str, faithfulness: Sequence[FaithfulnessRow]) -> float:
    row = next((r for r in faithfulness if r.method == method), None)
    if row is None or row.comprehensiveness_vs_random is None:
        return 0.0
    return row.comprehensiveness_vs_random.difference.mean


def _plausibility_rows(
    metrics: pd.DataFrame, faithfulness: Sequence[FaithfulnessRow], seed: int
) -> list[PlausibilityRow]:
    """Every method against the human rationales (empty when the corpus has none)."""
    if not metrics["metric"].isin(["auprc"]).any():
        return []
    f1, iou, area = per_example(metrics, "token_f1"), per_example(metrics, "token_iou"), per_example(metrics, "auprc")
    chance = float(area[BASELINE].mean()) if BASELINE in area else float("nan")
    rows = []
    for row in faithfulness:
        if row.method not in area:
            continue
        estimate = bootstrap_mean(area[row.method], seed=seed)
        matched = (iou[row.method].dropna() >= 0.5).astype(float)
        rows.append(
            PlausibilityRow(
                method=row.method,
                title=row.title,
                family=row.family,
                token_f1=bootstrap_mean(f1[row.method], seed=seed),
                iou_f1=bootstrap_mean(matched, seed=seed),
                auprc=estimate,
                plausible=row.method != BASELINE and not math.isnan(chance) and estimate.low > chance,
                faithful=row.beats_random == "yes",
            )
        )
    return rows


def _plausibility_sentences(rows: Sequence[PlausibilityRow]) -> list[str]:
    if not rows:
        return []
    chance = next((row.auprc.mean for row in rows if row.method == BASELINE), float("nan"))
    sentences = []
    deceptive = [row for row in rows if row.quadrant == "plausible, not faithful"]
    hidden = [row for row in rows if row.quadrant == "faithful, not plausible"]
    if deceptive:
        sentences.append(
            "Looks right but is not faithful: "
            + ", ".join(f"{row.title.lower()} (AUPRC {row.auprc.mean:.2f})" for row in deceptive)
            + f" highlight what people highlight better than chance (AUPRC {chance:.2f}) but do not beat random "
            "removal on both measures."
        )
    if hidden:
        sentences.append(
            "Faithful but not plausible: "
            + ", ".join(f"{row.title.lower()} (AUPRC {row.auprc.mean:.2f})" for row in hidden)
            + f" reflect what the model uses but do not match the human rationales better than chance ({chance:.2f})."
        )
    if not sentences:
        both = [row.title.lower() for row in rows if row.quadrant == "plausible and faithful"]
        sentences.append(
            "Against the human rationales, "
            + (", ".join(both) if both else "no explanation")
            + f" is both plausible (AUPRC above chance, {chance:.2f}) and faithful."
        )
    return sentences


def _method_details(faithfulness: Sequence[FaithfulnessRow], agreement: Sequence[AgreementRow]) -> list[str]:
    """One paragraph per attention-based explanation: its agreement and its faithfulness against random."""
    paragraphs = []
    by_method = {row.method: row for row in faithfulness}
    chance = [row.kendall_tau.mean for row in agreement if row.method == BASELINE]
    random_row = by_method.get(BASELINE)
    for row in faithfulness:
        if MethodFamily(row.family) not in UNDER_TEST:
            continue
        pairs = [a for a in agreement if a.method == row.method and not math.isnan(a.kendall_tau.mean)]
        if pairs:
            best = max(pairs, key=lambda a: a.kendall_tau.mean)
            worst = min(pairs, key=lambda a: a.kendall_tau.mean)
            agreement_words = (
                f"ranks tokens in {best.strength} agreement with {best.reference_title.lower()} "
                f"(mean Kendall τ {best.kendall_tau}) and in {worst.strength} agreement with "
                f"{worst.reference_title.lower()} (τ {worst.kendall_tau})"
            )
            if chance:
                agreement_words += f"; a random ranking scores τ ≈ {np.nanmean(chance):.2f}"
        else:
            agreement_words = "was not compared with any reference"
        comparison = row.comprehensiveness_vs_random
        if comparison is not None and random_row is not None:
            verdict = {
                "yes": "more faithful than a random ranking on both measures",
                "partly": "more faithful than a random ranking on one of the two measures",
                "no": "no more faithful than a random ranking",
            }[row.beats_random]
            faithfulness_words = (
                f"removing the tokens it ranks highest lowers the predicted-class probability by "
                f"{row.comprehensiveness:.3f} on average (AOPC comprehensiveness; random: "
                f"{random_row.comprehensiveness.mean:.3f}, paired difference {comparison.difference:.3f}), and keeping "
                f"only them leaves a drop of {row.sufficiency:.3f} (AOPC sufficiency, lower is better; random: "
                f"{random_row.sufficiency.mean:.3f}): {verdict}"
            )
        else:
            faithfulness_words = f"its AOPC comprehensiveness is {row.comprehensiveness:.3f}"
        paragraphs.append(f"{row.title} {agreement_words}. As an explanation, {faithfulness_words}.")
    ranked = [r for r in faithfulness if r.method != BASELINE and not math.isnan(r.comprehensiveness.mean)]
    if ranked:
        best = max(ranked, key=lambda r: r.comprehensiveness.mean)
        sentence = (
            f"By AOPC comprehensiveness the most faithful explanation is {best.title.lower()} "
            f"({best.comprehensiveness.mean:.3f})"
        )
        attention = [r for r in ranked if r.family == MethodFamily.ATTENTION]
        if attention:
            top = max(attention, key=lambda r: r.comprehensiveness.mean)
            sentence += (
                f"; the most faithful attention-based one is {top.title.lower()} ({top.comprehensiveness.mean:.3f})"
            )
        paragraphs.append(sentence + ".")
    return paragraphs


def _example_table(examples: pd.DataFrame, verdicts: pd.DataFrame, methods: Sequence[str]) -> list[dict[str, Any]]:
    """Every example with its prediction and its verdict per attention-based explanation (HTML table)."""
    attention = [m for m in methods if spec_of(m).family in UNDER_TEST]
    by_example: dict[str, dict[str, str]] = {}
    for row in verdicts.itertuples(index=False):
        by_example.setdefault(row.example_id, {})[row.method] = row.verdict
    rows = []
    for example in examples.sort_values("example_id").itertuples(index=False):
        rows.append(
            {
                "example_id": example.example_id,
                "text": example.text,
                "label": None if pd.isna(example.label_name) else example.label_name,
                "predicted": example.predicted_name,
                "confidence": float(example.confidence),
                "tokens": int(example.n_content_tokens),
                "verdicts": [(spec_of(m).title, by_example.get(example.example_id, {}).get(m, "")) for m in attention],
            }
        )
    return rows


def _verdict_settings(config: AuditConfig) -> list[tuple[str, str]]:
    options = config.verdict
    return [
        ("Verdict references", ", ".join(options.references)),
        ("Agreement threshold", f"mean Kendall τ with the references ≥ {options.agreement_min:g}"),
        ("No better than random", f"AOPC comprehensiveness gain over random < {options.equivalence_margin:g}"),
        ("Sensitive to attention", f"median TVD under permuted attention ≥ {options.sensitivity_min:g}"),
        ("Important head", f"mean TVD when masked ≥ {options.importance_min:g}"),
        ("Smallest judged slice", f"{options.min_examples} examples"),
        ("Confidence bins", "edges " + ", ".join(f"{edge:g}" for edge in options.confidence_bins)),
        ("Length bins", "edges " + ", ".join(f"{edge:g}" for edge in options.length_bins) + " content tokens"),
    ]


# --- heatmaps -------------------------------------------------------------------------------


def _heatmaps(
    connection: Any, run_id: str, examples: pd.DataFrame, metrics: pd.DataFrame, methods: Sequence[str]
) -> list[HeatmapExample]:
    chosen = _representative_examples(examples, metrics)
    if not chosen:
        return []
    tokens, scores = store.read_example_tokens(connection, run_id, [example_id for _, example_id in chosen])
    shown = [m for family in HEATMAP_METHODS_ORDER for m in methods if spec_of(m).family == family]
    by_id = examples.set_index("example_id")
    heatmaps = []
    for reason, example_id in chosen:
        example = by_id.loc[example_id]
        example_tokens = tokens[(tokens["example_id"] == example_id) & ~tokens["is_special"]]
        pair = "text_pair" in example and isinstance(example["text_pair"], str)
        texts = (example["text"], example["text_pair"]) if pair else (example["text"],)
        rows = []
        if "in_rationale" in example_tokens and example_tokens["in_rationale"].notna().any():
            marked = example_tokens["in_rationale"].fillna(False).astype(float).to_numpy()
            rows.append(("Human rationale", "human", _cells_per_text(texts, example_tokens, marked, "106, 61, 154")))
        for method in shown:
            method_scores = scores[(scores["example_id"] == example_id) & (scores["method"] == method)]
            score_at = dict(zip(method_scores["position"], method_scores["score"], strict=True))
            values = np.array([score_at.get(p, 0.0) for p in example_tokens["position"]])
            rows.append(
                (spec_of(method).title, spec_of(method).family.value, _cells_per_text(texts, example_tokens, values))
            )
        heatmaps.append(
            HeatmapExample(
                reason=reason,
                example_id=example_id,
                label=None if pd.isna(example["label_name"]) else str(example["label_name"]),
                predicted=str(example["predicted_name"]),
                confidence=float(example["confidence"]),
                truncated=bool(example["truncated"]),
                rows=rows,
                pair=pair,
            )
        )
    return heatmaps


def _representative_examples(examples: pd.DataFrame, metrics: pd.DataFrame) -> list[tuple[str, str]]:
    """Highest and lowest attention-reference agreement, and the most confident misclassification."""
    attention = [m for m, s in METHODS.items() if s.family == MethodFamily.ATTENTION]
    tau = metrics[(metrics["metric"] == "kendall_tau") & metrics["method"].isin(attention)]
    long_enough = set(examples.loc[examples["n_content_tokens"] >= MIN_TOKENS_FOR_EXAMPLES, "example_id"])
    mean_tau = tau[tau["example_id"].isin(long_enough)].groupby("example_id")["value"].mean().dropna()
    chosen: list[tuple[str, str]] = []
    if not mean_tau.empty:
        chosen.append(
            (
                f"Highest agreement between attention and the references (mean Kendall τ {mean_tau.max():.2f})",
                str(mean_tau.idxmax()),
            )
        )
        if mean_tau.idxmin() != mean_tau.idxmax():
            chosen.append(
                (
                    f"Lowest agreement between attention and the references (mean Kendall τ {mean_tau.min():.2f})",
                    str(mean_tau.idxmin()),
                )
            )
    wrong = examples[examples["label"].notna() & (examples["label"] != examples["predicted"])]
    if not wrong.empty:
        worst = wrong.sort_values(["confidence", "example_id"], ascending=[False, True]).iloc[0]
        chosen.append((f"Most confident misclassification (p = {worst['confidence']:.2f})", str(worst["example_id"])))
    return chosen


def _cells_per_text(
    texts: Sequence[str], tokens: pd.DataFrame, values: np.ndarray, positive: str = "214, 96, 77"
) -> list[list[HeatCell]]:
    """One list of cells per text of the example (two for a pair), on the row's one colour scale."""
    segment = tokens["segment"].to_numpy() if "segment" in tokens else np.zeros(len(tokens), dtype=int)
    scale = float(np.max(np.abs(values))) if values.size else 0.0
    return [_cells(text, tokens[segment == i], values[segment == i], positive, scale) for i, text in enumerate(texts)]


def _cells(
    text: str,
    tokens: pd.DataFrame,
    values: np.ndarray,
    positive: str = "214, 96, 77",
    scale: float | None = None,
) -> list[HeatCell]:
    """Colour each token by its score relative to the row's largest magnitude (red: for ŷ, blue: against).

    A token shows the text its offsets cover, never the tokenizer's piece (``##ing``, ``Ġthe``, ``▁the``):
    a leading space inside the span (byte-level BPE, SentencePiece) becomes the gap before the cell, and
    a token whose span the previous one already covered (the second byte of a character split by
    byte-level BPE) shows no text.
    """
    if scale is None:
        scale = float(np.max(np.abs(values))) if values.size else 0.0
    cells = []
    shown_until = 0
    pending_gap = False  # a cell that showed only whitespace (SentencePiece's lone ``▁``) passes its gap on
    for (start, end), value in zip(tokens[["char_start", "char_end"]].itertuples(index=False), values, strict=True):
        start = max(int(start), shown_until) if end > start else int(start)
        piece = text[start:end] if end > start else ""
        words = piece.lstrip()
        gap = pending_gap or start > shown_until or len(words) < len(piece)
        pending_gap = gap and not words
        strength = abs(value) / scale if scale > 0 else 0.0
        rgb = positive if value >= 0 else "67, 147, 195"
        cells.append(
            HeatCell(
                text=words,
                space_before=bool(cells) and gap and bool(words),
                score=float(value),
                colour=f"rgba({rgb}, {0.08 + 0.85 * strength:.2f})",
            )
        )
        shown_until = max(shown_until, int(end))
    return cells


# --- charts and tables ------------------------------------------------------------------------


def _charts(
    metrics: pd.DataFrame,
    faithfulness: Sequence[FaithfulnessRow],
    agreement: Sequence[AgreementRow],
    families: Mapping[str, str],
    titles: Mapping[str, str],
    config: AuditConfig,
) -> dict[str, str]:
    out: dict[str, str] = {}
    if faithfulness:
        random_row = next((r for r in faithfulness if r.method == BASELINE), None)
        out["faithfulness"] = charts.estimate_bars(
            [
                (
                    "AOPC comprehensiveness\n(higher is better)",
                    {r.method: r.comprehensiveness for r in faithfulness},
                    random_row.comprehensiveness.mean if random_row else None,
                ),
                (
                    "AOPC sufficiency\n(lower is better)",
                    {r.method: r.sufficiency for r in faithfulness},
                    random_row.sufficiency.mean if random_row else None,
                ),
            ],
            families,
            titles,
        )
        curves = []
        for metric in ("comprehensiveness", "sufficiency"):
            rows = metrics[metrics["metric"] == metric]
            means = rows.groupby(["method", "k"])["value"].mean()
            curves.append(
                (
                    f"{metric.capitalize()} by rationale size",
                    {m: [(100 * k, v) for k, v in means.loc[m].items()] for m in titles if m in means.index},
                )
            )
        out["curves"] = charts.curves(curves, families, titles, "rationale size k (% of content tokens)")
    if agreement:
        references = list(dict.fromkeys(row.reference for row in agreement))
        kendall = per_example_pairs(metrics, "kendall_tau")
        panels = []
        for reference in references:
            values = {
                row.method: kendall[(row.method, reference)].dropna().to_numpy()
                for row in agreement
                if row.reference == reference and (row.method, reference) in kendall
            }
            panels.append((f"vs {titles.get(reference, reference).lower()}", values))
        out["agreement"] = charts.distributions(panels, titles, "Kendall τ per example")
    errors = metrics[(metrics["method"] == "integrated_gradients") & (metrics["metric"] == "completeness_error")]
    if not errors.empty:
        out["completeness"] = charts.histogram(errors["value"].abs().to_numpy(), "|completeness error|")
    return out


def per_example_pairs(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per-example values of a pairwise metric, ``(method, reference)`` columns, draws averaged."""
    rows = metrics[metrics["metric"] == metric]
    return rows.groupby(["example_id", "method", "reference"])["value"].mean().unstack(["method", "reference"])


def _manifest_rows(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    model = manifest.get("model", {})
    data = manifest.get("data", {})
    rows = [
        ("Model", str(model.get("name_or_path", ""))),
        ("Model type", str(model.get("source", {}).get("model_type", ""))),
        (
            "Model source",
            ", ".join(
                f"{k}: {v}"
                for k, v in model.get("source", {}).items()
                if k not in {"build_manifest", "model_type"} and v
            ),
        ),
        ("Weights SHA-256", str(model.get("fingerprint", ""))),
        ("Labels", ", ".join(model.get("labels", []))),
    ]
    if "device" in model:
        rows.append(("Device and precision", f"{model['device']}, {model.get('precision', 'float32')}"))
    if "family" in model:
        rows.append(("Adapter", str(model["family"])))
    build = model.get("source", {}).get("build_manifest")
    if build:
        rows.append(
            (
                "Built from",
                f"{build['base_model']['name']} ({build['base_model']['package']}), "
                f"fine-tuned on {build['corpus']['name']} ({build['corpus']['package']})",
            )
        )
        rows.append(("Build accuracy", ", ".join(f"{k} {v:.3f}" for k, v in build["accuracy"].items())))
        rows.append(("Training", ", ".join(f"{k}={v}" for k, v in build["training"].items())))
    rows += [
        ("Dataset", f"{data.get('name', '')} (split {data.get('split', '')})"),
        ("Dataset source", ", ".join(f"{k}: {v}" for k, v in data.get("source", {}).items())),
        ("Data SHA-256", str(data.get("fingerprint", ""))),
        ("Examples in the split", str(data.get("rows_in_split", ""))),
        ("Software", ", ".join(f"{k} {v}" for k, v in manifest.get("versions", {}).items())),
        ("Platform", str(manifest.get("platform", ""))),
    ]
    return rows


def _dataset_rows(examples: pd.DataFrame, manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    lengths = examples["n_content_tokens"]
    rows = [
        ("Examples audited", str(len(examples))),
        (
            "Content tokens per example",
            f"median {lengths.median():.0f}, 90th percentile {lengths.quantile(0.9):.0f}, max {lengths.max()}",
        ),
        ("Truncated", str(int(examples["truncated"].sum()))),
        (
            "Predicted classes",
            ", ".join(f"{k}: {v}" for k, v in examples["predicted_name"].value_counts().sort_index().items()),
        ),
    ]
    labelled = examples.dropna(subset=["label"])
    if not labelled.empty:
        rows.append(
            (
                "Gold classes",
                ", ".join(f"{k}: {v}" for k, v in labelled["label_name"].value_counts().sort_index().items()),
            )
        )
        rows.append(("Accuracy", f"{100 * float((labelled['label'] == labelled['predicted']).mean()):.1f} %"))
    return rows


def _settings(config: AuditConfig) -> list[tuple[str, str]]:
    options = config.methods
    return [
        ("Methods", ", ".join(options.methods)),
        ("Removal operator", options.removal),
        (
            "Units ranked by every metric",
            "words (whitespace-separated; a word scores the sum of its sub-token scores, the random baseline "
            "its first draw)"
            if options.units == "word"
            else "tokens",
        ),
        ("Rationale sizes k", ", ".join(f"{100 * k:g} %" for k in options.k_fractions)),
        ("Integrated gradients", f"m = {options.ig_steps} steps, {options.ig_rule} rule, [PAD] baseline"),
        ("Random baseline", f"{options.random_draws} draws, seed {options.seed}"),
        ("Top-k overlap", f"k = {options.agreement_top_k}"),
        ("Max length", f"{config.data.max_length} tokens"),
        (
            "Sample",
            "whole split"
            if config.data.limit is None
            else f"{config.data.limit} examples in seeded hash order (seed {config.data.sample_seed})",
        ),
        (
            "Intervals",
            "percentile bootstrap 95 %, 2,000 resamples, seeded; paired Wilcoxon signed-rank tests",
        ),
    ]


def _cost_bound(
    costs: pd.DataFrame, examples: pd.DataFrame, manifest: Mapping[str, Any], config: AuditConfig
) -> dict[str, str]:
    """The measured throughput, the naive pass-count bound, and this run's seconds per example."""
    from tasks.evaluate.costs import Throughput, naive_bound

    measured = manifest.get("throughput")
    if costs.empty or not measured:
        return {}
    throughput = Throughput(**measured)
    computed = examples[examples["batch_id"].isin(set(costs["batch_id"]))]
    bound = naive_bound(
        config, computed["n_tokens"].tolist(), computed["n_content_tokens"].tolist(),
        int(manifest["model"]["layers"]), int(manifest["model"]["heads"]), throughput,
    )  # fmt: skip
    seconds = float(costs["seconds"].sum())
    count = max(len(computed), 1)
    return {
        "forward": f"{throughput.forward:,.0f}",
        "forward_backward": f"{throughput.forward_backward:,.0f}",
        "length": str(throughput.length),
        "bound": f"{bound / count:.3f}",
        "actual": f"{seconds / count:.3f}",
        "ratio": f"{bound / seconds:.1f}" if seconds else "n/a",
    }


def _costs(costs: pd.DataFrame) -> list[dict[str, Any]]:
    if costs.empty:
        return []
    total = costs.groupby("stage", sort=False)[
        ["seconds", "forward_rows", "forward_tokens", "backward_rows", "backward_tokens"]
    ].sum()
    examples = costs.drop_duplicates("batch_id")["examples"].sum()
    rows = []
    for stage, row in total.iterrows():
        rows.append(
            {
                "stage": stage,
                "seconds_per_example": row["seconds"] / examples,
                "forward_per_example": row["forward_rows"] / examples,
                "backward_per_example": row["backward_rows"] / examples,
                "tokens_per_second": (row["forward_tokens"] + row["backward_tokens"]) / row["seconds"]
                if row["seconds"]
                else 0.0,
            }
        )
    return rows


# --- rendering ------------------------------------------------------------------------------


def render_html(context: ReportContext) -> str:
    """The self-contained HTML report (CSS inline, charts as data URIs, dataset text escaped).

    A Content-Security-Policy allows only the report's own script (by its hash), inline styles and
    ``data:`` images: even markup that slipped into the page could neither run nor load anything.
    """
    from jinja2 import Environment, StrictUndefined, select_autoescape

    folder = TEMPLATES
    environment = Environment(
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["fmt"] = _format_number
    template = environment.from_string((folder / "report.html.j2").read_text(encoding="utf-8"))
    script = (folder / "report.js").read_text(encoding="utf-8")
    return template.render(
        r=context,
        css=(folder / "report.css").read_text(encoding="utf-8"),
        script=script,
        script_hash="sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii"),
    )


def _format_number(value: float, spec: str = ".3f") -> str:
    """``format(value, spec)``, with 'n/a' for NaN and no minus sign on a rounded zero."""
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    text = format(value, spec)
    return text.replace("-", "", 1) if text.lstrip("+-").strip("0.,") == "" and text.startswith("-") else text


def render_pdf(html: str, path: Path) -> None:
    """Render the HTML report to PDF with WeasyPrint, loading nothing but inline ``data:`` resources."""
    import logging

    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    logging.getLogger("fontTools").setLevel(logging.WARNING)
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    HTML(string=html, url_fetcher=URLFetcher(allowed_protocols=("data",))).write_pdf(path)


# --- machine-readable summary -------------------------------------------------------------------


def _estimate_json(estimate: Estimate) -> dict[str, float | int | None]:
    def plain(value: float) -> float | None:
        return None if math.isnan(value) else round(float(value), 6)

    return {"mean": plain(estimate.mean), "low": plain(estimate.low), "high": plain(estimate.high), "n": estimate.n}


def summary_document(context: ReportContext) -> dict[str, Any]:
    """The verdicts and headline metrics of the report as JSON-ready data (NaN becomes null)."""
    return {
        "run_id": context.run_id,
        "status": context.status,
        "generated_at": context.generated_at,
        "manifest": dict(context.manifest_rows),
        "dataset": dict(context.dataset_rows),
        "summary": list(context.summary),
        "recommended_explanation": context.verdict.recommended,
        "verdicts": [
            {
                "method": row.method,
                "slice": row.slice,
                "slice_value": row.slice_value,
                "n": row.n,
                "verdict": row.verdict,
                "reason": row.reason,
                "evidence": dict(row.evidence),
                "agreement": _estimate_json(row.agreement),
                "comprehensiveness_gain": _estimate_json(row.comprehensiveness),
                "sufficiency_gain": _estimate_json(row.sufficiency),
                "erasure_gain": _estimate_json(row.erasure),
                "permutation_tvd": _estimate_json(row.sensitivity),
            }
            for _, _, _, rows in context.verdict.slices
            for row in rows
        ],
        "layers": [
            {
                "layer": row.label,
                "verdict": row.verdict,
                "agreement": _estimate_json(row.agreement),
                "masked_tvd": _estimate_json(row.importance),
            }
            for row in context.verdict.layers
        ],
        "faithfulness": [
            {
                "method": row.method,
                "family": row.family,
                "aopc_comprehensiveness": _estimate_json(row.comprehensiveness),
                "aopc_sufficiency": _estimate_json(row.sufficiency),
                "taucorr_loo": _estimate_json(row.taucorr_loo),
                "beats_random": row.beats_random,
            }
            for row in context.faithfulness
        ],
        "agreement": [
            {
                "method": row.method,
                "reference": row.reference,
                "kendall_tau": _estimate_json(row.kendall_tau),
                "spearman_rho": _estimate_json(row.spearman_rho),
                "top_k_overlap": _estimate_json(row.top_k_overlap),
            }
            for row in context.agreement
        ],
        "interventions": [
            {
                "intervention": section.name,
                "findings": list(section.findings),
                "rows": [
                    {
                        "changed": row.label,
                        "layer": row.layer,
                        "tvd": _estimate_json(row.tvd),
                        "flip_rate": _estimate_json(row.flip_rate),
                        "accuracy": None if math.isnan(row.accuracy) else row.accuracy,
                    }
                    for row in section.rows
                ],
            }
            for section in context.interventions.sections
        ],
        "integrated_gradients_completeness": dict(context.completeness),
        "sanity_checks": [
            {"method": row.method, "result": row.result, "spearman_absolute": _estimate_json(row.fully_randomised)}
            for row in context.sanity
        ],
        "literature": [
            {"id": finding.id, "citation": finding.citation, "status": finding.status, "evidence": finding.evidence}
            for finding in context.literature
        ],
        "compared_with": None
        if context.comparison is None
        else {
            "run_id": context.comparison.before["run_id"],
            "paired": context.comparison.paired,
            "verdicts": [
                {"method": m, "before": before, "after": after} for m, before, after in context.comparison.verdicts
            ],
            "moved": [
                {"method": m.method, "evidence": m.evidence, "difference": _estimate_json(m.difference)}
                for m in context.comparison.movements
                if m.moved
            ],
        },
        "settings": dict(context.settings) | dict(context.verdict_settings),
    }
