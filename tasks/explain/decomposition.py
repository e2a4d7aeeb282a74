"""Attention-derived explanations that decompose the attention block by source token: ALTI and GlobEnc.

**Post-LN encoders.** A post-LN encoder layer ``l`` computes, for the hidden states ``x`` entering it
(``[W, D]``, token ``j`` in row ``j``), attention ``A_h`` of head ``h`` and the value and output
projections of head ``h``,

    z_i = x_i + Σ_j Σ_h A_h[i,j] (x_j W_V^h + b_V^h) W_O^h + b_O          (LN1's input)
    y_i = LN1(z_i) = γ₁ ⊙ (z_i − μ(z_i)) / σ₁,i + β₁                      (the attention block's output)
    x'_i = LN2(y_i + FFN(y_i))                                            (the layer's output)

With ``σ₁,i = sqrt(Var(z_i) + ε)`` held at token ``i``'s own value, ``LN1`` is linear in ``z_i``, so
``y_i`` splits exactly by source token:

    T_i(x_j) = γ₁ ⊙ (v_ij − μ(v_ij)) / σ₁,i,   v_ij = Σ_h A_h[i,j] f_h(x_j) + δ_ij x_i,
    y_i = Σ_j T_i(x_j) + b̃_i,   b̃_i = γ₁ ⊙ (b_O − μ(b_O)) / σ₁,i + β₁,

with ``f_h(x) = (x W_V^h + b_V^h) W_O^h``. Biases: ``b_V`` is carried per token (``Σ_j A_h[i,j] = 1``, so
it splits by the attention weights), as in both papers' code; ``b_O``, ``β₁`` (and ``β₂``) belong to no
token and stay in ``b̃_i``, outside every token's vector. ``μ(v)`` is the mean over the ``D`` features.

- **ALTI** (Ferrando et al. 2022): ``c_ij = max(0, ‖y_i‖₁ − ‖y_i − T_i(x_j)‖₁)``, where ``y_i`` is the
  real ``LN1`` output (bias included); rows normalised, ``C[i,j] = c_ij / Σ_k c_ik``.
- **GlobEnc** (Modarressi et al. 2022): each token's part carried through ``LN2`` as well, linearised
  with the real statistics of ``LN2``'s input ``u_i = y_i + FFN(y_i)`` (the feed-forward block itself is
  left out, as in the paper): ``x̃_i←j = γ₂ ⊙ (T_i(x_j) − μ(T_i(x_j))) / σ₂,i``, score ``‖x̃_i←j‖₂``; rows
  normalised, ``N[i,j] = ‖x̃_i←j‖₂ / Σ_k ‖x̃_i←k‖₂``.

**Pre-norm decoders** (GPT-2: ``LayerNorm`` ``ln_1``; Llama-style: ``RMSNorm`` ``input_layernorm``). The
norm comes before the attention and the residual stream is not normalised (Ferrando et al. 2023):

    y_i = x_i + Σ_j Σ_h A_h[i,j] (LN(x_j) W_V^h + b_V^h) W_O^h + b_O        (the attention block's output)

``LN(x_j)`` is a function of ``x_j`` alone, so ``y_i`` splits by source token exactly, with no statistic
held fixed: ``T_i(x_j) = Σ_h A_h[i,j] f_h(LN(x_j)) + δ_ij x_i``, ``b̃_i = b_O`` (zero where the output
projection has no bias, as Llama's ``o_proj``). ``β`` of GPT-2's ``ln_1`` and ``b_V`` (Qwen2's) are carried
per token inside ``f_h(LN(x_j))``, as in the authors' code. Grouped-query attention shares a value head
among several query heads (repeated by the adapter); rotary positions, Qwen3's query/key norms and
Mistral's sliding window change only ``A``, which is read from the model pass.

- **ALTI for decoders** (Ferrando et al. 2023): the same ``c_ij = max(0, ‖y_i‖₁ − ‖y_i − T_i(x_j)‖₁)`` on
  this ``y_i`` (``b_O`` included). The authors' code stores the distance form ``−‖y_i − T_i(x_j)‖₁`` and
  normalises each row by adding ``‖y_i‖₁``, clipping at 0 and dividing by the row sum ("min_sum" with the
  resultant norm): term for term the formula here, so one formula serves both layouts.
- **GlobEnc** is not defined there: it carries each part through ``LN2`` of a post-LN layer.

Both combine layers by rollout **without** an added identity (the residual is already inside each
matrix), as the authors' code does: ``R = M[L] ··· M[1]``, score ``R[c,:]``; every row of each ``M`` is
normalised before the product, so ``R[c,:]`` sums to 1 over the real tokens. Padding keys have zero
attention, hence zero parts and zero scores, so a padded batch gives the numbers of one example at a time
(decoders are right-padded and ``c`` is the last real token: no real row reads a later key, so row ``c``
of the rollout never passes through a padding position).

Precision: the decomposition runs in float64 on the model pass's states (``c_ij`` is a difference of
two nearly equal L1 norms, which float32 rounding would make depend on the batching by ~1e-6).

Memory: the parts ``T_i(x_j)`` of one layer are ``[B, W, W, D]``; they are built for a chunk of query
rows at a time, ``B · rows · W`` at most the context's token budget.

Families: ALTI on every family whose adapter has a ``PostNormLayout`` (BERT, RoBERTa, XLM-R, ELECTRA,
DistilBERT, ALBERT, DeBERTa-v2/v3; read through ``ModelAdapter.layer_parts`` like DecompX) or a
``PreNormBlock`` (GPT-2, Llama, Mistral, Qwen2, Qwen3); GlobEnc on the post-LN ones only
(``unsupported_globenc`` says why not on decoders).

References:
    Ferrando, Gállego & Costa-jussà (2022), "Measuring the Mixing of Contextual Information in the
    Transformer", EMNLP. https://arxiv.org/abs/2203.04212 (code: mt-upc/transformer-contributions)
    Ferrando, Gállego, Tsiamas & Costa-jussà (2023), "Explaining How Transformers Use Context to Build
    Predictions", ACL. https://arxiv.org/abs/2305.12535 (code: mt-upc/logit-explanations)
    Modarressi, Fayyaz, Yaghoobzadeh & Pilehvar (2022), "GlobEnc: Quantifying Global Token Attribution
    by Incorporating the Whole Encoder Layer in Transformers", NAACL. https://arxiv.org/abs/2205.03286
    (code: mohsenfayyaz/GlobEnc)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from tasks.config import MethodOptions
from tasks.explain.attention import product_rollout, rows_at
from tasks.explain.passes import BatchContext
from tasks.model.adapters.base import ModelAdapter, split_heads
from tasks.model.adapters.decomposition import LayerParts, not_decomposable
from tasks.records import TokenScores

Kind = Literal["alti", "globenc"]


def unsupported_alti(adapter: ModelAdapter) -> str:
    """Why ALTI does not apply to ``adapter``'s family; ``""`` where it does (post-LN or pre-norm layers)."""
    if adapter.pre_norm is not None:
        return ""
    return not_decomposable(adapter)


