"""The second removal operator and the soft metrics, against direct computations on the tiny model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from tasks.config import MethodOptions
from tasks.evaluate.faithfulness import (
    rationale,
    soft_comprehensiveness,
    soft_keep_probabilities,
    soft_sufficiency,
)
from tasks.evaluate.removal_check import removal_sample, second_operator, second_removal_values
from tasks.evaluate.soft import keep_mask, soft_probabilities, soft_values
from tasks.explain.attention import attention_last
from tasks.explain.passes import BatchContext
from tasks.records import TokenScores

CONTENT = np.array([False, True, True, True, False])


def _probability(bundle, row_target: int, **inputs: torch.Tensor) -> float:
    """``p_ŷ`` of one input run straight through the Hugging Face model (no BatchContext)."""
    with torch.inference_mode():
        logits = bundle.model(**inputs).logits.double()
    return float(torch.softmax(logits, -1)[0, row_target])


def test_second_operator_is_mask_unless_the_run_already_replaces(tiny_bundle):
    assert second_operator(tiny_bundle.tokenizer, MethodOptions()) == "mask"
    assert second_operator(tiny_bundle.tokenizer, MethodOptions(removal="mask")) == "delete"
    assert second_operator(tiny_bundle.tokenizer, MethodOptions(removal_check="pad")) == "pad"


def test_a_second_operator_equal_to_the_first_is_refused():
    with pytest.raises(ValidationError, match="--removal-check"):
        MethodOptions(removal="mask", removal_check="mask")


def test_the_sample_is_seeded_nested_and_all_examples_when_fewer(examples):
    assert removal_sample(examples, MethodOptions()) == {e.example_id for e in examples}
    two = removal_sample(examples, MethodOptions(removal_check_sample=2))
    assert len(two) == 2 and two <= removal_sample(examples, MethodOptions(removal_check_sample=3))
    assert removal_sample(examples, MethodOptions(removal_check_sample=0)) == frozenset()


def test_second_operator_comprehensiveness_equals_masking_the_rationale_directly(tiny_bundle, examples):
    context = BatchContext(tiny_bundle, examples, need_gradients=False)
    options = MethodOptions(methods=("attention_last",), k_fractions=(0.2, 0.5))
    records = attention_last(context, options)
    chosen = {examples[1].example_id, examples[2].example_id}
    values = second_removal_values(context, records, options, chosen)
    assert {v.example_id for v in values} == chosen
    mask_id = tiny_bundle.tokenizer.mask_token_id
    for record in records:
        if record.example_id not in chosen:
            continue
        row = next(r for r, e in enumerate(examples) if e.example_id == record.example_id)
        example, target = examples[row], int(context.targets[row])
        for k in options.k_fractions:
            ids = np.where(rationale(record, k), mask_id, example.input_ids)
            masked = _probability(tiny_bundle, target, input_ids=torch.from_numpy(ids)[None])
            stored = next(
                v.value
                for v in values
                if v.example_id == record.example_id and v.metric == "comprehensiveness_removal2" and v.k == k
            )
            assert stored == pytest.approx(context.target_probabilities[row] - masked, abs=1e-5)
    assert {v.metric for v in values} == {
        "comprehensiveness_removal2",
        "sufficiency_removal2",
        "aopc_comprehensiveness_removal2",
        "aopc_sufficiency_removal2",
    }


def test_leave_one_out_is_recomputed_with_the_second_operator(tiny_bundle, examples):
    from tasks.explain.perturbation import leave_one_out

    context = BatchContext(tiny_bundle, examples[:1], need_gradients=False)
    options = MethodOptions(methods=("attention_last", "leave_one_out"), k_fractions=(0.01,))
    records = [*attention_last(context, options), *leave_one_out(context, options)]
    values = second_removal_values(context, records, options, {examples[0].example_id})
    # one-token comprehensiveness of leave-one-out equals its top score: its scores were masked too
    masked = BatchContext(tiny_bundle, examples[:1], removal="mask", need_gradients=False)
    top = leave_one_out(masked, options)[0].content_scores.max()
    loo = next(v for v in values if v.method == "leave_one_out" and v.metric == "comprehensiveness_removal2")
    assert loo.value == pytest.approx(top, abs=1e-9)
    assert any(v.metric == "taucorr_loo_removal2" for v in values)


# --- soft comprehensiveness and sufficiency ---------------------------------------------------


def test_soft_normalisation_by_hand():
    # p(x) = 0.9, p(x') = 0.6, p(0) = 0.3: S(0) = 0.4, S(x') = 0.7
    assert soft_comprehensiveness(0.9, 0.6, 0.3) == pytest.approx(0.3 / 0.6)
    assert soft_sufficiency(0.9, 0.6, 0.3) == pytest.approx((0.7 - 0.4) / 0.6)
    assert soft_comprehensiveness(0.9, 0.95, 0.3) == 0.0  # the soft input is more confident
    assert soft_sufficiency(0.9, 0.95, 0.3) == 1.0
    assert soft_sufficiency(0.9, 0.2, 0.3) == 0.0  # worse than the empty input
    assert math.isnan(soft_comprehensiveness(0.5, 0.2, 0.6)) and math.isnan(soft_sufficiency(0.5, 0.2, 0.5))


def test_keep_probabilities_are_min_max_normalised_and_keep_the_specials():
    record = TokenScores("x", "m", np.array([9.0, -1.0, 1.0, 3.0, 9.0]), CONTENT)
    assert soft_keep_probabilities(record, comprehensiveness=False).tolist() == [1.0, 0.0, 0.5, 1.0, 1.0]
    assert soft_keep_probabilities(record, comprehensiveness=True).tolist() == [1.0, 1.0, 0.5, 0.0, 1.0]
    flat = TokenScores("x", "m", np.array([0.0, 2.0, 2.0, 2.0, 0.0]), CONTENT)
    assert soft_keep_probabilities(flat, comprehensiveness=True) is None


def test_the_bernoulli_mask_keeps_each_element_with_its_tokens_probability():
    mask = keep_mask(np.array([1.0, 0.0, 0.25]), 20_000, seed=3)
    assert mask[0].all() and not mask[1].any()
    assert mask[2].mean() == pytest.approx(0.25, abs=0.01)


def test_all_kept_is_the_full_input_and_none_kept_is_the_zeroed_input(tiny_bundle, examples):
    context = BatchContext(tiny_bundle, examples, need_gradients=False)
    full = [(row, np.ones(e.length), 1) for row, e in enumerate(examples)]
    zeroed = [(row, (~e.content_mask).astype(float), 2) for row, e in enumerate(examples)]
    probabilities = soft_probabilities(context, [*full, *zeroed])
    np.testing.assert_allclose(probabilities[: len(examples)], context.target_probabilities, atol=1e-5)
    table = tiny_bundle.model.get_input_embeddings()
    for row, example in enumerate(examples):
        with torch.no_grad():
            embeddings = table(torch.from_numpy(example.input_ids)[None]).clone()
        embeddings[0, torch.from_numpy(example.content_mask)] = 0.0
        direct = _probability(tiny_bundle, int(context.targets[row]), inputs_embeds=embeddings)
        assert probabilities[len(examples) + row] == pytest.approx(direct, abs=1e-5)


def test_soft_metrics_of_a_two_level_ranking_match_a_hand_computation(tiny_bundle, examples):
    """Scores at only the min and the max make ``q`` 0 or 1: the soft inputs are exact zeroings."""
    example = examples[2]
    context = BatchContext(tiny_bundle, [example], need_gradients=False)
    scores = np.zeros(example.length)
    top = np.flatnonzero(example.content_mask)[:2]
    scores[top] = 1.0
    record = TokenScores(example.example_id, "hand", scores, example.content_mask)
    values = {v.metric: v.value for v in soft_values([record], context, MethodOptions())}
    table = tiny_bundle.model.get_input_embeddings()
    target = int(context.targets[0])

    def zeroing(positions: np.ndarray) -> float:
        with torch.no_grad():
            embeddings = table(torch.from_numpy(example.input_ids)[None]).clone()
        embeddings[0, torch.from_numpy(positions)] = 0.0
        return _probability(tiny_bundle, target, inputs_embeds=embeddings)

    original = float(context.target_probabilities[0])
    content = np.flatnonzero(example.content_mask)
    empty = zeroing(content)
    without_top = zeroing(top)  # comprehensiveness: q = 1 − s zeroes the top tokens
    only_top = zeroing(np.setdiff1d(content, top))  # sufficiency: q = s zeroes the others
    assert values["soft_comprehensiveness"] == pytest.approx(
        soft_comprehensiveness(original, without_top, empty), abs=1e-5, nan_ok=True
    )
    assert values["soft_sufficiency"] == pytest.approx(
        soft_sufficiency(original, only_top, empty), abs=1e-5, nan_ok=True
    )


def test_soft_values_do_not_depend_on_the_batch(tiny_bundle, examples):
    options = MethodOptions()
    together = BatchContext(tiny_bundle, examples, need_gradients=False)
    values = {
        (v.example_id, v.metric): v.value for v in soft_values(attention_last(together, options), together, options)
    }
    for example in examples[1:3]:
        alone = BatchContext(tiny_bundle, [example], need_gradients=False)
        for value in soft_values(attention_last(alone, options), alone, options):
            assert value.value == pytest.approx(values[(value.example_id, value.metric)], abs=1e-5, nan_ok=True)
