"""Published findings beside this audit's numbers: does each one reproduce on this model and data?

The findings, their sources and their checks live in ``data/literature.json`` (not in the templates), so
a reviewer can see what was compared. Each check reads this run's numbers and says *reproduces*, *does
not reproduce*, or *not measured* (with the reason: a method or intervention the run did not include, or
a finding no single audit can test). The statements are directional; a match is never claimed without
the measurement behind it, and a finding whose every number is undefined (NaN) is *not measured*. An order
of methods on a metric is judged on the examples where both are defined, one step at a time, by the paired
mean difference and its 95 % bootstrap interval: *reproduces* when every step's interval lies above zero,
*does not reproduce* when a step's mean difference is not positive, and *not settled* when the means are in
the published order but an interval reaches zero (more examples would decide it).

The cutoffs that turn a paper's words into a test ("weak", "far better", "many", "rarely") are this audit's
own, not the papers': each is in ``data/literature.json`` and printed in the evidence as "this audit's
cutoff". "Weak" is a mean |ρ| below 0.3, the upper end of the 'weak' band of
``tasks.evaluate.statistics.STRENGTH_BANDS``; "far better" is a lead of at least 0.2 in mean ρ, the width of
one of those bands.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.evaluate.statistics import paired_comparison
from tasks.explain.registry import METHODS
from tasks.records import MethodFamily
from tasks.report.interventions import head_masking_means

FINDINGS = Path(__file__).resolve().parents[2] / "data" / "literature.json"
OWN = "this audit's cutoff"
"""How every evidence names a cutoff: the numbers that turn a paper's words into a test are not the paper's."""


@dataclass(frozen=True)
class Outcome:
    """One finding checked against this run."""

    id: str
    statement: str
    citation: str
    status: str  # "reproduces", "does not reproduce", "not settled", "not measured"
    evidence: str


@dataclass(frozen=True)
class RunNumbers:
    """The per-example numbers of one run that the checks read."""

    metrics: pd.DataFrame
    interventions: pd.DataFrame
    methods: tuple[str, ...]
    head_means: pd.DataFrame | None = None
    """Each masked head's mean statistics (``head_masking_means`` of ``interventions`` when None)."""

    def mean_agreement(self, method: str, reference: str, statistic: str) -> float:
        """Mean over examples of an agreement statistic between two methods (either orientation)."""
        rows = self.metrics[(self.metrics["metric"] == statistic)]
        pair = rows[((rows["method"] == method) & (rows["reference"] == reference))
                    | ((rows["method"] == reference) & (rows["reference"] == method))]  # fmt: skip
        return float(pair.groupby("example_id")["value"].mean().mean()) if not pair.empty else math.nan

    def mean_metric(self, method: str, metric: str) -> float:
        """Mean over examples of one method's metric (random draws averaged per example first)."""
        return float(self.per_example(method, metric).mean()) if method in self.methods else math.nan

    def per_example(self, method: str, metric: str) -> pd.Series:
        """One method's metric per example (random draws averaged per example first), indexed by example."""
        rows = self.metrics[(self.metrics["metric"] == metric) & (self.metrics["method"] == method)]
        return rows.groupby("example_id")["value"].mean()


def load_findings(path: Path = FINDINGS) -> list[dict[str, Any]]:
    """The findings of ``data/literature.json``."""
    return list(json.loads(path.read_text(encoding="utf-8"))["findings"])


def check_findings(numbers: RunNumbers, findings: list[dict[str, Any]] | None = None) -> list[Outcome]:
    """Every finding, checked against this run."""
    outcomes = []
    for finding in findings if findings is not None else load_findings():
        check = finding["check"]
        status, evidence = CHECKS[check["kind"]](numbers, check)
        outcomes.append(Outcome(finding["id"], finding["statement"], finding["citation"], status, evidence))
    return outcomes


def _missing(numbers: RunNumbers, needed: list[str]) -> str | None:
    absent = [m for m in needed if m not in numbers.methods]
    return f"the run did not compute {', '.join(absent)}" if absent else None


def _rho(value: float) -> str:
    return "undefined" if math.isnan(value) else f"{value:.2f}"


