"""DecompX (Modarressi et al. 2023): a per-token decomposition carried through the whole classifier.

Every hidden state is written as a sum over the input tokens, ``x_i = Σ_k x_i^(k)``, starting from
``x_i^(k) = δ_ik · h⁰_i`` (the embedding output, position and segment embeddings included, belongs to its
own token). Each part of a post-layer-norm encoder layer maps the decomposition linearly:

- **attention** (probabilities ``α^h`` of the model pass held fixed, as the paper does):
  ``a_i^(k) = Σ_h W_O^h Σ_j α^h_ij W_V^h x_j^(k)``; its bias ``W_O b_V + b_O`` (``Σ_j α_ij = 1``) is a bias;
- **residual**: ``r_i^(k) = x_i^(k) + a_i^(k)``;
- **layer norm**, linearised with the token's own statistics (those of the whole ``r_i``):
  ``LN(r_i)^(k) = γ ⊙ (r_i^(k) − mean_d r_i^(k)) / σ_i`` with ``σ_i = sqrt(var_d(r_i) + ε)``; ``β`` is a bias;
- **feed-forward**: ``u^(k) = W1 y^(k)``, the activation linearised per token and dimension through the
  origin (the paper's zero-offset approximation): ``act(u)^(k) = u^(k) ⊙ act(u) / u`` with ``u = Σ_k u^(k)``
  (a ratio of 0 where ``u = 0``), then ``W2``; ``b1`` and ``b2`` are biases; residual and second norm as above;
- **head** at the classification position ``c``: its linear maps and its activation (BERT's and ALBERT's
  pooler tanh, ELECTRA's gelu, DistilBERT's ReLU, exact through the origin) the same way, to per-class
  logits ``z^(k)`` of ``[C]``.

**Families** (``tasks.model.adapters.decomposition.PostNormLayout``): BERT, RoBERTa, XLM-R, CamemBERT,
ELECTRA, DistilBERT and ALBERT. ALBERT applies one shared layer at every depth, so the same parts are
read ``L`` times. Its embedding projection ``h⁰_i = W_P e_i + b_P`` (E to D; ELECTRA's likewise where
E ≠ D) precedes layer 0 and is position-wise: carried through it, the start ``δ_ik e_i`` becomes
``δ_ik (W_P e_i) + b_P^(k)``, and the bias, shared by ``|W_P e_i · b_P|``, goes wholly to ``k = i`` (the
only non-zero part; equal shares only if that product is exactly 0), so it is ``δ_ik h⁰_i``, where the
decomposition starts (tested).

**Biases.** A bias ``b`` added at position ``i`` is split among the tokens in proportion to the absolute
dot product of each token's current part with it, ``b^(k) = b · |x_i^(k)·b| / Σ_k' |x_i^(k')·b|`` (equal
shares when every product is 0), the paper's recommended bias decomposition. Every step therefore keeps
``Σ_k x_i^(k) = x_i`` exactly (up to rounding), and ``Σ_k z^(k) = z``: the per-token logits sum to the model's
logit with no separate bias term. The score of token ``k`` is ``z_ŷ^(k)``, signed (evidence for or against ``ŷ``).

**Units.** With word or sentence units (``--units``, ``tasks.data.units``) the parts are the units, not the
tokens: ``x_i = Σ_u x_i^(u)`` from ``x_i^(u) = [i ∈ u] h⁰_i``, every step above unchanged, to a unit's part
``z^(u)`` of the logit. Each of the unit's ``|u|`` tokens stores ``z_ŷ^(u) / |u|``, so the unit's sum that every
metric takes gives ``z_ŷ^(u)`` back (as leave-one-out does). Every step is linear in the parts but the bias
shares, so ``z^(u)`` is the sum of its tokens' token-level parts exactly when the model has no biases
(tested) and differs by how the biases are shared otherwise: a bias goes to a unit by ``|x_i^(u)·b|``, its
tokens' shares sum ``|x_i^(k)·b|``. The cost falls with the number of parts, ``T`` to ``U`` per layer: a
256-token news article of about a dozen sentences costs about a twentieth.

**Precision.** The matrix products (values, attention, output projection, ``W1``, ``W2``, the head's maps) run
in float32 (``PRODUCTS``), about 1.7 times faster than float64 on a CPU, those with a layer's weight on CPU
through its packed copy (``weight_product``, ``tasks.model.packed_linear``); the parts between them, their sums over
``k`` (the norms' statistics, the activation's ``u``), the bias shares and the logits are float64. Each product
sums at most ``D_ff`` terms, so it is within about ``√D_ff · u`` (``u = 2⁻²⁴``) of its float64 value relative to
the size of its terms, and the ``4L + 2`` products along the depth add up to at most ``(4L + 2) √D_ff · u ·
max_k |z^(k)|`` on the scores (1014 u on the default model; measured: 11 u), and as much on ``Σ_k z^(k) = z``.

**Cost and memory.** No extra model pass: the decomposition reads the model pass's attention
probabilities and hidden state ``h⁰``. It is ``[T, K, D]`` per layer (float64; ``K`` parts: ``T`` tokens, or the
units) and ``[n, K, D_ff]`` inside the feed-forward block (float32), computed for ``n`` query positions at a time
with ``n · K`` at most the token budget.
The last layer is computed at ``c`` only (its values at every position, then attention output, norms and
feed-forward at ``c``): the head reads nothing else, which saves most of a layer of ``L``.

References:
    Modarressi, Fayyaz, Aghazadeh, Yaghoobzadeh & Pilehvar (2023), "DecompX: Explaining Transformers
    Decisions by Propagating Token Decomposition", ACL. https://arxiv.org/abs/2306.02873
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tasks.config import MethodOptions
from tasks.data.units import INDEX
from tasks.explain.passes import BatchContext
from tasks.model.adapters.base import ModelAdapter
from tasks.model.adapters.decomposition import Decomposable, HeadStage, LayerParts, not_decomposable
from tasks.model.packed_linear import weight_product
from tasks.records import TokenScores

Activation = Callable[[torch.Tensor], torch.Tensor]

PRODUCTS = torch.float32
"""The precision of the matrix products (values, attention, output projection, feed-forward, head); the
parts between them, their sums, the norms' statistics and the bias shares are float64."""


