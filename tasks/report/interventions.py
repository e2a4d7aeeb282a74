"""Dataset-level summaries of the interventions on the attention, for the report.

Pure functions of the ``interventions`` and ``head_agreement`` tables (as DataFrames) and the examples:
every number the report shows about interventions is computed here, with its bootstrap interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

import numpy as np
import pandas as pd
from scipy import stats

from tasks import store
from tasks.config import VerdictOptions
from tasks.evaluate.statistics import Estimate, PairedComparison, bootstrap_mean, paired_comparison
from tasks.interventions.registry import INTERVENTIONS
from tasks.report import charts


@dataclass(frozen=True)
class InterventionRow:
    """One variant of an intervention (e.g. uniform attention in layer 3) over the dataset.

    Attributes:
        label: What was changed, in words.
        layer: The layer (None: all layers at once).
        tvd: Mean output change (TVD) with its interval.
        flip_rate: Share of decisions that flipped, with its interval.
        accuracy: Accuracy under the change (labelled examples; NaN without labels).
    """

    label: str
    layer: int | None
    tvd: Estimate
    flip_rate: Estimate
    accuracy: float = float("nan")


@dataclass(frozen=True)
class InterventionSection:
    """What one intervention showed."""

    name: str
    title: str
    definition: str
    reading: str
    citation: str
    rows: Sequence[InterventionRow]
    findings: Sequence[str]
    extra: Mapping[str, Estimate | PairedComparison | float] = field(default_factory=dict)


@dataclass(frozen=True)
class InterventionReport:
    """Every intervention section, the charts, and the head maps."""

    sections: Sequence[InterventionSection]
    charts: Mapping[str, str]
    baseline_accuracy: float
    head_importance_agreement: float  # Spearman ρ across heads, NaN when not measured
    most_important_head: tuple[int, int] | None
    summary: Sequence[str]


def summarise_interventions(
    interventions: pd.DataFrame,
    head_agreement: pd.DataFrame,
    examples: pd.DataFrame,
    layers: int,
    seed: int = 0,
    *,
    options: VerdictOptions,
    head_means: pd.DataFrame | None = None,
) -> InterventionReport:
    """Summarise every intervention present in the run.

    The findings judge with the run's verdict thresholds: a permutation changes the output when its median
    TVD reaches ``options.sensitivity_min``, a head matters when masking it reaches ``options.importance_min``.
    ``head_means`` holds each masked head's mean statistics (``head_masking_means`` of every row, which is
    what it defaults to); ``interventions`` then needs the per-example rows of the ``store.TOP_HEADS`` heads
    with the largest mean TVD only (``store.VIEWS``).
    """
    if interventions.empty:
        return InterventionReport((), {}, float("nan"), float("nan"), None, ())
    labels = examples.set_index("example_id")["label"]
    labelled = examples[examples["label"].notna()]
    baseline_accuracy = float((labelled["label"] == labelled["predicted"]).mean()) if len(labelled) else float("nan")
    means = head_masking_means(interventions) if head_means is None else head_means
    builders = {
        "permutation": partial(_permutation, sensitivity_min=options.sensitivity_min),
        "uniform": _uniform,
        "top_vs_random_erasure": _erasure,
        "adversarial": _adversarial,
        "head_masking": partial(_head_masking, means=means, importance_min=options.importance_min),
    }
    sections, summary = [], []
    present = [name for name in INTERVENTIONS if name in set(interventions["intervention"])]
    for name in present:
        rows = interventions[interventions["intervention"] == name]
        section = builders[name](rows, labels, layers, seed)
        sections.append(section)
        summary.extend(section.findings[:1])
    out_charts: dict[str, str] = {}
    tvd_panels = _tvd_distributions(interventions, layers)
    if tvd_panels:
        out_charts["tvd"] = charts.distributions([("Output change (TVD) per example", tvd_panels)], {}, "TVD")
    importance, agreement, rho, top_head = _head_maps(means, head_agreement, layers)
    if importance is not None:
        panels = [("Head importance: mean TVD when masked", importance)]
        if agreement is not None:
            panels.append(("Head agreement: mean Kendall τ with the references", agreement))
        out_charts["heads"] = charts.heatmaps(panels)
    summary.extend(_head_correlation_sentence(rho))
    return InterventionReport(tuple(sections), out_charts, baseline_accuracy, rho, top_head, tuple(summary))


def _head_correlation_sentence(rho: float) -> list[str]:
    """How head importance and head agreement with the references relate, in words (none when undefined)."""
    if math.isnan(rho):
        return []
    if rho > 0.3:
        meaning = "important heads attend like the references"
    elif rho < 0.1:
        meaning = "the heads that matter are not the ones whose attention looks like the references"
    else:
        meaning = "important heads only loosely attend like the references"
    return [
        "Across heads, importance (output change when masked) and agreement with the references correlate "
        f"with Spearman ρ = {rho:.2f}: {meaning}."
    ]


def _per_example(rows: pd.DataFrame, statistic: str, layer: int | None) -> pd.Series:
    chosen = rows[rows["statistic"] == statistic]
    chosen = chosen[chosen["layer"].isna()] if layer is None else chosen[chosen["layer"] == layer]
    return chosen.set_index("example_id")["value"]


def _layers_of(rows: pd.DataFrame) -> list[int]:
    return sorted(int(layer) for layer in rows["layer"].dropna().unique())


def _layer_label(layer: int | None, layers: int) -> str:
    if layer is None:
        return "all layers"
    return f"layer {layer + 1} of {layers}"


def _permutation(
    rows: pd.DataFrame, labels: pd.Series, layers: int, seed: int, *, sensitivity_min: float
) -> InterventionSection:
    spec = INTERVENTIONS["permutation"]
    table, findings = [], []
    for layer in _layers_of(rows):
        median = bootstrap_mean(_per_example(rows, "median_tvd", layer).to_numpy(), seed=seed)
        flips = bootstrap_mean(_per_example(rows, "flip_rate", layer).to_numpy(), seed=seed)
        table.append(InterventionRow(_layer_label(layer, layers), layer, median, flips))
        small = float((_per_example(rows, "median_tvd", layer) < sensitivity_min).mean())
        meaning = (
            "the output largely ignores which token gets which weight"
            if small > 0.5
            else "the assignment of weights to tokens matters for most examples"
        )
        findings.append(
            f"Permuting the attention of the classification position in {_layer_label(layer, layers)} changes the "
            f"output by a median TVD of {median:.3f} on average and flips {100 * flips.mean:.1f} % of decisions; "
            f"for {100 * small:.0f} % of examples the median change is below {sensitivity_min:g}, i.e. {meaning}."
        )
    return InterventionSection(spec.name, spec.title, spec.definition, spec.reading, spec.citation, table, findings)


def _uniform(rows: pd.DataFrame, labels: pd.Series, layers: int, seed: int) -> InterventionSection:
    spec = INTERVENTIONS["uniform"]
    table = []
    for layer in [*_layers_of(rows), None]:
        changes = _per_example(rows, "tvd", layer)
        if changes.empty:
            continue
        predicted = _per_example(rows, "predicted", layer)
        gold = labels.reindex(predicted.index)
        known = gold.notna()
        accuracy = float((predicted[known] == gold[known]).mean()) if known.any() else float("nan")
        table.append(
            InterventionRow(
                _layer_label(layer, layers),
                layer,
                bootstrap_mean(changes.to_numpy(), seed=seed),
                bootstrap_mean(_per_example(rows, "flip", layer).to_numpy(), seed=seed),
                accuracy,
            )
        )
    findings = []
    everything = next((row for row in table if row.layer is None), None)
    if everything is not None:
        worst = max((row for row in table if row.layer is not None), key=lambda row: row.tvd.mean, default=None)
        accuracy_words = (
            f"; accuracy becomes {100 * everything.accuracy:.1f} %" if not math.isnan(everything.accuracy) else ""
        )
        findings.append(
            f"Uniform attention in every layer flips {100 * everything.flip_rate.mean:.1f} % of decisions "
            f"(mean TVD {everything.tvd.mean:.3f}){accuracy_words}"
            + (
                f"; alone, {worst.label} matters most (mean TVD {worst.tvd.mean:.3f}, "
                f"{100 * worst.flip_rate.mean:.1f} % flips)."
                if worst is not None
                else "."
            )
        )
    return InterventionSection(spec.name, spec.title, spec.definition, spec.reading, spec.citation, table, findings)


def _erasure(rows: pd.DataFrame, labels: pd.Series, layers: int, seed: int) -> InterventionSection:
    spec = INTERVENTIONS["top_vs_random_erasure"]
    table, findings, extra = [], [], {}
    for layer in _layers_of(rows):
        top, random = _per_example(rows, "top_tvd", layer), _per_example(rows, "random_tvd", layer)
        top, random = top.align(random)
        comparison = paired_comparison(top.to_numpy(), random.to_numpy(), seed=seed)
        top_tvd, random_tvd = bootstrap_mean(top.to_numpy(), seed=seed), bootstrap_mean(random.to_numpy(), seed=seed)
        top_flip = bootstrap_mean(_per_example(rows, "top_flip", layer).to_numpy(), seed=seed)
        random_flip = bootstrap_mean(_per_example(rows, "random_flip", layer).to_numpy(), seed=seed)
        table.append(InterventionRow(f"top key, {_layer_label(layer, layers)}", layer, top_tvd, top_flip))
        table.append(InterventionRow(f"random key, {_layer_label(layer, layers)}", layer, random_tvd, random_flip))
        extra[f"difference_layer_{layer}"] = comparison
        verdict = (
            "more than"
            if comparison.difference.low > 0
            else "less than"
            if comparison.difference.high < 0
            else "no more than"
        )
        findings.append(
            f"Erasing the most-attended token from the attention of {_layer_label(layer, layers)} changes the output "
            f"{verdict} erasing a random one (mean TVD {top_tvd.mean:.3f} vs "
            f"{random_tvd.mean:.3f}, paired difference {comparison.difference:.3f}); it flips "
            f"{100 * top_flip.mean:.1f} % of decisions versus {100 * random_flip.mean:.1f} % for a random token."
        )
    return InterventionSection(
        spec.name, spec.title, spec.definition, spec.reading, spec.citation, table, findings, extra
    )


def _adversarial(rows: pd.DataFrame, labels: pd.Series, layers: int, seed: int) -> InterventionSection:
    spec = INTERVENTIONS["adversarial"]
    table, findings, extra = [], [], {}
    for layer in _layers_of(rows):
        divergence = _per_example(rows, "jsd", layer)
        held = _per_example(rows, "constraint_held", layer)
        estimate = bootstrap_mean(divergence.to_numpy(), seed=seed)
        extra[f"jsd_layer_{layer}"] = estimate
        extra[f"held_layer_{layer}"] = float(held.mean())
        table.append(
            InterventionRow(
                _layer_label(layer, layers),
                layer,
                bootstrap_mean(_per_example(rows, "tvd", layer).to_numpy(), seed=seed),
                bootstrap_mean([], seed=seed),
            )
        )
        share = float((divergence > 0.5).mean())
        findings.append(
            f"Adversarial attention for the classification position in {_layer_label(layer, layers)} reaches a mean "
            f"Jensen–Shannon divergence of {estimate:.3f} bits from the original (1 = disjoint) while the output "
            f"moves by at most the allowed TVD; {100 * share:.0f} % of examples admit attention more than 0.5 bits "
            f"away, and the optimiser ended within the constraint for {100 * float(held.mean()):.0f} %."
        )
    return InterventionSection(
        spec.name, spec.title, spec.definition, spec.reading, spec.citation, table, findings, extra
    )


def head_masking_means(interventions: pd.DataFrame) -> pd.DataFrame:
    """Each masked head's mean of each statistic over the examples: rows ``layer, head, statistic, value``."""
    if interventions.empty:
        return pd.DataFrame(columns=["layer", "head", "statistic", "value"])
    rows = interventions[interventions["intervention"] == "head_masking"]
    return rows.groupby(["layer", "head", "statistic"])["value"].mean().reset_index()


