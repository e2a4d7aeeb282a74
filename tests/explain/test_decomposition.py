"""ALTI and GlobEnc: the product against explicit per-pair loops over the tiny models' own modules.

The loops read the weights head by head from the model's modules (not through the adapter), take
``LN1``'s and ``LN2``'s inputs and outputs from forward hooks on the real modules, and build every
``T_i(x_j)``, ``c_ij`` and GlobEnc norm one pair at a time; the rollout is a NumPy matrix product.
The tiny BERT stands for the post-LN encoders; the tiny GPT-2 (``LayerNorm``, fused ``Conv1D``
projections) and Llama (``RMSNorm``, grouped-query attention, rotary positions, no output bias) for
the pre-norm decoders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tasks.config import MethodOptions, ModelSpec
from tasks.errors import AuditError
from tasks.explain.decomposition import alti, globenc, layer_matrices, query_chunks, reconstructions
from tasks.explain.passes import BatchContext
from tasks.explain.registry import METHODS
from tasks.model.bundle import ModelBundle
from tasks.model.loading import load_model
from tests.conftest import TEXTS, encode
from tests.tiny_families import FAMILIES, save_tiny

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


# --- pre-norm decoders (Ferrando et al. 2023) --------------------------------------------------------

DECODER_LAYOUT = {
    "gpt2": ("transformer.h", "ln_1", "ln_2"),
    "llama": ("model.layers", "input_layernorm", "post_attention_layernorm"),
}
"""Per decoder family, read independently of the adapter: its layers, the norm before the attention, and
the norm before the feed-forward block (whose input is the attention block's output ``y``)."""


def _path(root: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        root = getattr(root, part)
    return root


def with_random_biases(model: torch.nn.Module) -> None:
    """Give every linear map and layer norm of the layers a random bias (``N(0, 0.2²)``), adding it where absent.

    The tiny decoders are initialised with zero biases (GPT-2) or none (Llama), which would leave ``b_O``,
    ``b_V`` and ``ln_1``'s ``β`` untested; real checkpoints have them.
    """
    from transformers.pytorch_utils import Conv1D

    generator = torch.Generator().manual_seed(1)
    for layer in decoder_layers(model):
        for module in layer.modules():
            if isinstance(module, torch.nn.Linear | torch.nn.LayerNorm | Conv1D):
                size = module.weight.shape[1] if isinstance(module, Conv1D) else module.weight.shape[0]
                module.bias = torch.nn.Parameter(0.2 * torch.randn(size, generator=generator))


@pytest.fixture(scope="module", params=sorted(DECODER_LAYOUT))
def decoder(request, tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    folder: Path = tmp_path_factory.mktemp(f"tiny-{request.param}")
    bundle = load_model(ModelSpec(name_or_path=str(save_tiny(FAMILIES[request.param], folder))))
    with_random_biases(bundle.model)
    return bundle


@pytest.fixture(scope="module")
def decoder_context(decoder: ModelBundle) -> BatchContext:
    return BatchContext(decoder, encode(decoder, TEXTS), need_gradients=False)


def decoder_layers(model: Any) -> list[Any]:
    return list(_path(model, DECODER_LAYOUT[model.config.model_type][0]))


def hooked_block_outputs(model: Any, ids: torch.Tensor) -> tuple[list[torch.Tensor], Any]:
    """Per layer, ``y``: the residual stream after the attention block, read as the second norm's input."""
    second = DECODER_LAYOUT[model.config.model_type][2]
    captured: list[torch.Tensor] = []
    handles = [
        _path(layer, second).register_forward_pre_hook(lambda _m, args: captured.append(args[0][0].detach()))
        for layer in decoder_layers(model)
    ]
    try:
        with torch.no_grad():
            output = model(input_ids=ids, output_attentions=True, output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()
    return captured, output


def head_vectors(model: Any, layer: Any, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``f_h(LN(x))`` of every head for one state ``x [D]``, and ``b_O``, read from the family's modules.

    GPT-2: ``c_attn`` packs ``[Q | K | V]`` along its output columns (``Conv1D``: ``x W + b``), ``c_proj`` is
    ``x W + b`` too. Llama: query head ``h`` reads key/value head ``h // (H / H_kv)``; ``o_proj`` has no bias.
    """
    config = model.config
    heads, size = config.num_attention_heads, config.hidden_size
    normed = _path(layer, DECODER_LAYOUT[config.model_type][1])(x[None, None])[0, 0].double()
    if config.model_type == "gpt2":
        d = size // heads
        attention = layer.attn
        weight, bias, out = attention.c_attn.weight.double(), attention.c_attn.bias.double(), attention.c_proj
        vectors = []
        for h in range(heads):
            cut = slice(2 * size + h * d, 2 * size + (h + 1) * d)
            vectors.append((normed @ weight[:, cut] + bias[cut]) @ out.weight.double()[h * d : (h + 1) * d])
        return vectors, out.bias.double()
    d = getattr(config, "head_dim", None) or size // heads
    group = heads // config.num_key_value_heads
    value, out = layer.self_attn.v_proj, layer.self_attn.o_proj
    vectors = []
    for h in range(heads):
        rows = slice((h // group) * d, (h // group + 1) * d)
        v = normed @ value.weight.double()[rows].T + (value.bias.double()[rows] if value.bias is not None else 0)
        vectors.append(v @ out.weight.double()[:, h * d : (h + 1) * d].T)
    return vectors, out.bias.double() if out.bias is not None else torch.zeros(size, dtype=torch.float64)


def decoder_loop_matrices(model: Any, ids: torch.Tensor) -> list[np.ndarray]:
    """Each layer's normalised ALTI matrix of a pre-norm decoder, one pair ``(i, j)`` at a time.

    ``T_i(x_j) = Σ_h A_h[i,j] f_h(LN(x_j)) + δ_ij x_i``; ``y_i`` is the hooked input of the second norm;
    ``c_ij = max(0, ‖y_i‖₁ − ‖y_i − T_i(x_j)‖₁)``. Also checks that ``Σ_j T_i(x_j) + b_O = y_i``.
    """
    outputs, forward = hooked_block_outputs(model, ids)
    matrices = []
    with torch.no_grad():
        for index, layer in enumerate(decoder_layers(model)):
            states, attention = forward.hidden_states[index][0], forward.attentions[index][0].double()
            width = states.shape[0]
            per_token = [head_vectors(model, layer, states[j]) for j in range(width)]  # the norm runs in float32
            hidden = states.double()
            bias = per_token[0][1]
            contributions = np.zeros((width, width))
            for i in range(width):
                y = outputs[index][i].double()
                total = bias.clone()
                for j in range(width):
                    part = hidden[i].clone() if i == j else torch.zeros_like(hidden[i])
                    for h, vector in enumerate(per_token[j][0]):
                        part += attention[h, i, j] * vector
                    total += part
                    contributions[i, j] = max(0.0, float(y.abs().sum() - (y - part).abs().sum()))
                torch.testing.assert_close(total, y, atol=1e-5, rtol=1e-5)
            matrices.append(contributions / contributions.sum(axis=1, keepdims=True))
    return matrices


def test_the_decoder_decomposition_reconstructs_the_residual_stream_after_attention(decoder_context):
    """``Σ_j T_i(x_j) + b_O`` equals ``x_i + Attn(LN(x))_i`` as the real block computes it (the second norm's input)."""
    model, rebuilt = decoder_context.bundle.model, reconstructions(decoder_context)
    for row, example in enumerate(decoder_context.examples):
        outputs, _ = hooked_block_outputs(model, torch.from_numpy(example.input_ids)[None])
        assert len(outputs) == len(rebuilt) == model.config.num_hidden_layers
        for layer, output in enumerate(outputs):
            torch.testing.assert_close(rebuilt[layer][row, : example.length], output.double(), atol=1e-5, rtol=1e-5)


def test_decoder_alti_equals_the_per_pair_loop_and_reads_the_last_real_token(decoder_context):
    product = layer_matrices(decoder_context, "alti")
    records = alti(decoder_context, OPTIONS)
    for row in (0, 2):  # a short and a long example of the right-padded batch
        example = decoder_context.examples[row]
        loop = decoder_loop_matrices(decoder_context.bundle.model, torch.from_numpy(example.input_ids)[None])
        length = example.length
        for layer, expected in enumerate(loop):
            ours = product[layer][row, :length, :length].double().numpy()
            np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)
            assert np.allclose(np.triu(expected, k=1), 0)  # causal: no token takes from a later one
        rollout = np.eye(length)
        for matrix in loop:
            rollout = matrix @ rollout
        np.testing.assert_allclose(records[row].scores, rollout[length - 1], rtol=1e-4, atol=1e-6)
        assert records[row].scores.sum() == pytest.approx(1.0, abs=1e-9)
        assert (records[row].scores >= 0).all()


def test_decoder_layer_rows_are_distributions_over_the_real_tokens(decoder_context):
    mask = decoder_context.attention_mask.bool()
    for matrix in layer_matrices(decoder_context, "alti"):
        real = matrix[mask]  # the real query rows, [N, W]
        torch.testing.assert_close(real.sum(dim=-1), torch.ones(real.shape[0], dtype=real.dtype))
        assert (real >= 0).all()
        padding_keys = (~mask).repeat_interleave(torch.from_numpy(decoder_context.lengths), dim=0)
        assert (real[padding_keys] == 0).all()


def test_a_right_padded_decoder_batch_chunked_or_not_scores_as_one_example_at_a_time(decoder, decoder_context):
    lengths = decoder_context.lengths
    assert decoder_context.attention_mask.sum(dim=1).tolist() == lengths.tolist()
    assert (decoder_context.attention_mask[:, 0] == 1).all()  # right-padded
    assert decoder_context.classification_positions.tolist() == (lengths - 1).tolist()
    examples = decoder_context.examples
    chunked = BatchContext(decoder, examples, token_budget=1, need_gradients=False)
    for batch in (alti(decoder_context, OPTIONS), alti(chunked, OPTIONS)):
        for record, example in zip(batch, examples, strict=True):
            (alone,) = alti(BatchContext(decoder, [example], need_gradients=False), OPTIONS)
            assert record.scores.shape == (example.length,)
            np.testing.assert_allclose(record.scores, alone.scores, rtol=1e-5, atol=1e-8)


def test_on_a_decoder_globenc_and_decompx_are_not_applicable_and_say_why(decoder, decoder_context):
    adapter = decoder.adapter
    assert METHODS["alti"].unsupported(adapter) == ""  # type: ignore[misc]
    globenc_reason = METHODS["globenc"].unsupported(adapter)  # type: ignore[misc]
    assert globenc_reason.startswith(adapter.family) and "pre-norm" in globenc_reason
    assert "GlobEnc" in globenc_reason and "post-LN" in globenc_reason
    decompx_reason = METHODS["decompx"].unsupported(adapter)  # type: ignore[misc]
    assert decompx_reason.startswith(adapter.family) and "pre-norm" in decompx_reason and "alti" in decompx_reason
    with pytest.raises(AuditError, match="pre-norm"):
        globenc(decoder_context, OPTIONS)
