"""The seed baseline in the report: seed variance beside the adversary, and each explanation's stability.

Wiegreffe & Pinter (2019) test adversarial attention against the variance of attention between models
trained with other seeds: it means something only if it moves attention further than a seed does while
keeping the prediction. Per layer the adversarial intervention edited:

- the seeds' attention distance (``attention_jsd``, ``attention_tvd``; per example the mean over seed
  models), their output change (``output_tvd``) and the share of predictions they keep;
- the adversarial JSD of the same examples (the ``interventions`` table, which keeps ``TVD ≤ ε``);
- ``beyond_seeds``: the share of examples whose adversarial JSD exceeds the largest seed JSD.

Per explanation method: its Kendall τ with itself across seeds (per example the mean over seed models)
beside its agreement with the references (per example the mean τ over the references other than itself),
compared per example. It **changes with the seed** when the interval of the paired difference lies below
0 (it agrees with itself across seeds less than with the references), is **stable** when it lies above,
and **unclear** otherwise. Every mean has a 95 % bootstrap interval over examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.evaluate.statistics import Estimate, PairedComparison, bootstrap_mean, paired_comparison
from tasks.explain.registry import spec_of
from tasks.report import charts


@dataclass(frozen=True)
class LayerDistance:
    """Seed variance and the adversary at one layer.

    Attributes:
        layer: The layer (0 = first).
        attention_jsd: The seeds' JSD from the audited attention (bits).
        attention_tvd: The seeds' TVD from the audited attention.
        output_tvd: The seeds' TVD from the audited output distribution.
        prediction_kept: The share of seed predictions equal to the audited model's (per example the mean
            over seed models).
        adversarial_jsd: The adversary's JSD on the same examples (None when it did not run).
        beyond_seeds: The share of those examples where the adversary's JSD exceeds every seed's.
    """

    layer: int
    attention_jsd: Estimate
    attention_tvd: Estimate
    output_tvd: Estimate
    prediction_kept: Estimate
    adversarial_jsd: Estimate | None
    beyond_seeds: float | None


@dataclass(frozen=True)
class SeedStability:
    """One explanation's agreement with itself across seeds, beside its agreement with the references."""

    method: str
    title: str
    family: str
    across_seeds: Estimate
    with_references: Estimate
    difference: PairedComparison | None
    result: str  # "changes with the seed", "stable", "unclear", "no references"


@dataclass(frozen=True)
class SeedReport:
    """The seed baseline of one run."""

    models: Sequence[str]
    examples: int
    layers: Sequence[LayerDistance]
    stability: Sequence[SeedStability]


def seed_report(
    distances: pd.DataFrame,
    agreement: pd.DataFrame,
    interventions: pd.DataFrame,
    metrics: pd.DataFrame,
    references: Sequence[str],
    seed: int,
) -> SeedReport | None:
    """The seed baseline's rows (None when the run has none)."""
    if distances.empty:
        return None
    layers = [
        layer_distance(layer, distances[distances["layer"] == layer], _adversarial(interventions, layer), seed)
        for layer in _layers(distances)
    ]
    stability = [] if agreement.empty else stability_rows(agreement, metrics, references, seed)
    return SeedReport(
        models=sorted(Path(name).name for name in distances["seed_model"].unique()),
        examples=int(distances["example_id"].nunique()),
        layers=layers,
        stability=stability,
    )


def layer_distance(layer: int, rows: pd.DataFrame, adversarial: pd.Series | None, seed: int) -> LayerDistance:
    """The seed statistics of one layer, per example averaged over seed models, and the adversary beside them."""
    per_example = rows.pivot_table(index="example_id", columns="statistic", values="value", aggfunc="mean")
    largest = rows[rows["statistic"] == "attention_jsd"].groupby("example_id")["value"].max()
    adversarial_jsd, beyond = None, None
    if adversarial is not None:
        shared = largest.index.intersection(adversarial.index)
        adversarial_jsd = bootstrap_mean(adversarial[shared].to_numpy(), seed=seed)
        beyond = float((adversarial[shared] > largest[shared]).mean()) if len(shared) else None
    return LayerDistance(
        layer=layer,
        attention_jsd=bootstrap_mean(per_example["attention_jsd"].to_numpy(), seed=seed),
        attention_tvd=bootstrap_mean(per_example["attention_tvd"].to_numpy(), seed=seed),
        output_tvd=bootstrap_mean(per_example["output_tvd"].to_numpy(), seed=seed),
        prediction_kept=bootstrap_mean(per_example["prediction_kept"].to_numpy(), seed=seed),
        adversarial_jsd=adversarial_jsd,
        beyond_seeds=beyond,
    )


