"""The evidence of the verdict: its thresholds, the combination rule and reference consistency."""

from __future__ import annotations

import pytest

from tasks.config import VerdictOptions
from tasks.evaluate.statistics import Estimate
from tasks.verdict.evidence import classify_agreement, classify_faithfulness, classify_interventions, judge
from tests.verdict.cases import OPTIONS, SUPPORTING, interval

NONE = Estimate(float("nan"), float("nan"), float("nan"), 0)


@pytest.mark.parametrize(
    ("estimate", "evidence"),
    [
        (interval(0.4, 0.3, 0.5), "supports"),
        (interval(0.1, 0.05, 0.15), "contradicts"),
        (interval(0.2, 0.15, 0.25), "unclear"),
        (NONE, "unclear"),
    ],
)
def test_agreement_is_judged_by_where_its_interval_lies(estimate, evidence):
    assert classify_agreement(estimate, OPTIONS) == evidence


@pytest.mark.parametrize(
    ("comprehensiveness", "sufficiency", "evidence"),
    [
        (interval(0.1, 0.08, 0.12), interval(-0.1, -0.12, -0.08), "supports"),
        (interval(0.1, 0.08, 0.12), interval(0.0, -0.02, 0.02), "unclear"),
        (interval(0.005, -0.01, 0.015), interval(-0.1, -0.12, -0.08), "contradicts"),
        (interval(0.03, -0.01, 0.07), interval(-0.1, -0.12, -0.08), "unclear"),
    ],
)
def test_faithfulness_against_random_needs_both_measures_and_a_margin(comprehensiveness, sufficiency, evidence):
    assert classify_faithfulness(comprehensiveness, sufficiency, OPTIONS) == evidence


@pytest.mark.parametrize(
    ("erasure", "sensitivity", "evidence"),
    [
        (interval(0.05, 0.03, 0.07), interval(0.2, 0.15, 0.25), "supports"),
        (interval(-0.01, -0.02, 0.0), interval(0.2, 0.15, 0.25), "contradicts"),
        (interval(0.05, 0.03, 0.07), interval(0.02, 0.01, 0.03), "contradicts"),
        (interval(0.05, -0.01, 0.1), interval(0.2, 0.15, 0.25), "unclear"),
        (NONE, NONE, "unclear"),
    ],
)
def test_interventions_support_only_when_the_output_follows_the_attention(erasure, sensitivity, evidence):
    assert classify_interventions(erasure, sensitivity, OPTIONS) == evidence


def test_all_evidence_in_favour_is_faithful():
    assert judge(SUPPORTING, OPTIONS, n=100).verdict == "faithful"


def test_removal_no_better_than_random_is_not_faithful_whatever_else_says():
    evidence = {**SUPPORTING, "comprehensiveness": interval(0.0, -0.01, 0.01)}
    judgement = judge(evidence, OPTIONS, n=100)
    assert judgement.verdict == "not faithful"
    assert "removal against random" in judgement.reason and "contradicts" in judgement.reason


def test_disagreement_with_references_and_insensitive_output_is_not_faithful():
    evidence = {
        **SUPPORTING,
        "agreement": interval(0.05, 0.0, 0.1),
        "sensitivity": interval(0.01, 0.0, 0.02),
        "comprehensiveness": interval(0.03, 0.0, 0.06),
    }
    assert judge(evidence, OPTIONS, n=100).verdict == "not faithful"


def test_conflicting_evidence_is_inconclusive_and_says_which():
    evidence = {**SUPPORTING, "agreement": interval(0.05, 0.0, 0.1)}
    judgement = judge(evidence, OPTIONS, n=100)
    assert judgement.verdict == "inconclusive"
    assert judgement.agreement == "contradicts" and judgement.faithfulness == "supports"


def test_too_few_examples_is_inconclusive_with_the_reason():
    judgement = judge(SUPPORTING, OPTIONS, n=5)
    assert judgement.verdict == "inconclusive"
    assert judgement.reason.startswith("too few examples (5; at least 20 needed)")


def test_references_that_disagree_make_the_verdict_inconclusive():
    consistent = {**SUPPORTING, "consistency": interval(0.5, 0.4, 0.6)}
    assert judge(consistent, VerdictOptions(), n=100).verdict == "faithful"
    disagreeing = {**SUPPORTING, "consistency": interval(0.05, 0.01, 0.09)}
    judgement = judge(disagreeing, VerdictOptions(), n=100)
    assert judgement.verdict == "inconclusive"
    assert judgement.reason.startswith("references disagree: their mutual Kendall τ is 0.05 [0.01, 0.09]")
