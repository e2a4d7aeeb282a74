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
  normalised, ``N[i,j] = ‖x̃_i←j‖₂ / Σ_k ‖x̃_i←k‖₂``. ``σ₁,i`` and ``σ₂,i`` scale every key of row ``i``
  alike, so the normalisation removes them: ``N`` needs no statistics of either norm's input.

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

Cost: both read the model pass only (its attention and the hidden states entering each layer), with no
extra model pass. ``T_i(x_j)`` is linear in the heads' vectors ``f_h(x_j)``, so GlobEnc's norms come from
each token's ``(H + 1) × (H + 1)`` Gram matrix and the attention weights (``globenc_norms``) and never
build the ``[B, W, W, D]`` parts; ALTI's L1 norms need them, a chunk of query rows at a time
(``B · rows · W`` at most four times the context's token budget, ``query_chunks``), with ``c_ij`` rewritten
as a sum of non-negative overshoots beside a linear term (``alti_contributions``; a pre-norm block's with
``γ₁ / σ₁,i`` replaced by 1) so that no difference of two nearly equal L1 norms is formed. Precision: float64,
except ALTI's ``[B, W, Q, D]`` products, float32 summed per feature (scores within ~1e-7 of an all-float64
computation).

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
from tasks.model.adapters.base import ModelAdapter
from tasks.model.adapters.decomposition import not_decomposable
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
class BlockMixing:
    """One layer's attention block by source token, what ALTI reads (float64).

    The block's output is ``y_i = Σ_j m_ij ⊙ g_i + b̃_i`` with ``m_ij = Σ_h A_h[i,j] f_h(x_j) + δ_ij x_i``:
    post-LN, ``f_h`` and ``x`` centred and ``g_i = γ₁ / σ₁,i`` (``LN1`` linearised at token ``i``); pre-norm,
    ``f_h`` reads ``LN(x_j)`` and ``g_i = 1``.

    Attributes:
        attention: ``A``, ``[B, H, W, W]`` (rows queries).
        vectors: ``f_h(x_j)``, ``[B, W, H, D]``: each head's transformed value vector (centred post-LN).
        residual: ``x_j``, ``[B, W, D]``: the residual's part (at ``i = j`` only; centred post-LN).
        scale: ``g_i``, ``[B, W, D]``.
        output: ``y_i``, ``[B, W, D]``, reconstructed: ``LN1``'s output, or a pre-norm block's residual stream.
    """

    attention: torch.Tensor
    vectors: torch.Tensor
    residual: torch.Tensor
    scale: torch.Tensor
    output: torch.Tensor


def centred(vectors: torch.Tensor) -> torch.Tensor:
    """Each vector minus its mean over the last (feature) dimension."""
    return vectors - vectors.mean(dim=-1, keepdim=True)