def _head_statistic(means: pd.DataFrame, statistic: str) -> pd.Series:
    """One statistic of ``head_masking_means`` as a Series indexed by (layer, head), in (layer, head) order."""
    chosen = means[means["statistic"] == statistic].sort_values(["layer", "head"])
    return chosen.set_index(["layer", "head"])["value"]


def _head_masking(
    rows: pd.DataFrame, labels: pd.Series, layers: int, seed: int, *, means: pd.DataFrame, importance_min: float
) -> InterventionSection:
    """The heads' mean output change when masked alone, and the ``store.TOP_HEADS`` largest with their intervals."""
    spec = INTERVENTIONS["head_masking"]
    changes, flips = _head_statistic(means, "tvd"), _head_statistic(means, "flip")
    top_layer, top_head = cast("tuple[float, float]", changes.idxmax())  # a (layer, head) key: two numbers
    top_value = float(changes.max())
    negligible = float((changes < importance_min).mean())
    top_flips = 100 * float(flips.loc[(top_layer, top_head)])
    finding = (
        f"Masking a single head changes the output by a mean TVD of {changes.mean():.3f}; the most important head is "
        f"head {int(top_head) + 1} of layer {int(top_layer) + 1} (mean TVD {top_value:.3f}, {top_flips:.1f} % flips), "
        f"and {100 * negligible:.0f} % of heads change it by less than {importance_min:g}."
    )
    table = [
        InterventionRow(
            f"head {int(head) + 1} of layer {int(layer) + 1}",
            int(layer),
            bootstrap_mean(_head_values(rows, "tvd", layer, head), seed=seed),
            bootstrap_mean(_head_values(rows, "flip", layer, head), seed=seed),
        )
        for layer, head in changes.sort_values(ascending=False, kind="stable").index[: store.TOP_HEADS]
    ]
    return InterventionSection(spec.name, spec.title, spec.definition, spec.reading, spec.citation, table, [finding])