def _weak_correlation(numbers: RunNumbers, check: Mapping[str, Any]) -> tuple[str, str]:
    absent = _missing(numbers, [*check["methods"], *check["references"]])
    if absent:
        return "not measured", absent
    values = {(m, r): numbers.mean_agreement(m, r, check["statistic"])
              for m in check["methods"] for r in check["references"]}  # fmt: skip
    words = ", ".join(f"{m} vs {r} {_rho(v)}" for (m, r), v in values.items())
    defined = [v for v in values.values() if not math.isnan(v)]
    if not defined:
        return "not measured", f"every correlation is undefined here ({words})"
    weak = all(abs(v) < check["weak_below"] for v in defined)
    status = "reproduces" if weak else "does not reproduce"
    return status, (f"mean Spearman ρ here: {words} (weak: |ρ| below {check['weak_below']:g}, {OWN}, the upper "
                    "end of its 'weak' band)")  # fmt: skip


def _better_agreement(numbers: RunNumbers, check: Mapping[str, Any]) -> tuple[str, str]:
    """A "far better" lead: the better method's mean ρ leads the worse one's by at least ``far_better_by``.

    Only references with both correlations defined are compared (a paired comparison).
    """
    absent = _missing(numbers, [check["better"], check["worse"]])
    references = [r for r in check["references"] if r in numbers.methods]
    if absent or not references:
        return "not measured", absent or f"the run computed none of {', '.join(check['references'])}"
    pairs = {
        r: (numbers.mean_agreement(check["better"], r, check["statistic"]),
            numbers.mean_agreement(check["worse"], r, check["statistic"]))
        for r in references
    }  # fmt: skip
    pairs = {r: pair for r, pair in pairs.items() if not any(math.isnan(v) for v in pair)}
    if not pairs:
        return "not measured", f"every correlation with {', '.join(references)} is undefined here"
    better = float(np.mean([b for b, _ in pairs.values()]))
    worse = float(np.mean([w for _, w in pairs.values()]))
    margin = check["far_better_by"]
    status = "reproduces" if better - worse >= margin else "does not reproduce"
    return status, (f"mean Spearman ρ with {', '.join(pairs)}: {check['better']} {better:.2f}, "
                    f"{check['worse']} {worse:.2f}, a lead of {better - worse:+.2f} (far better: a lead of at "
                    f"least {margin:g}, {OWN})")  # fmt: skip


def _gradients_more_comprehensive(numbers: RunNumbers, check: Mapping[str, Any]) -> tuple[str, str]:
    aopc = {m: numbers.mean_metric(m, "aopc_comprehensiveness") for m in numbers.methods}
    measured = {m for m, value in aopc.items() if not math.isnan(value)}
    gradients = [m for m in check["gradients"] if m in measured]
    attention = [m for m in numbers.methods if m in ATTENTION_METHODS and m in measured]
    if not gradients or not attention or "random" not in measured:
        return "not measured", "the run lacks gradient methods, attention methods or the random ranking"
    best_gradient = max(gradients, key=lambda m: aopc[m])
    best_attention = max(attention, key=lambda m: aopc[m])
    beaten = [m for m in sorted(measured, key=numbers.methods.index) if m != "random" and not aopc[m] > aopc["random"]]
    reproduces = aopc[best_gradient] > aopc[best_attention] and not beaten
    evidence = (
        f"AOPC comprehensiveness: best gradient method {best_gradient} {aopc[best_gradient]:.3f}, best attention "
        f"method {best_attention} {aopc[best_attention]:.3f}, random {aopc['random']:.3f}"
    )
    if beaten:
        evidence += f"; not above random: {', '.join(beaten)}"
    return ("reproduces" if reproduces else "does not reproduce"), evidence


def _prunable_heads(numbers: RunNumbers, check: Mapping[str, Any]) -> tuple[str, str]:
    means = head_masking_means(numbers.interventions) if numbers.head_means is None else numbers.head_means
    per_head = means[means["statistic"] == "tvd"]["value"].dropna()
    if per_head.empty:
        return "not measured", "the run did not mask heads"
    share = float((per_head < check["small_change"]).mean())
    status = "reproduces" if share >= check["share_at_least"] else "does not reproduce"
    return status, (f"{100 * share:.0f} % of the {len(per_head)} heads change the output by a mean TVD below "
                    f"{check['small_change']:g} when masked (little change: a mean TVD below "
                    f"{check['small_change']:g}; many: at least {100 * check['share_at_least']:g} % of the heads; "
                    f"{OWN}s)")  # fmt: skip


