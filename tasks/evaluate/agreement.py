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

import numpy as np
from scipy import stats


def _defined(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        raise ValueError(f"score vectors differ in length: {a.shape[0]} and {b.shape[0]}")
    return a.shape[0] >= 2 and np.ptp(a) > 0 and np.ptp(b) > 0


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's τ-b between two score vectors; NaN when undefined.

    ``τ_b = Σ_{i<j} sgn(a_i − a_j) sgn(b_i − b_j) / (√(n_0 − n_a) · √(n_0 − n_b))``, with ``n_0 = n(n−1)/2``
    pairs and ``n_a``, ``n_b`` the pairs tied in ``a`` and in ``b``: scipy's ``kendalltau(variant="b")``
    operation for operation (the same integer counts, divided in the same order), without its p-value
    and argument handling, which cost a thousand times more than τ itself on a sentence.
    """
    if not _defined(a, b):
        return float("nan")
    upper = np.triu_indices(a.shape[0], k=1)
    sign_a = np.sign(np.subtract.outer(a, a)[upper])
    sign_b = np.sign(np.subtract.outer(b, b)[upper])
    concordant_minus_discordant = int(np.dot(sign_a, sign_b))
    tau = concordant_minus_discordant / np.sqrt(np.count_nonzero(sign_a)) / np.sqrt(np.count_nonzero(sign_b))
    return float(min(1.0, max(-1.0, tau)))


def spearman_rho(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ between two score vectors; NaN when undefined.

    The Pearson correlation of the average ranks: scipy's ``spearmanr`` operation for operation (ranks by
    ``rankdata``, then ``np.corrcoef`` of the two rank columns), without its p-value and argument handling.
    """
    if not _defined(a, b):
        return float("nan")
    ranks = stats.rankdata(np.column_stack((a, b)), axis=0)
    return float(np.corrcoef(ranks, rowvar=False)[1, 0])


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
