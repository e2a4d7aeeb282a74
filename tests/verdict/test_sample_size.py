"""How many examples a verdict needs: hand-worked cases, a property against the rules, and the run's sizing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tasks.config import AuditConfig, DataSpec, ExecutionSettings, InterventionOptions, MethodOptions
from tasks.evaluate.statistics import Estimate
from tasks.pipeline.batch import audit_batch
from tasks.store import batch_frames
from tasks.verdict.evidence import EVIDENCE_COLUMNS, example_evidence, judge, thresholds
from tasks.verdict.sample_size import (
    SLICE_SIZE,
    examples_to_decide,
    sample_for_precision,
    sample_record,
    sample_words,
    sized,
)
from tests.verdict.cases import OPTIONS, SUPPORTING, interval


def hand_n_star(half_width: float, n: int, distance: float) -> float:
    """The brief's formula: σ̂ = half-width·√n/1.96, then n* = (1.96·σ̂/|μ̂ − t|)²."""
    sd = half_width * math.sqrt(n) / 1.96
    return (1.96 * sd / distance) ** 2


def test_agreement_straddling_its_threshold_is_decided_where_its_interval_leaves_it() -> None:
    """τ 0.25 [0.15, 0.35] on 100 examples, threshold 0.2: σ̂ = 0.1·10/1.96 = 0.510, n* = (1.96·0.510/0.05)² = 400."""
    estimates = {**SUPPORTING, "agreement": interval(0.25, 0.15, 0.35)}
    assert judge(estimates, OPTIONS, n=100).verdict == "inconclusive"

    decided = examples_to_decide(estimates, 100, OPTIONS)

    assert hand_n_star(0.1, 100, 0.05) == pytest.approx(400)
    assert decided is not None and decided.examples == 400
    assert decided.verdict == "faithful" and decided.deciding == ("agreement",)
    assert decided.words == "about 400 examples would decide this (faithful; deciding: agreement with the references)"
    assert decided.short == "≈ 400 examples decide: faithful (agreement)"


def test_a_comprehensiveness_gain_below_the_margin_decides_not_faithful() -> None:
    """Gain 0.005 [-0.02, 0.03]: it leaves 0 at n·(0.025/0.005)² = 2,500, but its upper end falls below the
    margin 0.02 already at n·(0.025/0.015)² = 277.8, and 'no better than random' decides there."""
    estimates = {**SUPPORTING, "comprehensiveness": interval(0.005, -0.02, 0.03)}

    decided = examples_to_decide(estimates, 100, OPTIONS)

    assert math.ceil(hand_n_star(0.025, 100, 0.015)) == 278
    assert decided is not None and (decided.examples, decided.verdict) == (278, "not faithful")
    assert decided.deciding == ("comprehensiveness",)


def test_the_last_evidence_to_leave_its_threshold_decides() -> None:
    """Agreement needs 400 examples, sufficiency (−0.02 [−0.05, 0.01]) 100·(0.03/0.02)² = 225: agreement decides."""
    estimates = {
        **SUPPORTING,
        "agreement": interval(0.25, 0.15, 0.35),
        "sufficiency": interval(-0.02, -0.05, 0.01),
    }

    decided = examples_to_decide(estimates, 100, OPTIONS)

    assert math.ceil(hand_n_star(0.03, 100, 0.02)) == 225
    assert decided is not None and (decided.examples, decided.deciding) == (400, ("agreement",))


def test_evidence_that_points_both_ways_is_decided_by_no_number_of_examples() -> None:
    estimates = {**SUPPORTING, "agreement": interval(0.1, -0.01, 0.21)}  # heads below 0.2 while removal supports

    decided = examples_to_decide(estimates, 100, OPTIONS)

    assert decided is not None and decided.examples is None and decided.verdict is None
    assert "agreement contradicts, removal against random supports" in decided.reason
    assert decided.words.startswith("no number of examples would decide this: with the means where they are")
    assert decided.short == "no n decides: the evidence conflicts"


def test_a_slice_that_is_only_too_small_needs_the_smallest_judged_size() -> None:
    decided = examples_to_decide(SUPPORTING, 10, OPTIONS)

    assert decided is not None and (decided.examples, decided.verdict) == (OPTIONS.min_examples, "faithful")
    assert decided.deciding == (SLICE_SIZE,)


def test_one_example_has_no_variance_to_size_from() -> None:
    single = {name: Estimate(e.mean, math.nan, math.nan, 1) for name, e in SUPPORTING.items()}

    decided = examples_to_decide(single, 1, OPTIONS)

    assert decided is not None and decided.examples is None and decided.short == "n unknown: one example, no variance"


def test_a_decided_verdict_needs_nothing() -> None:
    assert examples_to_decide(SUPPORTING, 100, OPTIONS) is None


