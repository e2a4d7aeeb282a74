"""Interventions on the attention probabilities inside the forward pass (docs/methodology.md, "Interventions")."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from tasks.config import InterventionOptions
from tasks.explain.passes import BatchContext
from tasks.interventions.registry import (
    adversarial,
    erase_key,
    head_masking,
    jsd,
    permutation,
    resolve_layer,
    top_vs_random_erasure,
    tvd,
    uniform,
)
from tasks.model.attention_hook import editing
from tasks.records import EncodedExample
from tests.conftest import encode

OPTIONS = InterventionOptions(permutation_draws=12, erasure_draws=4, adversarial_steps=30)


def identity(members):
    return lambda layer, probabilities: probabilities


def original_probabilities(context: BatchContext) -> torch.Tensor:
    return torch.softmax(context.model_pass.logits.double(), dim=-1)


def test_tvd_and_jsd_on_hand_worked_distributions():
    p, q = torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.0, 0.5, 0.5])
    assert float(tvd(p, q)) == pytest.approx(0.5)
    assert float(jsd(p, p)) == pytest.approx(0.0, abs=1e-7)
    assert float(jsd(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))) == pytest.approx(1.0)
    assert float(jsd(p, q)) == pytest.approx(0.5)


def test_layers_count_from_the_top_when_negative():
    assert resolve_layer(-1, 6) == 5 and resolve_layer(0, 6) == 0
    with pytest.raises(ValueError, match="does not exist"):
        resolve_layer(6, 6)


def test_an_identity_edit_inside_a_full_forward_pass_changes_nothing_bit_for_bit(tiny_bundle, examples):
    context = BatchContext(tiny_bundle, examples, need_gradients=False)
    model_inputs = {"input_ids": context.input_ids, "attention_mask": context.attention_mask}
    with torch.no_grad():
        plain = tiny_bundle.model(**model_inputs).logits
        with editing(lambda layer, probabilities: probabilities):
            edited = tiny_bundle.model(**model_inputs).logits
    assert torch.equal(plain, edited)


@pytest.mark.parametrize("start", [0, 1])
def test_running_the_top_of_the_network_from_cached_states_reproduces_the_output(context: BatchContext, start):
    rows = np.arange(len(context.examples))
    probabilities = context.intervened_probabilities(rows, start, identity)
    np.testing.assert_allclose(probabilities.numpy(), original_probabilities(context).numpy(), atol=1e-6)
    assert np.all(tvd(original_probabilities(context), probabilities).numpy() < 1e-6)


def test_uniform_attention_on_a_one_token_input_changes_nothing(tiny_bundle):
    cls = tiny_bundle.tokenizer.cls_token_id
    single = EncodedExample(
        example_id="cls-only",
        text="",
        label=None,
        input_ids=np.array([cls]),
        token_type_ids=np.array([0]),
        tokens=("[CLS]",),
        offsets=np.zeros((1, 2), dtype=np.int64),
        special_mask=np.array([True]),
        n_original_tokens=1,
    )
    context = BatchContext(tiny_bundle, [single], need_gradients=False)
    values = uniform(context, OPTIONS)
    assert {v.value for v in values if v.statistic == "tvd"} == {0.0}
    assert {v.value for v in values if v.statistic == "flip"} == {0.0}


def test_uniform_covers_each_layer_and_all_layers_at_once(context: BatchContext):
    values = uniform(context, OPTIONS)
    assert {v.layer for v in values} == {0, 1, None}
    assert all(0 <= v.value <= 1 for v in values if v.statistic == "tvd")
    predicted = [v for v in values if v.statistic == "predicted"]
    assert len(predicted) == 3 * len(context.examples)


def test_masking_a_head_equals_removing_its_value_projection(tiny_bundle, examples):
    layer, head = 1, 2
    context = BatchContext(tiny_bundle, examples, need_gradients=False)
    values = head_masking(context, OPTIONS)
    ours = {v.example_id: v.value for v in values if v.layer == layer and v.head == head and v.statistic == "tvd"}
    model = copy.deepcopy(tiny_bundle.model)
    value_projection = model.bert.encoder.layer[layer].attention.self.value
    size = value_projection.weight.shape[0] // tiny_bundle.num_heads
    with torch.no_grad():
        value_projection.weight[head * size : (head + 1) * size] = 0
        value_projection.bias[head * size : (head + 1) * size] = 0
        logits = model(input_ids=context.input_ids, attention_mask=context.attention_mask).logits
    expected = tvd(original_probabilities(context), torch.softmax(logits.double(), dim=-1)).numpy()
    for row, example in enumerate(examples):
        assert ours[example.example_id] == pytest.approx(expected[row], abs=1e-6)
    assert len(values) == 2 * len(examples) * tiny_bundle.num_layers * tiny_bundle.num_heads


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


def test_erasure_compares_the_top_key_with_random_keys(context: BatchContext):
    values = top_vs_random_erasure(context, OPTIONS)
    statistics = {v.statistic for v in values}
    assert statistics == {"top_tvd", "top_flip", "random_tvd", "random_flip"}
    assert len(values) == 4 * len(context.examples)
    assert all(v.layer == 1 for v in values)


def test_erasure_is_undefined_without_a_second_content_token(tiny_bundle):
    context = BatchContext(tiny_bundle, encode(tiny_bundle, ["great"]), need_gradients=False)
    assert all(math.isnan(v.value) for v in top_vs_random_erasure(context, OPTIONS))


def test_erasing_a_key_zeroes_it_and_renormalises_the_rest():
    rows = torch.tensor([[[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]])
    erased = erase_key(rows, torch.tensor([2]))
    torch.testing.assert_close(erased, torch.tensor([[[0.625, 0.375, 0.0], [0.5, 0.5, 0.0]]]))


def test_adversarial_attention_stays_within_epsilon_and_diverges(context: BatchContext):
    values = adversarial(context, OPTIONS)
    by_statistic: dict[str, list[float]] = {}
    for value in values:
        by_statistic.setdefault(value.statistic, []).append(value.value)
    assert all(0 <= value <= 1 for value in by_statistic["jsd"])
    assert all(value <= OPTIONS.adversarial_epsilon + 1e-6 for value in by_statistic["tvd"])
    assert set(by_statistic["constraint_held"]) <= {0.0, 1.0}
    assert max(by_statistic["jsd"]) > 0.01


def test_interventions_do_not_train_the_model(context: BatchContext, tiny_bundle):
    adversarial(context, OPTIONS)
    assert all(parameter.grad is None for parameter in tiny_bundle.model.parameters())