def _erasure_flips(numbers: RunNumbers, check: Mapping[str, Any]) -> tuple[str, str]:
    rows = numbers.interventions
    rows = rows[rows["intervention"] == "top_vs_random_erasure"] if not rows.empty else rows
    top = float(rows[rows["statistic"] == "top_flip"]["value"].mean()) if not rows.empty else math.nan
    random = float(rows[rows["statistic"] == "random_flip"]["value"].mean()) if not rows.empty else math.nan
    if math.isnan(top) or math.isnan(random):
        return "not measured", "the run did not erase attention keys"
    reproduces = top < check["rarely_below"] and top - random < check["slightly_below"]
    return ("reproduces" if reproduces else "does not reproduce"), (
        f"erasing the most-attended token flips {100 * top:.1f} % of decisions, a random token {100 * random:.1f} % "
        f"(rarely: below {100 * check['rarely_below']:g} %; only slightly more often: by less than "
        f"{100 * check['slightly_below']:g} percentage points; {OWN}s)"
    )


def _metric_order(numbers: RunNumbers, check: Mapping[str, Any]) -> tuple[str, str]:
    """A published order of methods on one metric, each step a paired comparison on the same examples."""
    order: list[str] = check["order"]
    metric: str = check["metric"]
    absent = _missing(numbers, order)
    if absent:
        return "not measured", absent
    values = {method: numbers.per_example(method, metric) for method in order}
    means = ", ".join(f"{method} {_rho(float(values[method].mean()))}" for method in order)
    published = ", ".join(f"{method} {value:.3f}" for method, value in check["published"].items())
    steps, statuses = [], []
    for better, worse in itertools.pairwise(order):
        pair = pd.concat([values[better], values[worse]], axis=1, join="inner").dropna()
        if pair.empty:
            return "not measured", f"{metric} of {better} and {worse} is undefined on every example here"
        difference = paired_comparison(pair.iloc[:, 0].to_numpy(), pair.iloc[:, 1].to_numpy()).difference
        steps.append(f"{better} − {worse} {difference:+.3f} on {difference.n} examples")
        settled = not math.isnan(difference.low) and difference.low > 0
        statuses.append("reproduces" if settled else "not settled" if difference.mean > 0 else "does not reproduce")
    status = next((s for s in ("does not reproduce", "not settled") if s in statuses), "reproduces")
    evidence = (
        f"{metric} here (mean): {means}; paired differences with 95 % intervals: {'; '.join(steps)}; "
        f"published: {published} (an order holds when every interval lies above zero, {OWN})"
    )
    return status, evidence


def _not_measurable(numbers: RunNumbers, check: Mapping[str, Any]) -> tuple[str, str]:
    references = [m for m in numbers.methods if m in REFERENCE_METHODS]
    pairs = [numbers.mean_agreement(a, b, "kendall_tau") for i, a in enumerate(references) for b in references[i + 1 :]]
    context = f"; here the references agree with each other at mean Kendall τ {np.nanmean(pairs):.2f}" if pairs else ""
    return "not measured", check["reason"] + context


CHECKS: dict[str, Callable[[RunNumbers, Mapping[str, Any]], tuple[str, str]]] = {
    "weak_correlation": _weak_correlation,
    "better_agreement": _better_agreement,
    "gradients_more_comprehensive": _gradients_more_comprehensive,
    "prunable_heads": _prunable_heads,
    "erasure_flips": _erasure_flips,
    "metric_order": _metric_order,
    "not_measurable": _not_measurable,
}

ATTENTION_METHODS = tuple(name for name, spec in METHODS.items() if spec.family == MethodFamily.ATTENTION)
REFERENCE_METHODS = tuple(name for name, spec in METHODS.items() if spec.family == MethodFamily.REFERENCE)
