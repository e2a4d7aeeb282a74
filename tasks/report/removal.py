"""The report's rows for the removal operator: survival under the second operator and the soft metrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from tasks.config import VerdictOptions
from tasks.evaluate.statistics import Estimate, bootstrap_mean
from tasks.explain.registry import spec_of
from tasks.records import UNDER_TEST
from tasks.verdict.removal import removal_survival


@dataclass(frozen=True)
class SurvivalRow:
    """One explanation's faithfulness-against-random evidence under both removal operators."""

    method: str
    examples: int
    first: str
    second: str
    comprehensiveness_first: Estimate
    comprehensiveness_second: Estimate
    survives: bool


@dataclass(frozen=True)
class SoftRow:
    """One method's mean Soft-NC and Soft-NS (Zhao & Aletras 2023) with 95 % intervals."""

    method: str
    soft_comprehensiveness: Estimate
    soft_sufficiency: Estimate


def survival_rows(
    metrics: pd.DataFrame, methods: Sequence[str], options: VerdictOptions, seed: int
) -> list[SurvivalRow]:
    """``tasks.verdict.removal.removal_survival`` for the explanations under test, as report rows."""
    under_test = [m for m in methods if spec_of(m).family in UNDER_TEST]
    table = removal_survival(metrics, under_test, options, seed)
    return [
        SurvivalRow(
            str(row["method"]),
            int(row["examples"]),
            row["first"],
            row["second"],
            row["comprehensiveness_first"],
            row["comprehensiveness_second"],
            bool(row["survives"]),
        )
        for row in table.to_dict("records")
    ]


def soft_rows(metrics: pd.DataFrame, methods: Sequence[str], seed: int) -> list[SoftRow]:
    """Per method, the mean soft metrics over examples (the random baseline's draws averaged first)."""
    soft = metrics[metrics["metric"].isin(["soft_comprehensiveness", "soft_sufficiency"])]
    if soft.empty:
        return []
    per_example = soft.groupby(["method", "metric", "example_id"])["value"].mean()
    rows = []
    for method in [*methods, "random"] if "random" not in methods else methods:
        if method not in per_example.index.get_level_values(0):
            continue
        values = per_example.xs(method)
        estimates = {
            metric: bootstrap_mean(values.xs(metric).to_numpy(), seed=seed)
            if metric in values.index.get_level_values(0)
            else Estimate(float("nan"), float("nan"), float("nan"), 0)
            for metric in ("soft_comprehensiveness", "soft_sufficiency")
        }
        rows.append(SoftRow(method, estimates["soft_comprehensiveness"], estimates["soft_sufficiency"]))
    return rows
