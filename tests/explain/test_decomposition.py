"""ALTI and GlobEnc: the product against explicit per-pair loops over the tiny BERT's own modules.

The loops read the weights head by head from the model's modules (not through the adapter), take
``LN1``'s and ``LN2``'s inputs and outputs from forward hooks on the real modules, and build every
``T_i(x_j)``, ``c_ij`` and GlobEnc norm one pair at a time; the rollout is a NumPy matrix product.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from tasks.config import MethodOptions
from tasks.explain.decomposition import alti, globenc, layer_matrices, query_chunks, reconstructions
from tasks.explain.passes import BatchContext

OPTIONS = MethodOptions()


def hooked_norms(model: Any, ids: torch.Tensor) -> tuple[list, list, list, list]:
    """Per layer: LN1's input and output, LN2's input; and the hidden states entering each layer."""
    ln1_in, ln1_out, ln2_in = [], [], []
    handles = []

    def first_norm(_module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        ln1_in.append(args[0][0])
        ln1_out.append(output[0])

    for layer in model.bert.encoder.layer:
        handles.append(layer.attention.output.LayerNorm.register_forward_hook(first_norm))
        handles.append(layer.output.LayerNorm.register_forward_pre_hook(lambda _m, a: ln2_in.append(a[0][0])))
    try:
        with torch.no_grad():
            output = model(input_ids=ids, output_attentions=True, output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()
    return ln1_in, ln1_out, ln2_in, [output.hidden_states, output.attentions]


def pair_parts(layer: Any, hidden: torch.Tensor, attention: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``T_i(x_j)`` one pair at a time: ``[T, T, D]``; ``z`` is LN1's hooked input (for σ₁,i)."""
    width, size = hidden.shape
    heads = attention.shape[0]
    head_size = size // heads
    value, dense, norm = layer.attention.self.value, layer.attention.output.dense, layer.attention.output.LayerNorm
    parts = torch.zeros(width, width, size)
    for i in range(width):
        sigma = torch.sqrt(z[i].var(unbiased=False) + norm.eps)
        for j in range(width):
            vector = hidden[i].clone() if i == j else torch.zeros(size)
            for head in range(heads):
                cut = slice(head * head_size, (head + 1) * head_size)
                value_h = hidden[j] @ value.weight[cut].T + value.bias[cut]
                vector += attention[head, i, j] * (value_h @ dense.weight[:, cut].T)
            parts[i, j] = norm.weight * (vector - vector.mean()) / sigma
    return parts


def loop_matrices(model: Any, ids: torch.Tensor) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each layer's normalised ALTI and GlobEnc matrices, computed pair by pair."""
    ln1_in, ln1_out, ln2_in, (hidden_states, attentions) = hooked_norms(model, ids)
    alti_layers, globenc_layers = [], []
    with torch.no_grad():
        for index, layer in enumerate(model.bert.encoder.layer):
            parts = pair_parts(layer, hidden_states[index][0], attentions[index][0], ln1_in[index])
            width = parts.shape[0]
            norm2 = layer.output.LayerNorm
            contributions, norms = np.zeros((width, width)), np.zeros((width, width))
            for i in range(width):
                y = ln1_out[index][i]
                sigma2 = torch.sqrt(ln2_in[index][i].var(unbiased=False) + norm2.eps)
                for j in range(width):
                    contributions[i, j] = max(0.0, float(y.abs().sum() - (y - parts[i, j]).abs().sum()))
                    carried = norm2.weight * (parts[i, j] - parts[i, j].mean()) / sigma2
                    norms[i, j] = float(carried.norm())
            alti_layers.append(contributions / contributions.sum(axis=1, keepdims=True))
            globenc_layers.append(norms / norms.sum(axis=1, keepdims=True))
    return alti_layers, globenc_layers


def top_row(matrices: list[np.ndarray]) -> np.ndarray:
    rollout = np.eye(matrices[0].shape[0])
    for matrix in matrices:
        rollout = matrix @ rollout
    return rollout[0]


@pytest.fixture
def loops(context: BatchContext, tiny_bundle) -> dict[int, tuple[list[np.ndarray], list[np.ndarray]]]:
    rows = (0, 3)  # a short and a long example of the padded batch
    return {
        row: loop_matrices(tiny_bundle.model, torch.from_numpy(context.examples[row].input_ids)[None]) for row in rows
    }


def test_alti_and_globenc_layer_matrices_equal_the_per_pair_loops(context: BatchContext, loops):
    product = {"alti": layer_matrices(context, "alti"), "globenc": layer_matrices(context, "globenc")}
    for row, (alti_loop, globenc_loop) in loops.items():
        length = context.examples[row].length
        for layer in range(len(alti_loop)):
            ours_alti = product["alti"][layer][row, :length, :length].double().numpy()
            ours_globenc = product["globenc"][layer][row, :length, :length].double().numpy()
            np.testing.assert_allclose(ours_alti, alti_loop[layer], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(ours_globenc, globenc_loop[layer], rtol=1e-4, atol=1e-6)


def test_the_scores_are_row_c_of_the_rollout_without_identity(context: BatchContext, loops):
    for row, (alti_loop, globenc_loop) in loops.items():
        np.testing.assert_allclose(alti(context, OPTIONS)[row].scores, top_row(alti_loop), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(globenc(context, OPTIONS)[row].scores, top_row(globenc_loop), rtol=1e-4, atol=1e-6)


def test_the_decomposition_reconstructs_the_real_layer_norm_output(context: BatchContext, tiny_bundle):
    for row in (0, 3):
        ids = torch.from_numpy(context.examples[row].input_ids)[None]
        _, ln1_out, _, _ = hooked_norms(tiny_bundle.model, ids)
        length = context.examples[row].length
        for layer, rebuilt in enumerate(reconstructions(context)):
            torch.testing.assert_close(rebuilt[row, :length], ln1_out[layer].double(), atol=1e-5, rtol=1e-5)


def test_chunking_the_queries_changes_nothing(tiny_bundle, context: BatchContext):
    small = BatchContext(tiny_bundle, context.examples, token_budget=1, need_gradients=False)
    assert len(query_chunks(len(context.examples), int(context.lengths.max()), 1)) == int(context.lengths.max())
    for method in (alti, globenc):
        for ours, chunked in zip(method(context, OPTIONS), method(small, OPTIONS), strict=True):
            np.testing.assert_allclose(ours.scores, chunked.scores, rtol=1e-5, atol=1e-7)


def test_alti_and_globenc_read_the_model_pass_and_cost_no_extra_pass(tiny_bundle, examples):
    for method in (alti, globenc):
        context = BatchContext(tiny_bundle, examples, need_gradients=False)
        _ = context.model_pass
        before = context.counter.snapshot()
        method(context, OPTIONS)
        assert context.counter.minus(before) == before.minus(before)  # no forward or backward row, no token
