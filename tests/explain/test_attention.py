"""Attention-based explanations: attention_last, attention_mean, rollout (docs/methodology.md properties)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.config import MethodOptions
from tasks.explain.attention import (
    attention_grad,
    attention_last,
    attention_mean,
    attention_norm,
    gradient_weighted_rollout,
    residual_attention,
    rollout,
    rollout_matrices,
)
from tasks.explain.passes import BatchContext
from tests.conftest import encode

OPTIONS = MethodOptions()


def random_attention(seed: int, batch: int, heads: int, width: int) -> torch.Tensor:
    """Row-stochastic random attention ``[B, H, W, W]``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(batch, heads, width, width, generator=generator), dim=-1)


def test_rollout_of_identity_attention_is_the_identity():
    identity = torch.eye(5).expand(1, 3, 5, 5)
    assert torch.allclose(rollout_matrices([identity, identity, identity])[0], torch.eye(5))


def test_one_layer_rollout_is_half_mean_attention_plus_half_identity():
    attention = random_attention(0, 2, 4, 6)
    expected = 0.5 * attention.mean(dim=1) + 0.5 * torch.eye(6)
    assert torch.allclose(rollout_matrices([attention]), expected, atol=1e-6)


def test_rollout_multiplies_later_layers_on_the_left():
    first, second = random_attention(1, 1, 2, 4), random_attention(2, 1, 2, 4)
    expected = residual_attention(second) @ residual_attention(first)
    assert torch.allclose(rollout_matrices([first, second]), expected, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), layers=st.integers(1, 6), width=st.integers(1, 12))
def test_rollout_rows_are_probability_distributions(seed: int, layers: int, width: int):
    attentions = [random_attention(seed + layer, 2, 3, width) for layer in range(layers)]
    result = rollout_matrices(attentions)
    assert torch.all(result >= 0)
    assert torch.allclose(result.sum(dim=-1), torch.ones(2, width), atol=1e-5)


def test_attention_scores_sum_to_one_over_the_real_tokens(context: BatchContext):
    for method in (attention_last, attention_mean, rollout):
        for record in method(context, OPTIONS):
            assert np.all(record.scores >= 0)
            np.testing.assert_allclose(record.scores.sum(), 1.0, atol=1e-5)


def test_attention_last_is_the_head_mean_of_the_last_layer_cls_row(context: BatchContext, tiny_bundle):
    example = context.examples[1]
    with torch.inference_mode():
        output = tiny_bundle.model(input_ids=torch.from_numpy(example.input_ids)[None], output_attentions=True)
    expected = output.attentions[-1][0, :, 0, :].mean(dim=0).numpy()
    record = attention_last(context, OPTIONS)[1]
    np.testing.assert_allclose(record.scores, expected, atol=1e-6)


def test_attention_mean_averages_every_layer_and_head(context: BatchContext, tiny_bundle):
    example = context.examples[2]
    with torch.inference_mode():
        output = tiny_bundle.model(input_ids=torch.from_numpy(example.input_ids)[None], output_attentions=True)
    expected = torch.stack([a[0, :, 0, :] for a in output.attentions]).mean(dim=(0, 1)).numpy()
    np.testing.assert_allclose(attention_mean(context, OPTIONS)[2].scores, expected, atol=1e-6)


def test_padded_batch_gives_the_same_scores_as_one_example_at_a_time(tiny_bundle, examples):
    batched = BatchContext(tiny_bundle, examples, need_gradients=False)
    for method in (attention_last, attention_mean, rollout):
        together = method(batched, OPTIONS)
        for row, example in enumerate(examples):
            alone = method(BatchContext(tiny_bundle, [example], need_gradients=False), OPTIONS)[0]
            np.testing.assert_allclose(together[row].scores, alone.scores, atol=1e-5)


def test_scores_cover_exactly_the_example_tokens(tiny_bundle):
    examples = encode(tiny_bundle, ["short", "a somewhat longer sentence with more tokens"])
    context = BatchContext(tiny_bundle, examples, need_gradients=False)
    for record, example in zip(rollout(context, OPTIONS), examples, strict=True):
        assert record.scores.shape == (example.length,)
        assert record.content_mask.tolist() == (~example.special_mask).tolist()


def test_gradient_weighted_rollout_of_one_layer_is_identity_plus_positive_weighted_attention():
    attention = random_attention(5, 1, 3, 4)
    gradient = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(6))
    expected = torch.eye(4) + (gradient * attention).clamp(min=0).mean(dim=1)
    torch.testing.assert_close(gradient_weighted_rollout([attention], [gradient]), expected)


def test_gradient_weighted_rollout_accumulates_layer_by_layer():
    attentions = [random_attention(seed, 1, 2, 3) for seed in (7, 8)]
    gradients = [torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(seed)) for seed in (9, 10)]
    first = torch.eye(3) + (gradients[0] * attentions[0]).clamp(min=0).mean(dim=1)
    expected = first + (gradients[1] * attentions[1]).clamp(min=0).mean(dim=1) @ first
    torch.testing.assert_close(gradient_weighted_rollout(attentions, gradients), expected)


def test_attention_grad_uses_the_gradient_of_the_predicted_logit(context: BatchContext, tiny_bundle):
    example = context.examples[0]
    ids = torch.from_numpy(example.input_ids)[None]
    embeddings = tiny_bundle.model.get_input_embeddings()(ids).requires_grad_(True)  # the weights are frozen
    output = tiny_bundle.model(inputs_embeds=embeddings, output_attentions=True)
    target = int(context.targets[0])
    grads = torch.autograd.grad(output.logits[0, target], output.attentions)
    expected = gradient_weighted_rollout([a.detach() for a in output.attentions], grads)[0, 0]
    np.testing.assert_allclose(attention_grad(context, OPTIONS)[0].scores, expected.numpy(), rtol=1e-4, atol=1e-6)


def test_attention_norm_matches_a_head_by_head_computation(context: BatchContext, tiny_bundle):
    example = context.examples[3]
    ids = torch.from_numpy(example.input_ids)[None]
    with torch.no_grad():
        output = tiny_bundle.model(input_ids=ids, output_attentions=True, output_hidden_states=True)
        layer = tiny_bundle.model.bert.encoder.layer[-1]
        hidden = output.hidden_states[-2][0]  # entering the last layer
        heads, size = tiny_bundle.num_heads, hidden.shape[-1] // tiny_bundle.num_heads
        values = layer.attention.self.value(hidden)  # [T, D]
        total = torch.zeros(hidden.shape[0], hidden.shape[-1])
        for head in range(heads):
            part = slice(head * size, (head + 1) * size)
            transformed = values[:, part] @ layer.attention.output.dense.weight[:, part].T  # f_h(x_j), [T, D]
            total += output.attentions[-1][0, head, 0][:, None] * transformed
    expected = total.norm(dim=-1).numpy()
    np.testing.assert_allclose(attention_norm(context, OPTIONS)[3].scores, expected, rtol=1e-4, atol=1e-6)