def unsupported_globenc(adapter: ModelAdapter) -> str:
    """Why GlobEnc does not apply to ``adapter``'s family; ``""`` where it does (post-LN layers)."""
    return not_decomposable(adapter)


@dataclass(frozen=True)
class BlockDecomposition:
    """The attention block's output at a chunk of ``Q`` query rows, split by source token.

    Attributes:
        parts: ``T_i(x_j)``, ``[B, Q, W, D]``.
        bias: ``b̃_i``, the part of no token, ``[B, Q, D]``.
    """

    parts: torch.Tensor
    bias: torch.Tensor

    @property
    def output(self) -> torch.Tensor:
        """``y_i = Σ_j T_i(x_j) + b̃_i``, ``[B, Q, D]``: ``LN1``'s output, or a pre-norm block's residual stream."""
        return self.parts.sum(dim=2) + self.bias


def token_vectors(layer: LayerParts, hidden: torch.Tensor) -> torch.Tensor:
    """``f_h(x_j) = (x_j W_V^h + b_V^h) W_O^h`` of the states ``hidden [B, W, D]``: ``[B, W, H, D]``."""
    values = layer.value(hidden).view(*hidden.shape[:2], layer.heads, -1)  # [B, W, H, d]
    return head_vectors(values, split_heads(layer.output.weight, layer.heads))


