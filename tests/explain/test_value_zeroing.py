"""Value Zeroing (docs/methodology.md, ``value_zeroing``): per-layer maps, rollout, pass count, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks.config import MethodOptions
from tasks.explain.passes import BatchContext
from tasks.explain.registry import METHODS
from tasks.explain.value_zeroing import value_zeroing, value_zeroing_maps, value_zeroing_rollout, zero_value_columns

OPTIONS = MethodOptions()


def one_layer_zeroing(bundle, input_ids: np.ndarray, layer: int) -> np.ndarray:
    """``C[i, j]`` of one layer by hand: zero token ``j``'s value projection output, run that one layer.

    An explicit loop over ``j``: the clean input ``h^{l-1}`` comes from the model's own forward, a hook
    on the layer's ``value`` projection sets row ``j`` of its output to 0 (every head at once), and the
    BERT layer runs alone on the unpadded example.
    """
    model = bundle.model
    with torch.no_grad():
        states = model(input_ids=torch.from_numpy(input_ids)[None], output_hidden_states=True).hidden_states
        module = model.bert.encoder.layer[layer]
        clean = module(states[layer])[0].double()
        length = len(input_ids)
        result = np.zeros((length, length))
        for j in range(length):

            def zero_j(_module, _inputs, output, j=j):
                output = output.clone()
                output[:, j] = 0
                return output

            handle = module.attention.self.value.register_forward_hook(zero_j)
            try:
                zeroed = module(states[layer])[0].double()
            finally:
                handle.remove()
            for i in range(length):
                result[i, j] = 1.0 - float(torch.dot(zeroed[i], clean[i]) / (zeroed[i].norm() * clean[i].norm()))
    return result


@pytest.mark.parametrize("layer", [0, 1])
def test_each_layer_map_equals_zeroing_one_value_vector_in_that_layer_alone(context: BatchContext, layer: int):
    maps = value_zeroing_maps(context)
    for row in (0, 2):
        expected = one_layer_zeroing(context.bundle, context.examples[row].input_ids, layer)
        np.testing.assert_allclose(maps[row][layer].numpy(), expected, atol=2e-6)
        assert expected.max() > 1e-3  # the check is not vacuous: zeroing moves the outputs


def test_the_scores_are_row_c_of_the_rollout_of_the_normalised_maps(context: BatchContext):
    maps = value_zeroing_maps(context, last_at_c=True)
    for record, matrices in zip(value_zeroing(context, OPTIONS), maps, strict=True):
        normalised = [m / m.sum(axis=1, keepdims=True).clip(min=1e-300) for m in matrices.numpy()]
        product = np.linalg.multi_dot(normalised[::-1]) if len(normalised) > 1 else normalised[0]
        np.testing.assert_allclose(record.scores, product[0], atol=1e-12)


def test_the_last_layer_at_c_alone_gives_row_c_of_the_full_map_and_the_same_scores(context: BatchContext):
    """Only row ``c`` of ``Ĉ^L`` reaches ``R[c]``; computed alone it equals the full layer's to float32 rounding."""
    full, at_c = value_zeroing_maps(context), value_zeroing_maps(context, last_at_c=True)
    positions = context.classification_positions.tolist()
    for whole, partial, position in zip(full, at_c, positions, strict=True):
        torch.testing.assert_close(partial[:-1], whole[:-1], rtol=0, atol=0)  # the layers below: the same runs
        others = torch.ones(whole.shape[1], dtype=torch.bool)
        others[position] = False
        assert torch.all(partial[-1][others] == 0)
        np.testing.assert_allclose(partial[-1][position].numpy(), whole[-1][position].numpy(), atol=1e-6)
        assert whole[-1][position].max() > 1e-3  # not vacuous
        np.testing.assert_allclose(
            value_zeroing_rollout(partial)[position].numpy(), value_zeroing_rollout(whole)[position].numpy(), atol=1e-6
        )