def stability_rows(
    agreement: pd.DataFrame, metrics: pd.DataFrame, references: Sequence[str], seed: int
) -> list[SeedStability]:
    """Per method: τ with itself across seeds against τ with the references, per example, paired."""
    across = agreement.groupby(["method", "example_id"], sort=False)["kendall_tau"].mean()
    rows = []
    for method in agreement["method"].unique():
        own = across[method]
        others = [reference for reference in references if reference != method]
        with_references = _reference_agreement(metrics, method, others).reindex(own.index)
        spec = spec_of(method)
        if with_references.notna().any():
            difference = paired_comparison(own.to_numpy(), with_references.to_numpy(), seed=seed)
            interval = difference.difference
            result = "changes with the seed" if interval.high < 0 else "stable" if interval.low > 0 else "unclear"
        else:
            difference, result = None, "no references"
        rows.append(
            SeedStability(
                method=method,
                title=spec.title,
                family=spec.family.value,
                across_seeds=bootstrap_mean(own.to_numpy(), seed=seed),
                with_references=bootstrap_mean(with_references.to_numpy(), seed=seed),
                difference=difference,
                result=result,
            )
        )
    return rows


def seed_chart(distances: pd.DataFrame, interventions: pd.DataFrame) -> str:
    """Box plots per layer: the seeds' JSD from the audited attention beside the adversary's."""
    panels = []
    jsd = distances[distances["statistic"] == "attention_jsd"]
    for layer in _layers(jsd):
        values = {"seeds": jsd[jsd["layer"] == layer].groupby("example_id")["value"].mean().tolist()}
        adversarial = _adversarial(interventions, layer)
        if adversarial is not None:
            values["adversarial"] = adversarial.tolist()
        panels.append((f"layer {layer}", values))
    titles = {"seeds": "other seeds", "adversarial": "adversarial attention"}
    return charts.distributions(panels, titles, "JSD from the audited model's attention (bits)")


def seed_sentences(report: SeedReport | None) -> list[str]:
    """One sentence for the executive summary: the adversary against seed variance, and unstable explanations."""
    if report is None:
        return []
    parts = []
    for row in report.layers:
        if row.adversarial_jsd is None or row.beyond_seeds is None:
            parts.append(f"at layer {row.layer} the seeds' attention differs by JSD {row.attention_jsd.mean:.2f}")
            continue
        parts.append(
            f"at layer {row.layer} the adversarial attention lies further from the original than every seed's "
            f"on {100 * row.beyond_seeds:.0f} % of examples (mean JSD {row.adversarial_jsd.mean:.2f} against "
            f"{row.attention_jsd.mean:.2f} for the seeds, whose predictions agree on "
            f"{100 * row.prediction_kept.mean:.0f} %)"
        )
    unstable = [row.title.lower() for row in report.stability if row.result == "changes with the seed"]
    if unstable:
        parts.append(
            "these explanations change with the seed more than they agree with the references: " + ", ".join(unstable)
        )
    plural = "s" if len(report.models) != 1 else ""
    sentence = f"Seed baseline (Wiegreffe & Pinter 2019), {len(report.models)} other fine-tuning{plural} on " + (
        f"{report.examples} examples: " + "; ".join(parts) if parts else f"{report.examples} examples"
    )
    return [sentence + "."]


def _layers(rows: pd.DataFrame) -> list[int]:
    """The layers of the seed rows, in order."""
    return sorted(int(layer) for layer in rows["layer"].unique().tolist())


def _adversarial(interventions: pd.DataFrame, layer: int) -> pd.Series | None:
    """The adversarial JSD per example at ``layer`` (None when the run has none there)."""
    if interventions.empty:
        return None
    rows = interventions[
        (interventions["intervention"] == "adversarial")
        & (interventions["statistic"] == "jsd")
        & (interventions["layer"] == layer)
    ]
    return None if rows.empty else rows.groupby("example_id")["value"].mean()


def _reference_agreement(metrics: pd.DataFrame, method: str, references: Sequence[str]) -> pd.Series:
    """Per example, the mean Kendall τ between ``method`` and ``references`` (stored in either orientation)."""
    if metrics.empty or not references:
        return pd.Series(dtype=np.float64)
    tau = metrics[(metrics["metric"] == "kendall_tau") & (metrics["draw"] == 0)]
    pairs = tau[
        ((tau["method"] == method) & tau["reference"].isin(references))
        | ((tau["reference"] == method) & tau["method"].isin(references))
    ]
    return pairs.groupby("example_id")["value"].mean()