def head_vectors(values: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """``f_h = v_h W_O^h``: ``values [B, W, H, d]``, ``W_O [D, H, d]`` -> ``[B, W, H, D]`` (float64)."""
    return torch.einsum("bwhd,ohd->bwho", values.double(), output.double())


def mix(vectors: torch.Tensor, attention: torch.Tensor, hidden: torch.Tensor, queries: slice) -> torch.Tensor:
    """``v_ij = Σ_h A_h[i,j] f_h(x_j) + δ_ij x_i`` for the query rows ``queries``, ``[B, Q, W, D]`` (float64).

    Args:
        vectors: ``f_h(x_j)``, ``[B, W, H, D]`` (``token_vectors``; a pre-norm layer's read ``LN(x_j)``).
        attention: ``A``, ``[B, H, W, W]`` (rows queries).
        hidden: ``x``, the states entering the layer, ``[B, W, D]``.
        queries: The query rows ``i`` of this chunk.
    """
    mixed = torch.einsum("bhij,bjho->bijo", attention[:, :, queries].double(), vectors)  # [B, Q, W, D]
    rows = torch.arange(mixed.shape[1], device=mixed.device)
    mixed[:, rows, rows + (queries.start or 0)] += hidden[:, queries].double()  # the residual, δ_ij x_i
    return mixed


def decompose_pre_norm_block(
    vectors: torch.Tensor, attention: torch.Tensor, hidden: torch.Tensor, output_bias: torch.Tensor, queries: slice
) -> BlockDecomposition:
    """A pre-norm block's ``y_i = x_i + Attn(LN(x))_i`` split by source token: ``T_i(x_j) = v_ij``, ``b̃_i = b_O``.

    Args are those of ``mix``, and ``output_bias``: ``b_O``, ``[D]``.
    """
    mixed = mix(vectors, attention, hidden, queries)
    return BlockDecomposition(parts=mixed, bias=output_bias.double().expand(*mixed.shape[:2], -1))


def decompose_block(
    vectors: torch.Tensor,
    attention: torch.Tensor,
    hidden: torch.Tensor,
    layer: LayerParts,
    queries: slice,
) -> BlockDecomposition:
    """A post-LN block's ``y_i = LN1(z_i)`` split by source token ``j`` for the query rows ``queries``.

    Args:
        vectors: ``f_h(x_j)``, ``[B, W, H, D]`` (``token_vectors``).
        attention: ``A``, ``[B, H, W, W]`` (rows queries).
        hidden: ``x``, the states entering the layer, ``[B, W, D]``.
        layer: The layer's modules, of which ``b_O`` and ``LN1`` are read here.
        queries: The query rows ``i`` of this chunk.

    Returns:
        ``T_i(x_j)`` and ``b̃_i`` of the module docstring, with ``σ₁,i`` from the reconstructed ``z_i``.
    """
    mixed = mix(vectors, attention, hidden, queries)
    bias = mixed.new_zeros(mixed.shape[-1]) if layer.output.bias is None else layer.output.bias.double()
    z = mixed.sum(dim=2) + bias
    sigma = (z.var(dim=-1, unbiased=False, keepdim=True) + layer.norm1.eps).sqrt()  # [B, Q, 1]
    gamma, beta = layer.norm1.weight.double(), layer.norm1.bias.double()
    parts = gamma * (mixed - mixed.mean(dim=-1, keepdim=True)) / sigma[:, :, None]
    return BlockDecomposition(parts=parts, bias=gamma * (bias - bias.mean()) / sigma + beta)


def alti_rows(block: BlockDecomposition) -> torch.Tensor:
    """ALTI's ``c_ij = max(0, ‖y_i‖₁ − ‖y_i − T_i(x_j)‖₁)``, ``[B, Q, W]`` (not normalised)."""
    output = block.output
    distance = (output[:, :, None] - block.parts).abs().sum(dim=-1)
    return (output.abs().sum(dim=-1, keepdim=True) - distance).clamp(min=0)


def globenc_rows(block: BlockDecomposition, second_norm: torch.nn.LayerNorm, ln2_input: torch.Tensor) -> torch.Tensor:
    """GlobEnc's ``‖γ₂ ⊙ (T_i(x_j) − μ) / σ₂,i‖₂``, ``[B, Q, W]``, ``σ₂`` of ``ln2_input [B, Q, D]``."""
    sigma = (ln2_input.double().var(dim=-1, unbiased=False) + second_norm.eps).sqrt()  # [B, Q]
    centred = block.parts - block.parts.mean(dim=-1, keepdim=True)
    return (second_norm.weight.double() * centred).norm(dim=-1) / sigma[:, :, None]


def normalise_rows(matrix: torch.Tensor) -> torch.Tensor:
    """Each row divided by its sum (rows of zeros stay zero)."""
    return matrix / matrix.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(matrix.dtype).tiny)