def test_rollout_rows_sum_to_one_and_scores_are_distributions(context: BatchContext):
    for matrices in value_zeroing_maps(context):
        assert torch.all(matrices >= 0)
        rows = value_zeroing_rollout(matrices).sum(dim=-1)
        torch.testing.assert_close(rows, torch.ones_like(rows))
    for record in value_zeroing(context, OPTIONS):
        assert record.scores.shape == (len(record.content_mask),)
        assert record.scores.sum() == pytest.approx(1.0, abs=1e-9)
        assert (record.scores >= 0).all()


def test_a_padded_batch_scores_as_one_example_at_a_time(tiny_bundle, examples):
    together = value_zeroing(BatchContext(tiny_bundle, examples, need_gradients=False), OPTIONS)
    for example, record in zip(examples, together, strict=True):
        (alone,) = value_zeroing(BatchContext(tiny_bundle, [example], need_gradients=False), OPTIONS)
        np.testing.assert_allclose(record.scores, alone.scores, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("budget", [8192, 40])
def test_an_example_costs_n_plus_one_rows_through_every_layers_feed_forward(tiny_bundle, examples, budget: int):
    """``n + 1`` rows through the feed-forward block's second map in every layer (the last at ``c`` only), and no
    query, key or first feed-forward map: the model pass's probabilities are reused, the values computed once,
    and the first map applied to the clean positions and the zeroed values, not to a run's positions (post-LN)."""
    context = BatchContext(tiny_bundle, examples, need_gradients=False, token_budget=budget)
    _ = context.model_pass  # the shared pass, not Value Zeroing's
    layers = range(tiny_bundle.num_layers)
    parts = [tiny_bundle.adapter.layer_parts(tiny_bundle.model, layer) for layer in layers]
    rows_seen = [0 for _ in layers]
    positions_seen: list[set[int]] = [set() for _ in layers]
    projections_run = []

    def count(at: int, inputs: tuple[torch.Tensor, ...]) -> None:
        rows_seen[at] += len(inputs[0])
        positions_seen[at].add(inputs[0].shape[1])

    handles = [
        part.ffn_output.register_forward_hook(lambda _m, i, _o, at=at: count(at, i)) for at, part in enumerate(parts)
    ]
    handles += [part.intermediate.register_forward_hook(lambda *_: projections_run.append(1)) for part in parts]
    for module in tiny_bundle.adapter.layer_modules(tiny_bundle.model):
        for projection in (module.attention.self.query, module.attention.self.key):
            handles.append(projection.register_forward_hook(lambda *_: projections_run.append(1)))
    before = context.counter.snapshot()
    try:
        value_zeroing(context, OPTIONS)
    finally:
        for handle in handles:
            handle.remove()
    expected = sum(example.length + 1 for example in examples)
    assert rows_seen == [expected] * len(rows_seen)
    assert all(1 not in seen for seen in positions_seen[:-1]) and positions_seen[-1] == {1}  # the last: c alone
    assert not projections_run
    spent = context.counter.minus(before)
    assert spent.forward_rows == expected
    assert spent.forward_tokens == sum(example.length * (example.length + 1) for example in examples)


def test_zeroing_a_value_column_removes_that_key_without_renormalising():
    probabilities = torch.softmax(torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
    edited = zero_value_columns(torch.tensor([1, -1, 3]))(0, probabilities)
    assert torch.all(edited[0, :, :, 1] == 0) and torch.all(edited[2, :, :, 3] == 0)
    torch.testing.assert_close(edited[1], probabilities[1])
    keep = torch.ones(4, dtype=torch.bool)
    keep[1] = False
    torch.testing.assert_close(edited[0][..., keep], probabilities[0][..., keep])


def test_value_zeroing_is_registered_in_the_default_set_with_its_not_applicable_reason():
    spec = METHODS["value_zeroing"]
    assert spec.unsupported is not None and spec.default and not spec.signed
