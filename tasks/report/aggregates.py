"""Dataset-level rows of the report: faithfulness, agreement, plausibility, sanity, completeness.

Pure functions of the stored tables (as DataFrames). Every mean comes with a 95 % percentile
bootstrap interval over examples (``bootstrap_mean``); random draws of the baseline are averaged per
example first. The formulas of the metrics are in ``docs/methodology.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import numpy as np
import pandas as pd

from tasks.config import AuditConfig, IntegrationRule
from tasks.evaluate.statistics import (
    Estimate,
    PairedComparison,
    bootstrap_mean,
    correlation_strength,
    paired_comparison,
)
from tasks.explain.gradients import steps_run
from tasks.explain.registry import spec_of
from tasks.records import MethodFamily

BASELINE = "random"
"""The control every explanation must beat (DeYoung et al. 2020 compare with a random ranking)."""


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

    @property
    def reading(self) -> str:
        """The quadrant, or 'chance level' for the random ranking (the table's last column)."""
        return self.quadrant if self.method != BASELINE else "chance level"


@dataclass(frozen=True)
class SanityRow:
    """One method's sanity check: how similar it stays to itself as the model is destroyed."""

    method: str
    title: str
    family: str
    fully_randomised: Estimate
    fully_randomised_signed: Estimate
    result: str  # "passes", "fails", "unclear"
    examples: int  # in the check's sample (``--sanity-tokens``)


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


class SegmentShare(NamedTuple):
    """For text pairs: one method's share of its score mass Σ|s_j| on the second text (a ``(title, share)`` pair)."""

    title: str
    second: Estimate

    @property
    def first(self) -> float:
        """The mean share on the first text: ``1 − second``."""
        return 1 - self.second.mean


def per_example(metrics: pd.DataFrame, metric: str, *, k: float | None = None) -> pd.DataFrame:
    """Per-example values of one metric, methods as columns; draws (random baseline) averaged."""
    rows = metrics[metrics["metric"] == metric]
    if k is not None:
        rows = rows[np.isclose(rows["k"].astype(float), k)]
    if rows.empty:
        return pd.DataFrame()
    return rows.groupby(["example_id", "method"])["value"].mean().unstack("method")


def per_example_pairs(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per-example values of a pairwise metric, ``(method, reference)`` columns, draws averaged."""
    rows = metrics[metrics["metric"] == metric]
    return rows.groupby(["example_id", "method", "reference"])["value"].mean().unstack(["method", "reference"])


def faithfulness_rows(metrics: pd.DataFrame, methods: Sequence[str], seed: int) -> list[FaithfulnessRow]:
    """AOPC comprehensiveness and sufficiency (DeYoung et al. 2020) and τ with leave-one-out, per method.

    Each method other than the random ranking is compared with it on the same examples (the paired
    difference of the per-example values, with its bootstrap interval).
    """
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
                comprehensiveness=bootstrap_mean(comprehensiveness[method].to_numpy(), seed=seed),
                sufficiency=bootstrap_mean(sufficiency[method].to_numpy(), seed=seed),
                taucorr_loo=bootstrap_mean(tau[method].to_numpy(), seed=seed) if method in tau else bootstrap_mean([]),
                comprehensiveness_vs_random=(
                    paired_comparison(
                        comprehensiveness[method].to_numpy(), comprehensiveness[BASELINE].to_numpy(), seed=seed
                    )
                    if versus_random
                    else None
                ),
                sufficiency_vs_random=(
                    paired_comparison(sufficiency[method].to_numpy(), sufficiency[BASELINE].to_numpy(), seed=seed)
                    if versus_random
                    else None
                ),
            )
        )
    return rows


def agreement_rows(
    metrics: pd.DataFrame, examples: pd.DataFrame, methods: Sequence[str], seed: int
) -> list[AgreementRow]:
    """Kendall τ-b, Spearman ρ and top-k overlap of every explanation with every reference attribution."""
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
                    kendall_tau=bootstrap_mean(kendall.to_numpy(), seed=seed),
                    spearman_rho=bootstrap_mean(values.loc["spearman_rho"].to_numpy(), seed=seed),
                    top_k_overlap=bootstrap_mean(values.loc["top_k_overlap"].to_numpy(), seed=seed),
                    kendall_by_class={
                        name: bootstrap_mean(kendall[kendall.index.map(predicted) == name].to_numpy(), seed=seed)
                        for name in sorted(predicted.unique())
                    },
                )
            )
    return rows


def comprehensiveness_gain(method: str, faithfulness: Sequence[FaithfulnessRow]) -> float:
    """The mean paired AOPC comprehensiveness difference with random (0 when not compared)."""
    row = next((r for r in faithfulness if r.method == method), None)
    if row is None or row.comprehensiveness_vs_random is None:
        return 0.0
    return row.comprehensiveness_vs_random.difference.mean


def plausibility_rows(
    metrics: pd.DataFrame, faithfulness: Sequence[FaithfulnessRow], seed: int
) -> list[PlausibilityRow]:
    """Every method against the human rationales (empty when the corpus has none).

    Token F1 and IOU-F1 (share of examples with IOU ≥ 0.5) compare the top-|h| tokens with the
    rationale h, AUPRC ranks all tokens (DeYoung et al. 2020). A method is plausible when the lower end
    of its AUPRC interval is above the random ranking's mean AUPRC.
    """
    if not metrics["metric"].isin(["auprc"]).any():
        return []
    f1, iou, area = per_example(metrics, "token_f1"), per_example(metrics, "token_iou"), per_example(metrics, "auprc")
    chance = float(area[BASELINE].mean()) if BASELINE in area else float("nan")
    rows = []
    for row in faithfulness:
        if row.method not in area:
            continue
        estimate = bootstrap_mean(area[row.method].to_numpy(), seed=seed)
        matched = (iou[row.method].dropna() >= 0.5).astype(float)
        rows.append(
            PlausibilityRow(
                method=row.method,
                title=row.title,
                family=row.family,
                token_f1=bootstrap_mean(f1[row.method].to_numpy(), seed=seed),
                iou_f1=bootstrap_mean(matched.to_numpy(), seed=seed),
                auprc=estimate,
                plausible=row.method != BASELINE and not math.isnan(chance) and estimate.low > chance,
                faithful=row.beats_random == "yes",
            )
        )
    return rows


def sanity_rows(rows: pd.DataFrame, config: AuditConfig, seed: int) -> list[SanityRow]:
    """Per method: similarity to the original explanation with every layer randomised, and the result.

    Model-parameter randomisation (Adebayo et al. 2018): a method passes when the interval of its mean
    absolute-value Spearman ρ with the original lies below ``sanity.similarity_max``, fails when it
    lies above, and is unclear otherwise.
    """
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
                      bootstrap_mean(group["spearman"].to_numpy(), seed=seed), result, group["example_id"].nunique())
        )  # fmt: skip
    return out


def consistency(matrix: pd.DataFrame, config: AuditConfig) -> dict[str, str]:
    """The references' agreement with each other, overall: the basis of the 'references disagree' rule."""
    if matrix.empty:
        return {}
    references = set(config.verdict.references)
    rows = matrix[(matrix["slice"] == "overall") & (matrix["statistic"] == "kendall_tau")
                  & matrix["method"].isin(references) & matrix["other"].isin(references)]  # fmt: skip
    if rows.empty:
        return {}
    pairs = "; ".join(
        f"{spec_of(method).title.lower()} vs {spec_of(other).title.lower()}: τ {mean:.2f} [{low:.2f}, {high:.2f}]"
        for method, other, mean, low, high in zip(
            rows["method"], rows["other"], rows["mean"], rows["low"], rows["high"], strict=True
        )
    )
    return {"pairs": pairs, "threshold": f"{config.verdict.consistency_min:g}"}


def completeness(metrics: pd.DataFrame, schedule: tuple[int, ...], rule: IntegrationRule) -> dict[str, str]:
    """Integrated gradients' completeness Σ_j IG_j ≈ z_ŷ(e) − z_ŷ(e′) (Sundararajan et al. 2017), summarised.

    With a schedule of several sizes and the steps each example was kept at (``ig_steps``):
    how many examples each size of ``schedule`` kept, and the mean interpolation steps run per example
    (every size up to the one kept: ``tasks.explain.gradients.steps_run``).
    """
    rows = metrics[metrics["method"] == "integrated_gradients"]
    if rows.empty:
        return {}
    by_metric = rows.groupby("metric")["value"]
    errors = np.abs(by_metric.get_group("completeness_error").to_numpy())
    holds = by_metric.get_group("completeness_holds").to_numpy()
    summary = {
        "examples": f"{errors.shape[0]}",
        "holds": f"{100 * holds.mean():.1f} %",
        "median_abs_error": f"{np.median(errors):.2g}",
        "max_abs_error": f"{errors.max():.2g}",
        "median_relative_error": f"{np.nanmedian(by_metric.get_group('completeness_relative_error')):.2g}",
        "steps": "",
        "steps_run": "",
    }
    if len(schedule) > 1 and "ig_steps" in by_metric.groups:
        kept = by_metric.get_group("ig_steps").astype(int)
        counts = kept.value_counts()
        summary["steps"] = "; ".join(
            f"{steps} steps: {counts.get(steps, 0)} ({100 * counts.get(steps, 0) / len(kept):.1f} %)"
            for steps in schedule
        )
        summary["steps_run"] = f"{np.mean([steps_run(schedule, int(steps), rule) for steps in kept]):.1f}"
    return summary


def segment_shares(metrics: pd.DataFrame, methods: Sequence[str], seed: int) -> list[SegmentShare]:
    """For text pairs: each method's mean share of its mass on the second text (empty for single texts)."""
    shares = per_example(metrics, "second_text_share")
    return [
        SegmentShare(spec_of(m).title, bootstrap_mean(shares[m].to_numpy(), seed=seed)) for m in methods if m in shares
    ]


def failures(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """The failed examples, by id, with their error and number of attempts."""
    if rows.empty:
        return []
    ordered = rows.sort_values("example_id")
    return [
        {"example_id": example_id, "error": f"{error_type}: {message}", "attempts": int(attempts)}
        for example_id, error_type, message, attempts in zip(
            ordered["example_id"], ordered["error_type"], ordered["message"], ordered["attempts"], strict=True
        )
    ]


def not_applicable(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """The configured work this model's family cannot support, by kind and name."""
    if rows.empty:
        return []
    return cast("list[dict[str, Any]]", rows.sort_values(["kind", "name"]).to_dict("records"))  # str column names