def query_chunks(batch: int, width: int, token_budget: int) -> list[slice]:
    """Query rows per chunk so that ``batch · rows · width <= token_budget`` (at least one row)."""
    rows = max(1, token_budget // max(1, batch * width))
    return [slice(start, min(start + rows, width)) for start in range(0, width, rows)]


def block_decomposer(context: BatchContext, layer: int) -> Callable[[slice], BlockDecomposition]:
    """Layer ``layer``'s attention block split by source token, for a chunk of query rows at a time.

    The family's adapter supplies the layout: a ``PreNormBlock`` (decoders) gives
    ``decompose_pre_norm_block``, otherwise the ``PostNormLayout``'s modules give ``decompose_block``.
    """
    bundle, model_pass = context.bundle, context.model_pass
    adapter, model = bundle.adapter, bundle.model
    hidden, attention = model_pass.hidden_states[layer], model_pass.attentions[layer]
    if adapter.pre_norm is not None:
        vectors = head_vectors(*adapter.norm_vectors(model, layer, hidden))
        bias = adapter.output_bias(model, layer)
        return lambda queries: decompose_pre_norm_block(vectors, attention, hidden, bias, queries)
    parts = adapter.layer_parts(model, layer)
    vectors = token_vectors(parts, hidden)
    return lambda queries: decompose_block(vectors, attention, hidden, parts, queries)


def layer_matrices(context: BatchContext, kind: Kind) -> list[torch.Tensor]:
    """Each layer's row-normalised ALTI or GlobEnc matrix, ``L`` tensors ``[B, W, W]``, first layer first."""
    bundle = context.bundle
    layers = range(bundle.num_layers)
    second_norms = []
    if kind == "globenc":  # post-LN only: layer_parts says why not elsewhere
        second_norms = [bundle.adapter.layer_parts(bundle.model, layer).norm2 for layer in layers]
    ln2_inputs = context.module_inputs(second_norms) if second_norms else []
    batch, width = context.model_pass.hidden_states[0].shape[:2]
    matrices = []
    with torch.inference_mode():
        for layer in layers:
            decompose = block_decomposer(context, layer)
            rows = []
            for queries in query_chunks(batch, width, context.token_budget):
                block = decompose(queries)
                if kind == "alti":
                    rows.append(alti_rows(block))
                else:
                    rows.append(globenc_rows(block, second_norms[layer], ln2_inputs[layer][:, queries]))
            matrices.append(normalise_rows(torch.cat(rows, dim=1)))
    return matrices


def _scores(context: BatchContext, kind: Kind) -> list[TokenScores]:
    rollout = product_rollout(layer_matrices(context, kind))
    return context.records(kind, rows_at(rollout, context.classification_positions))


def alti(context: BatchContext, options: MethodOptions) -> list[TokenScores]:
    """ALTI (Ferrando et al. 2022; decoders: 2023): row ``c`` of the rollout of the layers' normalised ``c_ij``."""
    return _scores(context, "alti")


def globenc(context: BatchContext, options: MethodOptions) -> list[TokenScores]:
    """GlobEnc (Modarressi et al. 2022): row ``c`` of the rollout of the layers' normalised ``‖x̃_i←j‖₂``."""
    return _scores(context, "globenc")


def reconstructions(context: BatchContext) -> Sequence[torch.Tensor]:
    """``Σ_j T_i(x_j) + b̃_i`` of every layer over the whole width, ``L`` tensors ``[B, W, D]`` (checks)."""
    width = context.model_pass.hidden_states[0].shape[1]
    with torch.inference_mode():
        return [block_decomposer(context, layer)(slice(0, width)).output for layer in range(context.bundle.num_layers)]
