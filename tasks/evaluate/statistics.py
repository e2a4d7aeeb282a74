"""Dataset-level statistics over per-example metric values: means with bootstrap intervals, paired tests.

All intervals are percentile bootstrap 95 % intervals of the mean (``scipy.stats.bootstrap``), seeded so
that the report of a stored run renders the same numbers twice. NaN values (undefined per-example
metrics, e.g. rank correlations of one-token inputs) are dropped and counted. The resamples are drawn in
batches of at most ``BATCH_BYTES`` whatever the number of values (``resample_batch``); numpy draws the
same stream in batches as at once, so the interval is the one of a single draw.

References:
    Efron & Tibshirani (1993), "An Introduction to the Bootstrap", Chapman & Hall.
    Wilcoxon (1945), "Individual Comparisons by Ranking Methods", Biometrics Bulletin.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 2000
BATCH_BYTES = 50_000_000
"""Most bytes of one batch of bootstrap resamples: each resampled value is an int64 index and a float64."""
STACKED_RESAMPLES = 200
"""Fewest resamples per batch ``bootstrap_means`` keeps when it stacks samples (more samples, smaller batches)."""


class ScipyResult(Protocol):
    """What scipy's tests and correlations return; its result classes are built at run time, out of pyright's sight."""

    statistic: float
    pvalue: float


@dataclass(frozen=True)
class Estimate:
    """A mean with its bootstrap interval.

    Attributes:
        mean: Mean of the defined values (NaN when there are none).
        low: Lower end of the 95 % interval (NaN with fewer than two values).
        high: Upper end.
        n: Number of defined values.
        undefined: Number of NaN values left out.
    """

    mean: float
    low: float
    high: float
    n: int
    undefined: int = 0

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies entirely above or entirely below 0."""
        return bool(self.low > 0 or self.high < 0)

    def __format__(self, spec: str) -> str:
        digits = spec or ".2f"
        if math.isnan(self.mean):
            return "n/a"
        if math.isnan(self.low):
            return f"{self.mean:{digits}}"
        return f"{self.mean:{digits}} [{self.low:{digits}}, {self.high:{digits}}]"


def resample_batch(n: int, *, budget: int = BATCH_BYTES) -> int:
    """Resamples of ``n`` values per batch: ``max(1, ⌊budget / 16n⌋)`` (an int64 index and a float64 value each).

    At n = 100,000 that is 31 resamples (50 MB) instead of 2,000 at once (3.2 GB).
    """
    if n < 1:
        raise ValueError(f"a bootstrap needs at least one value, got n = {n}")
    return max(1, budget // (16 * n))


def bootstrap_mean(values: Sequence[float] | np.ndarray, *, seed: int = 0, resamples: int = RESAMPLES) -> Estimate:
    """Mean and percentile-bootstrap 95 % interval of the defined (non-NaN) values.

    The resamples are drawn ``resample_batch(n)`` at a time, so memory stays bounded whatever ``n``.
    """
    return bootstrap_means([values], seed=seed, resamples=resamples)[0]


def bootstrap_means(
    samples: Sequence[Sequence[float] | np.ndarray], *, seed: int = 0, resamples: int = RESAMPLES
) -> list[Estimate]:
    """``bootstrap_mean`` of each sample, the same numbers, in a few calls of ``scipy.stats.bootstrap``.

    Every sample's resamples come from a generator seeded with ``seed``, so samples with the same number
    ``n`` of defined values are resampled at the same positions: they are stacked and resampled in one call
    (``axis=-1``), which changes no number and saves scipy's per-call work, hundreds of times in a
    verdict stage. A call holds at most ``BATCH_BYTES`` of resamples at once, and stacks at most as many
    samples as leave it ``STACKED_RESAMPLES`` resamples per batch.
    """
    estimates: list[Estimate | None] = []
    pending: dict[int, list[tuple[int, np.ndarray, int]]] = defaultdict(list)
    for index, values in enumerate(samples):
        array = np.asarray(values, dtype=np.float64)
        defined = array[~np.isnan(array)]
        n, undefined = int(defined.shape[0]), int(array.shape[0] - defined.shape[0])
        if n == 0:
            estimates.append(Estimate(float("nan"), float("nan"), float("nan"), 0, undefined))
        elif n < 2 or np.ptp(defined) == 0:
            mean = float(defined.mean())
            bound = mean if n >= 2 else float("nan")
            estimates.append(Estimate(mean, bound, bound, n, undefined))
        else:
            estimates.append(None)
            pending[n].append((index, defined, undefined))
    for n, members in pending.items():
        per_call = max(1, BATCH_BYTES // (16 * n * STACKED_RESAMPLES))
        for start in range(0, len(members), per_call):
            stacked = members[start : start + per_call]
            interval = stats.bootstrap(
                (np.stack([defined for _, defined, _ in stacked]),),
                _contiguous_mean,
                n_resamples=resamples,
                confidence_level=CONFIDENCE,
                method="percentile",
                vectorized=True,
                axis=-1,
                batch=resample_batch(n * len(stacked)),
                rng=np.random.default_rng(seed),
            ).confidence_interval
            lows, highs = np.atleast_1d(interval.low), np.atleast_1d(interval.high)
            for (index, defined, undefined), low, high in zip(stacked, lows, highs, strict=True):
                estimates[index] = Estimate(float(defined.mean()), float(low), float(high), n, undefined)
    return cast("list[Estimate]", estimates)  # every None was filled in above


def _contiguous_mean(resamples: np.ndarray, axis: int) -> np.ndarray:
    """``np.mean`` over ``axis`` of a contiguous copy: the same sums, bit for bit, as a lone sample's resamples.

    Resampling a stack (``sample[..., i]``) lays the values out strided; numpy's pairwise summation over a
    strided axis adds in another order, which moves a mean by an ulp.
    """
    return np.mean(np.ascontiguousarray(resamples), axis=axis)


@dataclass(frozen=True)
class PairedComparison:
    """A method against a baseline on the same examples: ``method − baseline`` per example.

    Attributes:
        difference: Mean paired difference with its bootstrap interval.
        p_value: Two-sided Wilcoxon signed-rank test of a zero median difference (NaN when undefined).
    """

    difference: Estimate
    p_value: float


def paired_comparison(
    method: Sequence[float] | np.ndarray,
    baseline: Sequence[float] | np.ndarray,
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> PairedComparison:
    """Compare two aligned per-example value arrays (pairs with a NaN on either side are dropped)."""
    a, b = np.asarray(method, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.shape[0]} and {b.shape[0]}")
    difference = a - b
    estimate = bootstrap_mean(difference, seed=seed, resamples=resamples)
    defined = difference[~np.isnan(difference)]
    p_value = float("nan")
    if defined.shape[0] >= 2 and np.any(defined != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p_value = float(cast(ScipyResult, stats.wilcoxon(defined)).pvalue)
    return PairedComparison(estimate, p_value)


STRENGTH_BANDS = ((0.1, "negligible"), (0.3, "weak"), (0.5, "moderate"), (math.inf, "strong"))
"""Words for the size of a rank correlation |τ| or |ρ|: below 0.1 negligible, below 0.3 weak, below
0.5 moderate, else strong."""


def correlation_strength(value: float) -> str:
    """The word for a rank correlation's size (``STRENGTH_BANDS``); 'undefined' for NaN."""
    if math.isnan(value):
        return "undefined"
    for bound, word in STRENGTH_BANDS:
        if abs(value) < bound:
            return word
    return STRENGTH_BANDS[-1][1]
