"""Agreement statistics between two score vectors (Jain & Wallace 2019)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from tasks.evaluate.agreement import (
    kendall_tau,
    pairwise_kendall_tau,
    pairwise_spearman_rho,
    pairwise_top_k_overlap,
    spearman_rho,
    top_indices,
    top_k_overlap,
)

A = np.array([1.0, 2.0, 3.0, 4.0])
B = np.array([1.0, 3.0, 2.0, 4.0])


def test_kendall_tau_counts_concordant_minus_discordant_pairs():
    assert kendall_tau(A, B) == pytest.approx((5 - 1) / 6)


def test_spearman_rho_is_one_minus_six_squared_rank_differences():
    assert spearman_rho(A, B) == pytest.approx(1 - 6 * 2 / (4 * (16 - 1)))


def test_top_k_overlap_is_the_shared_share_of_the_top_k():
    assert top_k_overlap(A, B, 2) == 0.5
    assert top_k_overlap(A, B, 4) == 1.0
    assert top_k_overlap(A, -A, 1) == 0.0


def test_top_k_is_capped_at_the_length_and_ties_go_to_the_earlier_token():
    assert top_k_overlap(A, B, 10) == 1.0
    assert top_indices(np.array([0.5, 0.9, 0.9, 0.1]), 2).tolist() == [1, 2]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (np.array([1.0]), np.array([2.0])),
        (np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])),
        (np.array([]), np.array([])),
    ],
)
def test_rank_correlations_are_nan_when_undefined(a, b):
    assert math.isnan(kendall_tau(a, b))
    assert math.isnan(spearman_rho(a, b))


def test_overlap_of_empty_vectors_is_nan_and_mismatched_lengths_are_refused():
    assert math.isnan(top_k_overlap(np.array([]), np.array([]), 3))
    with pytest.raises(ValueError, match="differ in length"):
        kendall_tau(A, A[:3])


finite = st.integers(-1000, 1000).map(float)  # well-separated values: transforms cannot merge them


@settings(max_examples=60, deadline=None)
@given(values=arrays(np.float64, st.integers(2, 30), elements=finite, unique=True), seed=st.integers(0, 1000))
def test_rank_statistics_are_invariant_to_increasing_transformations(values, seed):
    other = np.random.default_rng(seed).permutation(values)
    for transform in (lambda x: 3 * x + 1, lambda x: np.arctan(x / 100)):
        assert kendall_tau(transform(values), other) == pytest.approx(kendall_tau(values, other))
        assert spearman_rho(values, transform(other)) == pytest.approx(spearman_rho(values, other))
        assert top_k_overlap(transform(values), other, 3) == top_k_overlap(values, other, 3)


@settings(max_examples=40, deadline=None)
@given(values=arrays(np.float64, st.integers(2, 30), elements=finite, unique=True))
def test_a_ranking_agrees_perfectly_with_itself_and_inversely_with_its_reverse(values):
    assert kendall_tau(values, values) == pytest.approx(1.0)
    assert kendall_tau(values, -values) == pytest.approx(-1.0)
    assert spearman_rho(values, -values) == pytest.approx(-1.0)


@pytest.mark.parametrize("length", [2, 3, 7, 26, 120])
def test_rank_correlations_equal_scipys_bit_for_bit_ties_included(length: int):
    generator = np.random.default_rng(length)
    for _ in range(50):
        a = generator.normal(size=length)
        b = generator.integers(0, 4, size=length).astype(float)  # many ties
        a[generator.integers(0, length, size=length // 3)] = a[0]  # ties in a too
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            continue
        assert kendall_tau(a, b) == float(stats.kendalltau(a, b, variant="b").statistic)
        assert spearman_rho(a, b) == float(stats.spearmanr(a, b).statistic)


@pytest.mark.parametrize("length", [0, 1, 2, 3, 7, 26, 120])
def test_every_pair_at_once_gives_the_statistics_of_each_pair(length: int):
    """The matrices an example's methods are compared with: Kendall and top-k exactly, Spearman to rounding."""
    generator = np.random.default_rng(length)
    rows = generator.normal(size=(6, length))
    rows[1] = generator.integers(0, 4, size=length)  # many ties
    rows[2, : length // 2] = rows[2, -1:].sum()  # a run of ties
    rows[3] = 1.5  # constant: undefined
    rows[4] = rows[0] ** 3  # the same ranking as row 0
    columns = np.concatenate([rows[[0, 3, 4]], generator.normal(size=(2, length))]).astype(np.float32)  # heads' dtype
    tau, rho = pairwise_kendall_tau(rows, columns), pairwise_spearman_rho(rows, columns)
    overlap = pairwise_top_k_overlap(rows, columns, 3)
    assert tau.shape == rho.shape == overlap.shape == (6, 5)
    for m, r in np.ndindex(6, 5):
        assert (
            tau[m, r] == kendall_tau(rows[m], columns[r])
            or np.isnan(tau[m, r])
            and np.isnan(kendall_tau(rows[m], columns[r]))
        )
        assert rho[m, r] == pytest.approx(spearman_rho(rows[m], columns[r]), abs=1e-14, nan_ok=True)
        assert overlap[m, r] == top_k_overlap(rows[m], columns[r], 3) or length == 0 and np.isnan(overlap[m, r])
    if length >= 2:
        assert tau[4, 0] == pytest.approx(1.0) and rho[4, 0] == pytest.approx(1.0)
        assert np.isnan(tau[3]).all() and np.isnan(rho[:, 1]).all()


def test_every_pair_at_once_refuses_mismatched_lengths():
    for pairwise in (pairwise_kendall_tau, pairwise_spearman_rho):
        with pytest.raises(ValueError, match="differ in length"):
            pairwise(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="differ in length"):
        pairwise_top_k_overlap(np.zeros((2, 3)), np.zeros((2, 4)), 2)
