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
    return bool(_pairwise_defined(a[None], b[None])[0, 0])


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's τ-b between two score vectors; NaN when undefined.

    ``τ_b = Σ_{i<j} sgn(a_i − a_j) sgn(b_i − b_j) / (√(n_0 − n_a) · √(n_0 − n_b))``, with ``n_0 = n(n−1)/2``
    pairs and ``n_a``, ``n_b`` the pairs tied in ``a`` and in ``b``: scipy's ``kendalltau(variant="b")``
    operation for operation (the same integer counts, divided in the same order), without its p-value
    and argument handling, which cost a thousand times more than τ itself on a sentence. One pair of
    ``pairwise_kendall_tau``.
    """
    return float(pairwise_kendall_tau(a[None], b[None])[0, 0])


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


# --- every pair at once ---------------------------------------------------------------------------
# An example's methods (or a layer's heads) are compared pairwise: ranking, sign and top-k work done once
# per score vector and the pairs reduced to one matrix product each, instead of once per pair.


def _pairwise_defined(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``[M, R]``: where a rank correlation of row ``m`` with column ``r`` is defined (``_defined``)."""
    if rows.shape[1] != columns.shape[1]:
        raise ValueError(f"score vectors differ in length: {rows.shape[1]} and {columns.shape[1]}")
    if rows.shape[1] < 2:
        return np.zeros((rows.shape[0], columns.shape[0]), dtype=bool)
    return (np.ptp(rows, axis=1) > 0)[:, None] & (np.ptp(columns, axis=1) > 0)[None, :]


def _pair_signs(scores: np.ndarray) -> np.ndarray:
    """``sgn(s_i − s_j)`` of every pair ``i < j`` of every row, ``[M, n(n−1)/2]`` (float32: exact for ±1, 0)."""
    first, second = np.triu_indices(scores.shape[1], k=1)
    return np.sign(scores[:, first] - scores[:, second]).astype(np.float32)


def pairwise_kendall_tau(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``kendall_tau(rows[m], columns[r])`` for every ``m`` and ``r``, ``[M, R]``; the same numbers.

    The concordance counts are one product of the pair-sign matrices: sums of ±1 below ``2²⁴`` are exact in
    float32, and the division is done in float64 in ``kendall_tau``'s order (row's count first).
    """
    defined = _pairwise_defined(rows, columns)
    signs_rows, signs_columns = _pair_signs(rows), _pair_signs(columns)
    concordance = (signs_rows @ signs_columns.T).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = concordance / np.sqrt(np.count_nonzero(signs_rows, axis=1))[:, None]
        tau = tau / np.sqrt(np.count_nonzero(signs_columns, axis=1))[None, :]
    return np.where(defined, np.clip(tau, -1.0, 1.0), np.nan)


def pairwise_spearman_rho(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``spearman_rho(rows[m], columns[r])`` for every ``m`` and ``r``, ``[M, R]`` (equal up to rounding).

    The Pearson correlation of the average ranks, ``Σ_i ρ̃_mi ρ̃_ri / √(Σ_i ρ̃_mi² · Σ_i ρ̃_ri²)`` with
    ``ρ̃`` the ranks less their mean: the sums are taken in another order than ``np.corrcoef``'s, so a
    value may differ from ``spearman_rho``'s in its last bits.
    """
    defined = _pairwise_defined(rows, columns)
    if not defined.any():
        return np.full(defined.shape, np.nan)
    centred_rows, centred_columns = (
        ranks - ranks.mean(axis=1, keepdims=True)
        for ranks in (stats.rankdata(rows, axis=1), stats.rankdata(columns, axis=1))
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (centred_rows @ centred_columns.T) / np.sqrt(
            np.outer((centred_rows**2).sum(axis=1), (centred_columns**2).sum(axis=1))
        )
    return np.where(defined, np.clip(rho, -1.0, 1.0), np.nan)


def pairwise_top_k_overlap(rows: np.ndarray, columns: np.ndarray, k: int) -> np.ndarray:
    """``top_k_overlap(rows[m], columns[r], k)`` for every ``m`` and ``r``, ``[M, R]``; the same numbers."""
    if rows.shape[1] != columns.shape[1]:
        raise ValueError(f"score vectors differ in length: {rows.shape[1]} and {columns.shape[1]}")
    k = min(k, rows.shape[1])
    if k == 0:
        return np.full((rows.shape[0], columns.shape[0]), np.nan)

    def chosen(scores: np.ndarray) -> np.ndarray:
        indicator = np.zeros(scores.shape, dtype=np.float64)
        np.put_along_axis(indicator, np.argsort(-scores, axis=1, kind="stable")[:, :k], 1.0, axis=1)
        return indicator

    return (chosen(rows) @ chosen(columns).T) / k
