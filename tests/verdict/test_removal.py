"""The survival rule of the removal-operator check, on hand-made metric frames."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.config import VerdictOptions
from tasks.evaluate.statistics import Estimate
from tasks.verdict.removal import SURVIVAL_COLUMNS, overlap, removal_survival

N = 30


def _frame(first: tuple[float, float], second: tuple[float, float] | None, sampled: int = N) -> pd.DataFrame:
    """AOPC rows: the method's comprehensiveness and sufficiency gains over random are ``(comp, suff)``.

    The random ranking scores 0.1 everywhere; a small alternating wobble gives the intervals a width.
    """
    rows = []
    for i in range(N):
        wobble = 0.01 if i % 2 else -0.01
        for suffix, gains, count in (("", first, N), ("_removal2", second, sampled)):
            if gains is None or i >= count:
                continue
            for name, gain in zip(("comprehensiveness", "sufficiency"), gains, strict=True):
                metric = f"aopc_{name}{suffix}"
                rows.append({"example_id": str(i), "method": "random", "metric": metric, "value": 0.1})
                rows.append(
                    {"example_id": str(i), "method": "attention_last", "metric": metric, "value": 0.1 + gain + wobble}
                )
    return pd.DataFrame(rows)


def test_overlap_by_hand():
    assert overlap(Estimate(0.5, 0.4, 0.6, 9), Estimate(0.7, 0.6, 0.8, 9))  # touching ends
    assert not overlap(Estimate(0.5, 0.4, 0.6, 9), Estimate(0.7, 0.61, 0.8, 9))
    assert not overlap(Estimate(0.5, float("nan"), float("nan"), 1), Estimate(0.5, 0.4, 0.6, 9))


def test_the_same_evidence_under_both_operators_survives():
    table = removal_survival(_frame((0.3, -0.2), (0.3, -0.2)), ["attention_last"], VerdictOptions())
    row = table.iloc[0]
    assert (row["first"], row["second"], row["survives"], row["examples"]) == ("supports", "supports", True, N)


def test_a_changed_classification_does_not_survive():
    row = removal_survival(_frame((0.3, -0.2), (0.0, -0.2)), ["attention_last"], VerdictOptions()).iloc[0]
    assert (row["first"], row["second"], row["survives"]) == ("supports", "contradicts", False)


def test_the_same_classification_with_disjoint_intervals_does_not_survive():
    row = removal_survival(_frame((0.3, -0.2), (0.6, -0.2)), ["attention_last"], VerdictOptions()).iloc[0]
    assert (row["first"], row["second"]) == ("supports", "supports")
    assert row["comprehensiveness_second"].low > row["comprehensiveness_first"].high
    assert not row["survives"]


def test_only_the_recomputed_examples_are_compared():
    frame = _frame((0.3, -0.2), (0.3, -0.2), sampled=10)
    frame.loc[(frame["metric"] == "aopc_comprehensiveness") & frame["example_id"].astype(int).ge(10), "value"] += 5
    row = removal_survival(frame, ["attention_last"], VerdictOptions()).iloc[0]
    assert row["examples"] == 10
    assert row["comprehensiveness_first"].mean == pytest.approx(0.3, abs=1e-9)


def test_without_the_check_there_is_nothing_to_judge():
    table = removal_survival(_frame((0.3, -0.2), None), ["attention_last"], VerdictOptions())
    assert table.empty and list(table.columns) == list(SURVIVAL_COLUMNS)
    assert removal_survival(_frame((0.3, -0.2), (0.3, -0.2)), ["rollout"], VerdictOptions()).empty