def head_vectors(
    context: BatchContext, layer: int, feature_map: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """``feature_map(f_h(x_j))`` for a linear ``feature_map`` over ``D``, ``[B, W, H, D]`` (float64).

    ``f_h(x_j) = v_h(x_j) W_O^h`` is linear in the rows of ``W_O^h``, so the map is applied to ``W_O``
    (``[H, d, D]``) once, not to the ``B · W · H`` vectors.
    """
    bundle = context.bundle
    values, output = bundle.adapter.norm_vectors(bundle.model, layer, context.model_pass.hidden_states[layer])
    return torch.einsum("bwhd,hdo->bwho", values.double(), feature_map(output.double().permute(1, 2, 0)))


def block_mixing(context: BatchContext, layer: int) -> BlockMixing:
    """Layer ``layer``'s ``BlockMixing`` from the model pass's attention and the hidden states entering it.

    Post-LN: ``z_i − μ(z_i) = Σ_j Σ_h A_h[i,j] f̃_h(x_j) + x̃_i + b̃_O`` (centring is linear), so ``σ₁,i`` and
    ``y_i`` come without building any ``[B, W, W, D]`` tensor. Pre-norm (the adapter's ``PreNormBlock``):
    ``y_i = x_i + Σ_j Σ_h A_h[i,j] f_h(LN(x_j)) + b_O`` exactly (Ferrando et al. 2023).
    """
    bundle, model_pass = context.bundle, context.model_pass
    adapter, model = bundle.adapter, bundle.model
    attention = model_pass.attentions[layer].double()
    hidden = model_pass.hidden_states[layer].double()
    if adapter.pre_norm is not None:
        vectors = head_vectors(context, layer, lambda weights: weights)
        output = (
            hidden + torch.einsum("bhij,bjho->bio", attention, vectors) + adapter.output_bias(model, layer).double()
        )
        return BlockMixing(attention, vectors, hidden, torch.ones_like(output), output)
    parts = adapter.layer_parts(model, layer)
    vectors = head_vectors(context, layer, centred)
    residual = centred(hidden)
    bias = parts.output.bias.double() if parts.output.bias is not None else hidden.new_zeros(hidden.shape[-1])
    z = residual + torch.einsum("bhij,bjho->bio", attention, vectors) + centred(bias)
    sigma = (z.square().mean(dim=-1, keepdim=True) + parts.norm1.eps).sqrt()
    gamma, beta = parts.norm1.weight.double(), parts.norm1.bias.double()
    scale = gamma / sigma
    return BlockMixing(attention, vectors, residual, scale, scale * z + beta)


def alti_contributions(mixing: BlockMixing, token_budget: int) -> torch.Tensor:
    """ALTI's ``c_ij = max(0, ‖y_i‖₁ − ‖y_i − T_i(x_j)‖₁)`` of one layer, ``[B, W, W]`` (not normalised).

    Per feature, with ``a = |y_i|``, ``s = sign(y_i)`` (+1 at 0) and ``t = s·T_i(x_j)``,
    ``|y_i| − |y_i − T_i(x_j)| = min(t, 2a − t) = t − 2 (t − a)⁺``, so
    ``c_ij = max(0, Σ_d t_d − 2 Σ_d (t_d − a_d)⁺)``: no difference of two nearly equal L1 norms, and ``y_i``
    enters only where a part overshoots it. ``t = m_ij ⊙ (s ⊙ g_i)`` with ``m_ij`` and ``g_i`` of
    ``BlockMixing``; the ``[B, W, Q, D]`` products run in float32 on a chunk of
    ``Q`` query rows at a time (``query_chunks``), summed over ``D`` in float64.
    """
    batch, width = mixing.output.shape[:2]
    scale = (torch.where(mixing.output >= 0, 1.0, -1.0) * mixing.scale).float()
    magnitude = mixing.output.abs().float()
    keys = mixing.attention.float().permute(0, 3, 2, 1)  # [B, J, I, H]: A_h[i, j], keys first
    vectors, residual = mixing.vectors.float(), mixing.residual.float()
    rows = []
    for queries in query_chunks(batch, width, token_budget):
        parts = torch.matmul(keys[:, :, queries], vectors)  # [B, J, Q, D]
        own = torch.arange(queries.start, queries.stop, device=parts.device)
        parts[:, own, own - queries.start] += residual[:, own]  # δ_ij x̃_i
        parts.mul_(scale[:, None, queries])  # t
        linear = parts.sum(dim=-1).double()
        overshoot = parts.sub_(magnitude[:, None, queries]).clamp_(min=0).sum(dim=-1).double()
        rows.append((linear - 2 * overshoot).clamp(min=0).transpose(1, 2))
    return torch.cat(rows, dim=1)


def globenc_norms(context: BatchContext, layer: int) -> torch.Tensor:
    """GlobEnc's ``‖x̃_i←j‖₂ · σ₁,i σ₂,i`` of one layer, ``[B, W, W]``: the norms times a factor of row ``i``.

    ``x̃_i←j = M(m_ij) / (σ₁,i σ₂,i)`` with the linear map ``M(v) = γ₂ ⊙ centred(γ₁ ⊙ centred(v))`` and
    ``m_ij = Σ_h A_h[i,j] f_h(x_j) + δ_ij x_i``. The factor ``1 / (σ₁,i σ₂,i)`` is the same for every key ``j``
    of row ``i``, so the row normalisation removes it: GlobEnc's ``N`` needs no statistics of ``LN1``'s or
    ``LN2``'s input. With ``F_hj = M(f_h(x_j))``, ``F_rj = M(x_j)`` and their Gram matrices,
    ``‖M(m_ij)‖₂² = Σ_{h,k} A_h[i,j] A_k[i,j] ⟨F_hj, F_kj⟩ + δ_ij (2 Σ_h A_h[i,j] ⟨F_hj, F_rj⟩ + ‖F_rj‖²)``:
    ``[B, W, H, H]`` and ``[B, H, W, W]`` work, no ``[B, W, W, D]`` tensor.
    """
    bundle, model_pass = context.bundle, context.model_pass
    parts = bundle.adapter.layer_parts(bundle.model, layer)  # post-LN only: it says why not elsewhere
    gamma1, gamma2 = parts.norm1.weight.double(), parts.norm2.weight.double()

    def carry(vectors: torch.Tensor) -> torch.Tensor:
        return gamma2 * centred(gamma1 * centred(vectors))

    carried = head_vectors(context, layer, carry)  # F_hj, [B, J, H, D]
    residual = carry(model_pass.hidden_states[layer].double())  # F_rj, [B, J, D]
    gram = carried @ carried.transpose(-1, -2)  # [B, J, H, H]
    keys = model_pass.attentions[layer].double().permute(0, 3, 2, 1)  # [B, J, I, H]: A_h[i, j], keys first
    squared = ((keys @ gram) * keys).sum(dim=-1)  # [B, J, I]
    own = torch.arange(keys.shape[1], device=keys.device)
    with_residual = (keys[:, own, own] * (carried @ residual[..., None])[..., 0]).sum(dim=-1)
    squared[:, own, own] += 2 * with_residual + residual.square().sum(dim=-1)
    return squared.clamp(min=0).sqrt().transpose(1, 2)


def normalise_rows(matrix: torch.Tensor) -> torch.Tensor:
    """Each row divided by its sum (rows of zeros stay zero)."""
    return matrix / matrix.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(matrix.dtype).tiny)


