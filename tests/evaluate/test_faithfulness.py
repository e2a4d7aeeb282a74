"""Faithfulness metrics: rationales, comprehensiveness, sufficiency, AOPC, τ with leave-one-out."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tasks.config import MethodOptions
from tasks.evaluate.batch_metrics import faithfulness_values
from tasks.evaluate.faithfulness import (
    aopc,
    comprehensiveness_input,
    rationale,
    rationale_size,
    sufficiency_input,
    taucorr_loo,
)
from tasks.explain.attention import attention_last
from tasks.explain.passes import BatchContext
from tasks.explain.perturbation import leave_one_out
from tasks.records import TokenScores

CONTENT = np.array([False, True, True, True, True, False])
RECORD = TokenScores("x", "m", np.array([0.0, 0.5, 0.1, 0.9, 0.3, 0.0]), CONTENT)


@pytest.mark.parametrize(
    ("n", "k", "size"), [(4, 0.01, 1), (4, 0.5, 2), (20, 0.05, 1), (20, 0.1, 2), (30, 0.2, 6), (7, 1.0, 7), (0, 0.5, 0)]
)
def test_rationale_size_is_floor_k_n_but_at_least_one_token(n, k, size):
    assert rationale_size(n, k) == size


def test_the_rationale_is_the_top_scored_content_tokens():
    assert rationale(RECORD, 0.5).tolist() == [False, True, False, True, False, False]
    assert rationale(RECORD, 0.01).tolist() == [False, False, False, True, False, False]


def test_comprehensiveness_removes_the_rationale_and_sufficiency_keeps_it_with_the_specials():
    assert comprehensiveness_input(RECORD, 0.5).tolist() == [True, False, True, False, True, True]
    assert sufficiency_input(RECORD, 0.5).tolist() == [True, True, False, True, False, True]


def test_signed_scores_rank_evidence_against_the_prediction_last():
    signed = TokenScores("x", "m", np.array([0.0, -5.0, 0.2, 0.1, 0.0]), np.array([False, True, True, True, False]))
    assert rationale(signed, 0.34).tolist() == [False, False, True, False, False]


def test_aopc_is_the_mean_over_rationale_sizes():
    assert aopc([0.1, 0.2, 0.6]) == pytest.approx(0.3)
    assert math.isnan(aopc([]))


def test_tau_with_leave_one_out_is_one_for_leave_one_out_itself():
    loo = TokenScores(
        "x", "leave_one_out", np.array([0.0, 0.3, -0.1, 0.2, 0.0]), np.array([False, True, True, True, False])
    )
    assert taucorr_loo(loo, loo) == pytest.approx(1.0)


def test_comprehensiveness_at_100_percent_leaves_only_the_special_tokens(context: BatchContext, tiny_bundle):
    records = attention_last(context, MethodOptions())
    values = faithfulness_values(records, context, MethodOptions(k_fractions=(1.0,)))
    for row, example in enumerate(context.examples):
        specials = torch.from_numpy(example.input_ids[example.special_mask])[None]
        with torch.inference_mode():
            p_specials = torch.softmax(tiny_bundle.model(input_ids=specials).logits.double(), -1)[
                0, context.targets[row]
            ]
        comprehensiveness = next(
            v.value for v in values if v.example_id == example.example_id and v.metric == "comprehensiveness"
        )
        assert comprehensiveness == pytest.approx(context.target_probabilities[row] - float(p_specials), abs=1e-5)
        sufficiency = next(v.value for v in values if v.example_id == example.example_id and v.metric == "sufficiency")
        assert sufficiency == pytest.approx(0.0, abs=1e-5)


def test_one_token_comprehensiveness_is_that_tokens_leave_one_out_and_costs_no_pass(context: BatchContext):
    loo = {r.example_id: r for r in leave_one_out(context, MethodOptions())}
    forward_rows = context.counter.forward_rows
    values = faithfulness_values(list(loo.values()), context, MethodOptions(k_fractions=(0.01,)))
    assert context.counter.forward_rows > forward_rows  # sufficiency inputs are new
    for value in values:
        if value.metric == "comprehensiveness":
            assert value.value == pytest.approx(loo[value.example_id].content_scores.max(), abs=1e-9)


def test_aopc_values_are_the_means_of_the_per_k_values(context: BatchContext):
    options = MethodOptions()
    values = faithfulness_values(attention_last(context, options), context, options)
    for example in context.examples:
        per_k = [v.value for v in values if v.example_id == example.example_id and v.metric == "comprehensiveness"]
        assert len(per_k) == len(options.k_fractions)
        total = next(
            v.value for v in values if v.example_id == example.example_id and v.metric == "aopc_comprehensiveness"
        )
        assert total == pytest.approx(np.mean(per_k))


def test_an_example_without_content_tokens_gets_undefined_aopc(tiny_bundle):
    from tests.conftest import encode

    context = BatchContext(tiny_bundle, encode(tiny_bundle, [""]), need_gradients=False)
    values = faithfulness_values(attention_last(context, MethodOptions()), context, MethodOptions())
    assert {v.metric for v in values} == {"aopc_comprehensiveness", "aopc_sufficiency"}
    assert all(math.isnan(v.value) for v in values)
