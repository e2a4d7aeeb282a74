"""Permuted attention (Jain & Wallace 2019): summaries of the draws, reproducible per example."""

from __future__ import annotations

import pytest

from tasks.explain.passes import BatchContext
from tasks.interventions.permutation import permutation
from tests.conftest import encode
from tests.interventions.shared import OPTIONS


def test_permutation_summarises_its_draws_and_leaves_a_one_token_input_alone(tiny_bundle):
    examples = encode(tiny_bundle, ["great", "a long and rather boring film about nothing"])
    context = BatchContext(tiny_bundle, examples, need_gradients=False)
    values = {(v.example_id, v.statistic): v.value for v in permutation(context, OPTIONS)}
    assert values[("0", "median_tvd")] == pytest.approx(0.0, abs=1e-6)
    assert values[("0", "flip_rate")] == 0.0
    assert values[("1", "median_tvd")] > 0
    assert 0 <= values[("1", "flip_rate")] <= 1


def test_permutations_are_reproducible_and_independent_of_the_batch(tiny_bundle, examples):
    together = permutation(BatchContext(tiny_bundle, examples, need_gradients=False), OPTIONS)
    alone = permutation(BatchContext(tiny_bundle, examples[2:3], need_gradients=False), OPTIONS)
    by_key = {(v.example_id, v.statistic): v.value for v in together}
    for value in alone:
        assert value.value == pytest.approx(by_key[(value.example_id, value.statistic)], abs=1e-6)