CHUNK_TOKENS_PER_BUDGET = 4
"""ALTI's chunk of ``[B, W, Q, D]`` products holds ``B · Q · W ≤ 4 ×`` the token budget rows of ``D`` numbers: as
many numbers as the feed-forward activations (``D_ff = 4 D``) of a forward chunk under the same budget, about
12 MB in float32 on the default model at the default budget. Measured on 2 cores (ALTI alone, best of 2): at 1 ×
the budget 0.45 s per BBC article and 21 ms per default example, at 4 × 0.33 s and 14 ms, at 16 × 0.46 s
and 16 ms (the chunk outgrows the caches)."""


def query_chunks(batch: int, width: int, token_budget: int) -> list[slice]:
    """Query rows per chunk so that ``batch · rows · width <= 4 · token_budget`` (at least one row)."""
    rows = max(1, CHUNK_TOKENS_PER_BUDGET * token_budget // max(1, batch * width))
    return [slice(start, min(start + rows, width)) for start in range(0, width, rows)]


def layer_matrices(context: BatchContext, kind: Kind) -> list[torch.Tensor]:
    """Each layer's row-normalised ALTI or GlobEnc matrix, ``L`` tensors ``[B, W, W]``, first layer first."""
    _ = context.model_pass  # outside inference mode: the pass may differentiate
    matrices = []
    with torch.inference_mode():
        for layer in range(context.bundle.num_layers):
            if kind == "alti":
                raw = alti_contributions(block_mixing(context, layer), context.token_budget)
            else:
                raw = globenc_norms(context, layer)
            matrices.append(normalise_rows(raw))
    return matrices


def _scores(context: BatchContext, kind: Kind) -> list[TokenScores]:
    rollout = product_rollout(layer_matrices(context, kind))
    return context.records(kind, rows_at(rollout, context.classification_positions))


def alti(context: BatchContext, options: MethodOptions) -> list[TokenScores]:
    """ALTI (Ferrando et al. 2022): row ``c`` of the rollout of the layers' normalised ``c_ij``."""
    return _scores(context, "alti")


def globenc(context: BatchContext, options: MethodOptions) -> list[TokenScores]:
    """GlobEnc (Modarressi et al. 2022): row ``c`` of the rollout of the layers' normalised ``‖x̃_i←j‖₂``."""
    return _scores(context, "globenc")


def reconstructions(context: BatchContext) -> Sequence[torch.Tensor]:
    """``Σ_j T_i(x_j) + b̃_i`` of every layer, ``L`` tensors ``[B, W, D]``: the reconstructed ``LN1`` output (checks)."""
    _ = context.model_pass
    with torch.inference_mode():
        return [block_mixing(context, layer).output for layer in range(context.bundle.num_layers)]
