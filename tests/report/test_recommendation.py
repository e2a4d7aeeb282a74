"""The recommendation: which explanation to show users, chosen by evidence that does not favour one by construction."""

from __future__ import annotations

import math

import pandas as pd

from tasks.config import VerdictOptions
from tasks.report.verdicts import summarise_verdicts

EVIDENCE = ("agreement", "comprehensiveness", "sufficiency", "erasure", "sensitivity", "consistency")


def overall_row(method: str, verdict: str) -> dict[str, object]:
    row: dict[str, object] = {
        "method": method,
        "slice": "overall",
        "slice_value": "all examples",
        "n": 100,
        "verdict": verdict,
        "reason": "constructed",
        "agreement": "unclear",
        "faithfulness": "unclear",
        "interventions": "unclear",
    }
    for name in EVIDENCE:
        row |= {f"{name}_mean": 0.1, f"{name}_low": 0.0, f"{name}_high": 0.2}
    return row


def test_without_a_faithful_attention_method_the_reference_is_chosen_by_sufficiency_not_comprehensiveness() -> None:
    """Leave-one-out has the best comprehensiveness (its scores are single-token removals, the quantity
    comprehensiveness measures), integrated gradients the best (lowest) sufficiency: sufficiency decides."""
    verdicts = pd.DataFrame([overall_row("attention_last", "inconclusive"), overall_row("rollout", "not faithful")])
    sufficiency = {"leave_one_out": 0.20, "integrated_gradients": 0.05, "saliency": math.nan, "random": 0.01}

    report = summarise_verdicts(verdicts, sufficiency, VerdictOptions())

    assert report.recommended == "integrated_gradients"
    recommendation = next(s for s in report.sentences if s.startswith("Recommendation:"))
    assert "AOPC sufficiency 0.050" in recommendation
    assert "not by comprehensiveness" in recommendation and "leave-one-out" in recommendation


def test_leave_one_out_is_recommended_when_its_sufficiency_is_best() -> None:
    verdicts = pd.DataFrame([overall_row("attention_last", "inconclusive")])

    report = summarise_verdicts(verdicts, {"leave_one_out": 0.02, "integrated_gradients": 0.05}, VerdictOptions())

    assert report.recommended == "leave_one_out"