def _head_values(rows: pd.DataFrame, statistic: str, layer: float, head: float) -> np.ndarray:
    """The per-example values of one statistic for one masked head."""
    chosen = rows[(rows["statistic"] == statistic) & (rows["layer"] == layer) & (rows["head"] == head)]
    return chosen["value"].to_numpy()


def _tvd_distributions(interventions: pd.DataFrame, layers: int) -> dict[str, Sequence[float]]:
    panels: dict[str, Sequence[float]] = {}
    for name, statistic, title in (
        ("permutation", "median_tvd", "permuted (median)"),
        ("top_vs_random_erasure", "top_tvd", "top key erased"),
        ("top_vs_random_erasure", "random_tvd", "random key erased"),
        ("adversarial", "tvd", "adversarial"),
    ):
        rows = interventions[(interventions["intervention"] == name) & (interventions["statistic"] == statistic)]
        for layer in _layers_of(rows):
            values = rows[rows["layer"] == layer]["value"].dropna().to_numpy()
            if values.size:
                panels[f"{title}, L{layer + 1}"] = values
    rows = interventions[(interventions["intervention"] == "uniform") & (interventions["statistic"] == "tvd")]
    if not rows.empty:
        panels["uniform, all layers"] = rows[rows["layer"].isna()]["value"].dropna().to_numpy()
    return panels


