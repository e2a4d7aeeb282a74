"""Which charts the report shows, assembled from the rows and tables (the drawing is in ``charts``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from tasks.config import AuditConfig
from tasks.explain.registry import spec_of
from tasks.report import charts
from tasks.report.aggregates import (
    BASELINE,
    AgreementRow,
    FaithfulnessRow,
    PlausibilityRow,
    comprehensiveness_gain,
    per_example_pairs,
)


def metric_charts(
    metrics: pd.DataFrame,
    curves: pd.DataFrame,
    faithfulness: Sequence[FaithfulnessRow],
    agreement: Sequence[AgreementRow],
    families: Mapping[str, str],
    titles: Mapping[str, str],
) -> dict[str, str]:
    """AOPC bars and curves, agreement distributions and the completeness histogram (those that apply).

    ``curves`` holds the mean of each metric at each rationale size per method (``store.VIEWS``).
    """
    out: dict[str, str] = {}
    if faithfulness:
        out["faithfulness"] = _aopc_bars(faithfulness, families, titles)
        out["curves"] = _aopc_curves(curves, families, titles)
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


def _aopc_bars(faithfulness: Sequence[FaithfulnessRow], families: Mapping[str, str], titles: Mapping[str, str]) -> str:
    """AOPC comprehensiveness and sufficiency per method, the random baseline dashed."""
    random_row = next((r for r in faithfulness if r.method == BASELINE), None)
    return charts.estimate_bars(
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


def _aopc_curves(means: pd.DataFrame, families: Mapping[str, str], titles: Mapping[str, str]) -> str:
    """Mean comprehensiveness and sufficiency at each rationale size k (rows ``metric, method, k, value``)."""
    curves = []
    for metric in ("comprehensiveness", "sufficiency"):
        rows = means[means["metric"] == metric] if not means.empty else None
        points = (
            {
                str(method): [(100 * k, v) for k, v in zip(group["k"], group["value"], strict=True)]
                for method, group in rows.groupby("method", sort=False)
            }
            if rows is not None
            else {}
        )
        curves.append((f"{metric.capitalize()} by rationale size", {m: points[m] for m in titles if m in points}))
    return charts.curves(curves, families, titles, "rationale size k (% of content tokens)")


def plausibility_chart(plausibility: Sequence[PlausibilityRow], faithfulness: Sequence[FaithfulnessRow]) -> str:
    """Each method's plausibility (AUPRC) against its faithfulness (AOPC comprehensiveness gain over random)."""
    return charts.scatter(
        [
            (row.title, row.auprc.mean, comprehensiveness_gain(row.method, faithfulness), row.family)
            for row in plausibility
        ],
        "plausibility: AUPRC against human rationales",
        "faithfulness: AOPC comprehensiveness gain over random",
    )


def sanity_chart(rows: pd.DataFrame, config: AuditConfig) -> str:
    """Mean absolute-value Spearman ρ with the original explanation at each stage of the randomisation cascade."""
    means = rows.groupby(["method", "stage", "randomised"], sort=False)["spearman_absolute"].mean().reset_index()
    curves: dict[str, list[tuple[str, float]]] = {}
    for method, group in means.groupby("method", sort=False):
        ordered = group.sort_values("stage")
        curves[str(method)] = [
            (str(stage), float(value))
            for stage, value in zip(ordered["randomised"], ordered["spearman_absolute"], strict=True)
        ]
    families = {m: spec_of(m).family.value for m in curves}
    titles = {m: spec_of(m).title for m in curves}
    return charts.cascade(curves, families, titles, config.sanity.similarity_max)


def matrix_chart(matrix: pd.DataFrame, methods: Sequence[str]) -> str:
    """Mean Kendall τ of every method against every other, over all examples."""
    overall = matrix[(matrix["slice"] == "overall") & (matrix["statistic"] == "kendall_tau")]
    shown = [m for m in methods if m in set(overall["method"]) | set(overall["other"])]
    index = {m: i for i, m in enumerate(shown)}
    values = np.full((len(shown), len(shown)), np.nan)
    np.fill_diagonal(values, 1.0)
    for method, other, mean in zip(overall["method"], overall["other"], overall["mean"], strict=True):
        if method in index and other in index:
            values[index[method], index[other]] = values[index[other], index[method]] = mean
    return charts.matrix(values, [spec_of(m).title for m in shown], "Mean Kendall τ, every method against every other")
