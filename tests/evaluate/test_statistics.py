"""Bootstrap intervals and paired comparisons."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tasks.evaluate import statistics
from tasks.evaluate.statistics import (
    BATCH_BYTES,
    Estimate,
    bootstrap_mean,
    bootstrap_means,
    correlation_strength,
    paired_comparison,
    resample_batch,
)


def test_the_interval_brackets_the_mean_and_is_reproducible():
    values = np.random.default_rng(0).normal(1.0, 1.0, 200)
    estimate = bootstrap_mean(values, seed=3)
    assert estimate.low < estimate.mean < estimate.high
    assert estimate.mean == pytest.approx(values.mean())
    assert bootstrap_mean(values, seed=3) == estimate
    assert estimate.high - estimate.low == pytest.approx(2 * 1.96 / np.sqrt(200), rel=0.25)


def test_resamples_drawn_in_batches_give_the_interval_of_one_draw(monkeypatch):
    values = np.random.default_rng(4).normal(0.3, 1.0, 101)
    whole = stats.bootstrap(
        (values,), np.mean, n_resamples=2000, method="percentile", vectorized=True, rng=np.random.default_rng(3)
    ).confidence_interval
    asked = []

    def seven_at_a_time(n: int) -> int:
        asked.append(n)
        return 7

    monkeypatch.setattr(statistics, "resample_batch", seven_at_a_time)
    estimate = bootstrap_mean(values, seed=3)
    assert asked == [101]
    assert (estimate.low, estimate.high) == (whole.low, whole.high)


def _one_scipy_call(values: np.ndarray, seed: int) -> tuple[float, float]:
    defined = values[~np.isnan(values)]
    interval = stats.bootstrap(
        (defined,), np.mean, n_resamples=2000, method="percentile", vectorized=True, rng=np.random.default_rng(seed)
    ).confidence_interval
    return interval.low, interval.high


@pytest.mark.parametrize("stacked_at_most", [1, 2, 1000])
def test_samples_resampled_together_get_the_intervals_of_one_scipy_call_each(monkeypatch, stacked_at_most):
    """Stacking samples of the same size is a speed-up only: every number is the one scipy gives for each alone."""
    rng = np.random.default_rng(5)
    samples = [rng.normal(0.2, 1.0, n) for n in (30, 30, 17, 30, 17, 250)]
    samples[1][[3, 8]] = np.nan  # 28 defined: a group of its own
    monkeypatch.setattr(statistics, "STACKED_RESAMPLES", statistics.BATCH_BYTES // (16 * 30 * stacked_at_most))
    trivial = [np.array([]), np.array([0.4]), np.array([0.2, 0.2, np.nan])]

    estimates = bootstrap_means(samples + trivial, seed=7)

    for values, estimate in zip(samples, estimates, strict=False):
        assert (estimate.low, estimate.high) == _one_scipy_call(values, seed=7)
        defined = values[~np.isnan(values)]
        assert (estimate.mean, estimate.n) == (defined.mean(), len(defined))
    assert estimates[1].undefined == 2
    empty, single, constant = estimates[len(samples) :]
    assert math.isnan(empty.mean) and empty.n == 0
    assert single.mean == 0.4 and math.isnan(single.low)
    assert constant.low == constant.high == 0.2 and (constant.n, constant.undefined) == (2, 1)


@pytest.mark.parametrize("n", [1, 2, 101, 10_000, 100_000, 10_000_000])
def test_a_batch_of_resamples_holds_at_most_the_budget(n):
    batch = resample_batch(n)
    assert batch >= 1
    assert batch == 1 or 16 * n * batch <= BATCH_BYTES < 16 * n * (batch + 1)


def test_a_batch_at_a_hundred_thousand_values_is_31_resamples():
    assert resample_batch(100_000) == 31


def test_a_batch_of_no_values_is_refused():
    with pytest.raises(ValueError, match="at least one value"):
        resample_batch(0)


def test_nan_values_are_left_out_and_counted():
    estimate = bootstrap_mean([1.0, float("nan"), 3.0, float("nan")])
    assert (estimate.mean, estimate.n, estimate.undefined) == (2.0, 2, 2)


def test_degenerate_samples_have_degenerate_or_undefined_intervals():
    assert math.isnan(bootstrap_mean([]).mean)
    single = bootstrap_mean([0.4])
    assert single.mean == 0.4 and math.isnan(single.low)
    constant = bootstrap_mean([0.2, 0.2, 0.2])
    assert constant.low == constant.high == pytest.approx(0.2)


def test_a_paired_comparison_detects_a_consistent_improvement():
    rng = np.random.default_rng(1)
    baseline = rng.uniform(0, 1, 100)
    comparison = paired_comparison(baseline + 0.1 + rng.normal(0, 0.01, 100), baseline)
    assert comparison.difference.excludes_zero and comparison.difference.low > 0
    assert comparison.p_value < 1e-6


def test_identical_methods_do_not_differ():
    values = np.linspace(0, 1, 10)
    comparison = paired_comparison(values, values)
    assert comparison.difference.mean == 0 and not comparison.difference.excludes_zero
    assert math.isnan(comparison.p_value)


def test_estimates_format_with_their_interval():
    assert f"{Estimate(0.5, 0.4, 0.6, 10):.2f}" == "0.50 [0.40, 0.60]"
    assert f"{Estimate(float('nan'), float('nan'), float('nan'), 0)}" == "n/a"


@pytest.mark.parametrize(("value", "word"), [(0.05, "negligible"), (-0.2, "weak"), (0.4, "moderate"), (0.9, "strong")])
def test_correlation_strength_words(value, word):
    assert correlation_strength(value) == word