def test_every_evidence_column_has_its_thresholds() -> None:
    assert set(thresholds(OPTIONS)) == set(EVIDENCE_COLUMNS)


def projected(estimates: dict[str, Estimate], n: int, size: int) -> dict[str, Estimate]:
    """The test's own projection: each interval centred on its mean, half-width times √(n/size)."""
    out = {}
    for name, e in estimates.items():
        half = (e.high - e.low) / 2 * math.sqrt(n / size)
        out[name] = Estimate(e.mean, e.mean - half, e.mean + half, size)
    return out


def test_at_the_answer_the_rules_give_its_verdict_and_one_example_fewer_they_do_not() -> None:
    """A property over random symmetric intervals, checked with ``judge`` and a projection of the test's own."""
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(400):
        n = int(rng.integers(5, 150))
        estimates = {}
        for name in EVIDENCE_COLUMNS:
            mean, half = float(rng.uniform(-0.3, 0.5)), float(rng.uniform(0.005, 0.3))
            estimates[name] = Estimate(mean, mean - half, mean + half, n)
        decided = examples_to_decide(estimates, n, OPTIONS)
        if judge(estimates, OPTIONS, n=n).verdict != "inconclusive":
            assert decided is None
            continue
        assert decided is not None
        if decided.examples is None:
            continue
        size = decided.examples
        for later in (size, size + 1, 2 * size, 100 * size):
            assert judge(projected(estimates, n, later), OPTIONS, n=later).verdict == decided.verdict
        if size - 1 > n:
            assert judge(projected(estimates, n, size - 1), OPTIONS, n=size - 1).verdict != decided.verdict
        checked += 1
    assert checked > 50


# --- sizing a run -------------------------------------------------------------------------------


def test_the_sample_for_a_target_half_width_uses_the_bound_sigma_at_most_one() -> None:
    assert sample_for_precision(0.1, 20) == math.ceil((1.96 / 0.1) ** 2) == 385
    assert sample_for_precision(0.05, 20) == 1537
    assert sample_for_precision(0.5, 20) == 20  # (1.96/0.5)² = 15.4, but the overall slice needs 20 to be judged


def test_sizing_sets_the_limit_a_given_limit_caps_and_the_identity_is_the_limits() -> None:
    target = AuditConfig(data=DataSpec(target_precision=0.1))
    sized_once = sized(target)

    assert sized_once.data.limit == 385 and sized(sized_once) == sized_once
    assert sized(AuditConfig(data=DataSpec(target_precision=0.1, limit=100))).data.limit == 100
    assert sized(AuditConfig(data=DataSpec(target_precision=0.1, limit=1000))).data.limit == 385
    assert sized_once.identity() == AuditConfig(data=DataSpec(limit=385)).identity()
    assert sized(AuditConfig()) == AuditConfig()


def test_the_sizing_says_what_it_chose_and_what_a_small_split_allows() -> None:
    record = sample_record(0.1, 385, 20, 228)

    assert record["needed"] == 385 and record["examples"] == 228
    assert record["half_width_bound"] == pytest.approx(1.96 / math.sqrt(228))
    words = sample_words(record)
    assert "±0.1 on every verdict evidence" in words and "385 examples under the conservative bound σ ≤ 1" in words
    assert words.endswith("the split allows only 228, so the half-width is at most about ±0.13")
    assert sample_words(sample_record(0.1, 100, 20, 1063)).endswith("--limit allows only 100, so the half-width is at "
                                                                     "most about ±0.20")  # fmt: skip
    assert "allows only" not in sample_words(sample_record(0.1, 385, 20, 1063))


def test_every_per_example_evidence_lies_in_minus_one_to_one(tiny_bundle, examples) -> None:
    """The premise of the bound σ ≤ 1, on a real audit of the tiny model."""
    methods = MethodOptions(methods=("attention_last", "rollout", "integrated_gradients", "leave_one_out", "random"),
                            ig_steps=4, ig_rule="gausslegendre")  # fmt: skip
    interventions = InterventionOptions(permutation_draws=5, erasure_draws=3, interventions=("permutation",
                                        "top_vs_random_erasure"))  # fmt: skip
    result = audit_batch(tiny_bundle, examples, methods, interventions, ExecutionSettings())
    frames = batch_frames("run", result, tiny_bundle.labels)
    evidence = example_evidence(frames["metrics"], frames["interventions"], methods.methods, OPTIONS)

    values = evidence.to_numpy(dtype=float)
    assert np.isfinite(values).sum() > 0
    assert np.nanmin(values) >= -1 and np.nanmax(values) <= 1
    assert not pd.isna(evidence["erasure"]).all() and not pd.isna(evidence["consistency"]).all()