def _head_maps(
    means: pd.DataFrame, head_agreement: pd.DataFrame, layers: int
) -> tuple[np.ndarray | None, np.ndarray | None, float, tuple[int, int] | None]:
    importance_series = _head_statistic(means, "tvd")
    if importance_series.empty:
        return None, None, float("nan"), None
    heads = int(importance_series.index.get_level_values("head").max()) + 1
    importance = _head_grid(importance_series, layers, heads)
    top_layer, top_head = cast("tuple[float, float]", importance_series.idxmax())  # a (layer, head) key: two numbers
    top = (int(top_layer), int(top_head))
    if head_agreement.empty:
        return importance, None, float("nan"), top
    agreement = _head_grid(head_agreement.groupby(["layer", "head"])["value"].mean(), layers, heads)
    both = ~np.isnan(importance) & ~np.isnan(agreement)
    if both.sum() <= 2:
        return importance, agreement, float("nan"), top
    correlation: Any = stats.spearmanr(importance[both], agreement[both])  # scipy's result class is untyped
    return importance, agreement, float(correlation.statistic), top


def _head_grid(values: pd.Series, layers: int, heads: int) -> np.ndarray:
    """A Series indexed by (layer, head) as a layers × heads array (NaN where a head has no value)."""
    grid = np.full((layers, heads), np.nan)
    index = values.index
    for layer, head, value in zip(
        index.get_level_values("layer"), index.get_level_values("head"), values.to_numpy(), strict=True
    ):
        grid[int(layer), int(head)] = value
    return grid
