"""Does the faithfulness-against-random evidence survive the choice of removal operator?

On the examples the second operator recomputed (``tasks.evaluate.removal_check``), the evidence is
classified twice with ``classify_faithfulness`` (docs/methodology.md, "The verdict"): from the AOPC
differences with the random ranking under the run's operator, and under the second operator (the
``…_removal2`` metric ids). The same examples on both sides, so only the operator differs. It
**survives** when both give the same classification (supports, contradicts or unclear) and the
intervals of the AOPC comprehensiveness gain overlap, and those of the sufficiency difference too.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from tasks.config import VerdictOptions
from tasks.evaluate.metrics import SECOND_REMOVAL_SUFFIX
from tasks.evaluate.statistics import Estimate, bootstrap_mean
from tasks.verdict.evidence import classify_faithfulness

SURVIVAL_COLUMNS = (
    "method",
    "examples",
    "first",
    "second",
    "comprehensiveness_first",
    "comprehensiveness_second",
    "sufficiency_first",
    "sufficiency_second",
    "survives",
)


def overlap(a: Estimate, b: Estimate) -> bool:
    """Whether two intervals share a point (False when either is undefined)."""
    return bool(a.low <= b.high and b.low <= a.high)


def _gain(metrics: pd.DataFrame, metric: str, method: str) -> pd.Series:
    """Per example: ``metric`` of ``method`` minus the random ranking's (mean over its draws)."""
    rows = metrics[metrics["metric"] == metric]
    per_method = rows.groupby(["method", "example_id"])["value"].mean()
    if method not in per_method.index.get_level_values(0) or "random" not in per_method.index.get_level_values(0):
        return pd.Series(dtype=float)
    own, random = per_method.xs(method), per_method.xs("random")
    return (own - random.reindex(own.index)).dropna()


def removal_survival(
    metrics: pd.DataFrame, methods: Sequence[str], options: VerdictOptions, seed: int = 0
) -> pd.DataFrame:
    """Per method, the evidence under both operators on the recomputed sample, and whether it survives.

    Args:
        metrics: The run's metric rows (``example_id``, ``method``, ``metric``, ``value``).
        methods: The explanations under test.
        options: The verdict thresholds.
        seed: Seed of the bootstrap intervals.

    Returns:
        One row per method that has second-operator values, columns ``SURVIVAL_COLUMNS`` (estimates as
        ``Estimate``); empty when the check did not run.
    """
    rows = []
    for method in methods:
        second = {
            name: _gain(metrics, f"aopc_{name}{SECOND_REMOVAL_SUFFIX}", method)
            for name in ("comprehensiveness", "sufficiency")
        }
        sample = second["comprehensiveness"].index
        if sample.empty:
            continue
        first = {
            name: _gain(metrics, f"aopc_{name}", method).reindex(sample).dropna()
            for name in ("comprehensiveness", "sufficiency")
        }
        estimates = {
            (name, side): bootstrap_mean(values[name].to_numpy(), seed=seed)
            for side, values in (("first", first), ("second", second))
            for name in ("comprehensiveness", "sufficiency")
        }
        classes = {
            side: classify_faithfulness(
                estimates[("comprehensiveness", side)], estimates[("sufficiency", side)], options
            )
            for side in ("first", "second")
        }
        survives = classes["first"] == classes["second"] and all(
            overlap(estimates[(name, "first")], estimates[(name, "second")])
            for name in ("comprehensiveness", "sufficiency")
        )
        rows.append(
            {
                "method": method,
                "examples": len(sample),
                "first": classes["first"],
                "second": classes["second"],
                **{f"{name}_{side}": estimate for (name, side), estimate in estimates.items()},
                "survives": survives,
            }
        )
    return pd.DataFrame(rows, columns=list(SURVIVAL_COLUMNS))
