"""Agreement: does an explanation rank the tokens as a reference attribution does?

Per example, over the content tokens only, between an explanation's scores ``a`` and a reference's
scores ``b``:

- ``kendall_tau``: Kendall's τ-b (ties corrected), Jain & Wallace's statistic;
- ``spearman_rho``: Spearman's ρ (Pearson correlation of the ranks, ties averaged);
- ``top_k_overlap``: ``|top_k(a) ∩ top_k(b)| / k`` with ``k = min(k, n)``; ties broken by position.

Signed references are compared by magnitude ``|s|`` (attention is non-negative; Jain & Wallace compare
magnitudes). All three are invariant to strictly increasing transformations of either argument.
Undefined cases return NaN: fewer than two tokens, or a constant score vector (rank correlations);
no tokens (overlap).

References:
    Jain & Wallace (2019), "Attention is not Explanation", NAACL. https://arxiv.org/abs/1902.10186
"""

from __future__ import annotations

import warnings
from typing import cast

import numpy as np
from scipy import stats

from tasks.evaluate.statistics import ScipyResult


def _defined(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        raise ValueError(f"score vectors differ in length: {a.shape[0]} and {b.shape[0]}")
    return a.shape[0] >= 2 and np.ptp(a) > 0 and np.ptp(b) > 0


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's τ-b between two score vectors; NaN when undefined."""
    if not _defined(a, b):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(cast(ScipyResult, stats.kendalltau(a, b, variant="b")).statistic)


def spearman_rho(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ between two score vectors; NaN when undefined."""
    if not _defined(a, b):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(cast(ScipyResult, stats.spearmanr(a, b)).statistic)


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores; ties go to the earlier index."""
    return np.argsort(-scores, kind="stable")[:k]


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """``|top_k(a) ∩ top_k(b)| / k`` with ``k`` capped at the length; NaN for empty vectors."""
    if a.shape != b.shape:
        raise ValueError(f"score vectors differ in length: {a.shape[0]} and {b.shape[0]}")
    k = min(k, a.shape[0])
    if k == 0:
        return float("nan")
    shared = np.intersect1d(top_indices(a, k), top_indices(b, k)).shape[0]
    return shared / k