@dataclass(frozen=True)
class Decomposition:
    """One example's decomposition.

    Attributes:
        logits: ``[T, C]``: row ``k`` is token ``k``'s part ``z^(k)`` of every class's logit.
        states: ``L + 1`` tensors: ``Σ_k x^(k)`` entering each layer, ``[T, D]``, and leaving the last at
            ``c``, ``[1, D]``, which reconstruct the model's hidden states.
    """

    logits: torch.Tensor
    states: tuple[torch.Tensor, ...]


def position_chunks(positions: int, parts: int, token_budget: int) -> list[slice]:
    """Query positions ``0..positions-1`` in slices of ``n`` with ``n · parts <= token_budget`` (at least one each)."""
    size = max(1, token_budget // max(1, parts))
    return [slice(start, min(start + size, positions)) for start in range(0, positions, size)]


def split_bias(parts: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``parts`` ``[..., K, D]`` plus ``bias`` ``[D]``, shared among the ``K`` tokens by ``|x^(k)·b|``.

    Returns:
        ``[..., K, D]`` whose sum over ``K`` is ``Σ_k parts^(k) + bias``.
    """
    weights = (parts @ bias).abs()  # [..., K]
    total = weights.sum(dim=-1, keepdim=True)
    uniform = torch.full_like(weights, 1.0 / weights.shape[-1])
    shares = torch.where(total > 0, weights / total.clamp_min(torch.finfo(weights.dtype).tiny), uniform)
    return torch.addcmul(parts, shares[..., None], bias)


def linearised_norm(parts: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """``LN`` of a decomposition ``[..., K, D]``, linear in each part, with the statistics of the whole."""
    whole = parts.sum(dim=-2, keepdim=True)  # [..., 1, D]
    sigma = torch.sqrt(whole.var(dim=-1, unbiased=False, keepdim=True) + norm.eps)
    centred = parts - parts.mean(dim=-1, keepdim=True)
    normed = norm.weight.to(parts.dtype) * centred / sigma
    return split_bias(normed, norm.bias.to(parts.dtype))


def linearised_activation(parts: torch.Tensor, activation: Activation) -> torch.Tensor:
    """``act`` of a decomposition ``[..., K, D']`` through the origin: ``u^(k) ⊙ act(u) / u``, ``u = Σ_k u^(k)``."""
    whole = parts.sum(dim=-2, keepdim=True, dtype=torch.float64)
    safe = torch.where(whole == 0, torch.ones_like(whole), whole)
    ratio = torch.where(whole == 0, torch.zeros_like(whole), activation(whole) / safe)
    return parts * ratio.to(parts.dtype)


def linear(parts: torch.Tensor, module: nn.Linear, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``W x^(k)`` for every part, the product in ``PRODUCTS`` precision; the bias shared by ``split_bias``.

    The result, and the sharing, are in ``dtype`` (the parts' own by default).
    """
    out = weight_product(parts.to(PRODUCTS), module.weight.to(PRODUCTS)).to(dtype or parts.dtype)
    return out if module.bias is None else split_bias(out, module.bias.to(out.dtype))


def attention_block(parts: torch.Tensor, layer: LayerParts, attention: torch.Tensor) -> torch.Tensor:
    """``Σ_h W_O^h Σ_j α^h_ij W_V^h x_j^(k)`` with the bias ``W_O b_V + b_O`` shared, ``[T, K, D]``.

    Args:
        parts: ``[T, K, D]`` the layer's input decomposition.
        layer: The layer's modules.
        attention: ``[H, T, T]`` its attention probabilities (rows are queries).
    """
    dtype = parts.dtype
    values = weight_product(parts.to(PRODUCTS), layer.value.weight.to(PRODUCTS))  # [T(j), K, H·d]
    values = values.view(*values.shape[:2], layer.heads, -1)
    mixed = torch.einsum("hij,jkhd->ikhd", attention.to(PRODUCTS), values).flatten(2)
    out = weight_product(mixed, layer.output.weight.to(PRODUCTS)).to(dtype)
    bias = layer.output.weight.to(dtype) @ layer.value.bias.to(dtype) + layer.output.bias.to(dtype)
    return split_bias(out, bias)


def feed_forward(parts: torch.Tensor, layer: LayerParts) -> torch.Tensor:
    """``W2 act(W1 y + b1) + b2`` of a decomposition ``[n, K, D]``, the activation linearised.

    The hidden parts ``[n, K, D_ff]`` are held in ``PRODUCTS`` precision (their sum over ``K``, which the
    activation's ratio reads, is accumulated in float64); the output is in the parts' own.
    """
    hidden = linearised_activation(linear(parts, layer.intermediate, PRODUCTS), layer.activation)
    return linear(hidden, layer.ffn_output, parts.dtype)


def decompose_layer(
    parts: torch.Tensor,
    layer: LayerParts,
    attention: torch.Tensor,
    token_budget: int,
    queries: slice = slice(None),
) -> torch.Tensor:
    """One post-LN layer of the decomposition at the positions ``queries``: ``[T, K, D]`` in, ``[Q, K, D]`` out.

    Every position's values are read; the attention output, norms and feed-forward block are computed
    at ``queries`` only (the last layer: at ``c``, all the head reads). The feed-forward block runs on
    ``n`` positions at a time, ``n · K`` at most ``token_budget`` (``position_chunks``).
    """
    mixed = attention_block(parts, layer, attention[:, queries])
    normed = linearised_norm(parts[queries] + mixed, layer.norm1)
    out = torch.empty_like(normed)
    for rows in position_chunks(normed.shape[0], normed.shape[1], token_budget):
        block = normed[rows]
        out[rows] = linearised_norm(block + feed_forward(block, layer), layer.norm2)
    return out


def decompose_head(parts: torch.Tensor, stages: tuple[HeadStage, ...]) -> torch.Tensor:
    """The head's stages on the decomposition of the final state at ``c``: ``[K, D]`` to ``[K, C]``."""
    for stage in stages:
        if stage.linear is not None:
            parts = linear(parts, stage.linear)
        if stage.activation is not None:
            parts = linearised_activation(parts, stage.activation)
    return parts


def decompose(
    model: Decomposable,
    embedded: torch.Tensor,
    attentions: list[torch.Tensor],
    position: int,
    token_budget: int,
    unit: torch.Tensor | None = None,
) -> Decomposition:
    """DecompX of one unpadded example.

    Args:
        model: The modules to propagate through (``ModelAdapter.decomposable``).
        embedded: ``[T, D]``, the embedding output ``h⁰`` (the hidden state entering layer 0).
        attentions: ``L`` tensors ``[H, T, T]``, each layer's attention probabilities.
        position: The classification position ``c``.
        token_budget: Most ``n · K`` per feed-forward chunk (``n`` positions of ``K`` parts).
        unit: ``[T]``, the part ``u = unit[i]`` that token ``i`` starts in, numbered ``0..U-1``; None: every
            token its own part.

    Returns:
        The per-part logits (``[T, C]`` per token, or ``[U, C]`` per unit) and the reconstructed hidden states.
    """
    if unit is None:
        parts = torch.diag_embed(embedded.double().T).permute(1, 2, 0)  # [T(i), K, D], x_i^(k) = δ_ik h⁰_i
    else:
        count = int(unit.max()) + 1
        parts = embedded.new_zeros((embedded.shape[0], count, embedded.shape[1]), dtype=torch.float64)
        parts[torch.arange(embedded.shape[0]), unit] = embedded.double()  # x_i^(u) = [i ∈ u] h⁰_i
    states = [parts.sum(dim=1)]
    last = len(model.layers) - 1
    for index, (layer, attention) in enumerate(zip(model.layers, attentions, strict=True)):
        queries = slice(position, position + 1) if index == last else slice(None)
        parts = decompose_layer(parts, layer, attention, token_budget, queries)
        states.append(parts.sum(dim=1))
    return Decomposition(logits=decompose_head(parts[0], model.head), states=tuple(states))


def decompx(context: BatchContext, options: MethodOptions) -> list[TokenScores]:
    """DecompX: token ``k``'s signed part ``z_ŷ^(k)`` of the target logit, every example unpadded.

    With word or sentence units the parts are the units, and each token holds ``z_ŷ^(u) / |u|``.
    """
    bundle = context.bundle
    model = bundle.adapter.decomposable(bundle.model)
    model_pass = context.model_pass
    positions = context.classification_positions.tolist()
    targets = context.targets.tolist()
    scores = []
    with torch.inference_mode():
        for row, example in enumerate(context.examples):
            length = example.length
            attentions = [attention[row, :, :length, :length] for attention in model_pass.attentions]
            embedded = model_pass.hidden_states[0][row, :length]
            unit = None if options.units == "token" else INDEX[options.units](example)
            parts = None if unit is None else torch.as_tensor(unit)
            result = decompose(model, embedded, attentions, positions[row], context.token_budget, parts)
            per_part = result.logits[:, targets[row]].cpu().numpy()
            scores.append(per_part if unit is None else per_part[unit] / np.bincount(unit)[unit])
    return context.records("decompx", scores)


def unsupported(adapter: ModelAdapter) -> str:
    """Why DecompX is not defined for ``adapter``'s family, or ``""`` where it is."""
    return not_decomposable(adapter, to_logits=True)
