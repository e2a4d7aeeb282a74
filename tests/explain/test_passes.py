"""The shared batch passes: one model pass, de-duplicated perturbed inputs, counted work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks.explain.passes import BatchContext
from tests.conftest import encode


def test_the_model_pass_runs_once_however_many_methods_read_it(context: BatchContext):
    first = context.model_pass
    assert context.model_pass is first
    assert context.counter.forward_rows == len(context.examples)
    assert context.counter.backward_rows == len(context.examples)


def test_predictions_of_a_padded_batch_equal_one_example_at_a_time(tiny_bundle, examples):
    together = BatchContext(tiny_bundle, examples).predictions()
    for prediction, example in zip(together, examples, strict=True):
        alone = BatchContext(tiny_bundle, [example], need_gradients=False).predictions()[0]
        np.testing.assert_allclose(prediction.probabilities, alone.probabilities, atol=1e-6)


def test_gradient_and_inference_passes_agree(tiny_bundle, examples):
    with_grad = BatchContext(tiny_bundle, examples, need_gradients=True).model_pass
    without = BatchContext(tiny_bundle, examples, need_gradients=False).model_pass
    torch.testing.assert_close(with_grad.logits, without.logits, atol=1e-5, rtol=1e-5)
    for a, b in zip(with_grad.attentions, without.attentions, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_each_distinct_perturbed_input_is_run_once(context: BatchContext):
    example = context.examples[2]
    keep = example.content_mask.copy()
    keep[np.flatnonzero(example.content_mask)[0]] = False
    keep |= example.special_mask
    context.model_pass  # noqa: B018 - the unperturbed pass, counted separately
    before = context.counter.forward_rows
    first = context.perturbed_probabilities([(2, keep), (2, keep.copy()), (2, keep)])
    assert context.counter.forward_rows == before + 1
    assert first[0] == first[1] == first[2]
    again = context.perturbed_probabilities([(2, keep)])
    assert context.counter.forward_rows == before + 1
    assert again[0] == first[0]


def test_keeping_every_token_reproduces_the_original_probability(context: BatchContext):
    requests = [(row, np.ones(example.length, dtype=bool)) for row, example in enumerate(context.examples)]
    np.testing.assert_allclose(context.perturbed_probabilities(requests), context.target_probabilities, atol=1e-6)


def test_a_keep_mask_of_the_wrong_length_is_refused(context: BatchContext):
    with pytest.raises(ValueError, match="keep mask"):
        context.perturbed_probabilities([(0, np.ones(context.examples[0].length + 1, dtype=bool))])


def test_perturbed_forward_passes_respect_the_token_budget(tiny_bundle, monkeypatch):
    from tasks.model.adapters.base import ModelAdapter

    examples = encode(tiny_bundle, ["one two three four five six seven eight"] * 4)
    context = BatchContext(tiny_bundle, examples, token_budget=24, need_gradients=False)
    context.model_pass  # noqa: B018 - the unperturbed pass is one batch by design; only perturbations are budgeted
    sizes = []
    original = ModelAdapter.forward_logits

    def spy(self, model, attention_mask, **inputs):
        sizes.append(attention_mask.numel())
        return original(self, model, attention_mask, **inputs)

    monkeypatch.setattr(ModelAdapter, "forward_logits", spy)
    requests = [(row, np.ones(e.length, dtype=bool)) for row, e in enumerate(examples)]
    for request in requests:
        request[1][1] = False
    context.perturbed_probabilities(requests)
    assert sizes and max(sizes) <= 24
