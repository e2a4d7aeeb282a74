"""Explanations read from the attention weights: the explanations under test.

Definitions (docs/methodology.md), for attention ``A[l,h]`` of layer ``l`` and head ``h`` (rows = queries, columns
= keys) and the classification position ``c``:

- ``attention_last``: ``mean_h A[L,h][c,:]``, the last layer's attention from ``c``.
- ``attention_mean``: ``mean_{l,h} A[l,h][c,:]``, averaged over every layer and head.
- ``rollout``: ``Â[l] = 0.5 * mean_h A[l,h] + 0.5 * I`` (rows renormalised), ``R = Â[L] ··· Â[1]``, score
  ``R[c,:]``. The identity models the residual connection.
- ``attention_grad``: ``Ā[l] = mean_h (∇_{A[l,h]} z_ŷ ⊙ A[l,h])⁺``; ``R = I``; for each layer, first to
  last, ``R ← R + Ā[l] · R``; score ``R[c,:]`` (non-negative, not normalised).
- ``attention_norm``: ``‖ Σ_h A[L,h][c,j] · f_h(x_j) ‖₂`` with ``f_h(x) = (x W_V^h + b_V^h) W_O^h``, the value
  and output projections of head ``h`` of the last layer applied to ``x_j``, the hidden state of token
  ``j`` entering that layer (non-negative).

The first three are non-negative and, over a row's real (non-padding) keys, sum to 1.

References:
    Jain & Wallace (2019), "Attention is not Explanation", NAACL. https://arxiv.org/abs/1902.10186
    Abnar & Zuidema (2020), "Quantifying Attention Flow in Transformers", ACL.
    https://arxiv.org/abs/2005.00928
    Chefer, Gur & Wolf (2021), "Generic Attention-model Explainability for Interpreting Bi-Modal and
    Encoder-Decoder Transformers", ICCV. https://arxiv.org/abs/2103.15679
    Kobayashi, Kuribayashi, Yokoi & Inui (2020), "Attention is Not Only a Weight: Analyzing
    Transformers with Vector Norms", EMNLP. https://arxiv.org/abs/2004.10102
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tasks.config import MethodOptions
from tasks.explain.passes import BatchContext
from tasks.records import TokenScores


def rows_at(matrices: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Row ``positions[b]`` of each matrix ``matrices[b]``: ``[B, W, W] -> [B, W]``."""
    return matrices[torch.arange(matrices.shape[0], device=matrices.device), positions]


def residual_attention(attention: torch.Tensor) -> torch.Tensor:
    """``Â = 0.5 * mean_h A + 0.5 * I``, rows renormalised: ``[B, H, W, W] -> [B, W, W]``."""
    mixed = 0.5 * attention.mean(dim=1) + 0.5 * torch.eye(attention.shape[-1], device=attention.device)
    return mixed / mixed.sum(dim=-1, keepdim=True)


def rollout_matrices(attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """Attention rollout ``R = Â[L] · Â[L-1] ··· Â[1]`` of a stack of layers (first layer first).

    Args:
        attentions: ``L`` tensors ``[B, H, W, W]``.

    Returns:
        ``[B, W, W]``; row ``i`` is how much each input token flows into position ``i`` at the top.
    """
    rollout = residual_attention(attentions[0])
    for attention in attentions[1:]:
        rollout = residual_attention(attention) @ rollout
    return rollout


def product_rollout(matrices: Sequence[torch.Tensor]) -> torch.Tensor:
    """Rollout without an added identity, ``R = M[L] · M[L-1] ··· M[1]`` (first layer first).

    For per-layer matrices that already include the residual connection (ALTI, GlobEnc), rows
    normalised. Args: ``L`` tensors ``[B, W, W]``. Returns ``[B, W, W]``.
    """
    rollout = matrices[0]
    for matrix in matrices[1:]:
        rollout = matrix @ rollout
    return rollout


def attention_last(context: BatchContext, options: MethodOptions) -> list[TokenScores]:
    """``mean_h A[L,h][c,:]``: the last layer's attention from the classification position."""
    last = context.model_pass.attentions[-1].mean(dim=1)
    return context.records("attention_last", rows_at(last, context.classification_positions))


def attention_mean(context: BatchContext, options: MethodOptions) -> list[TokenScores]:
    """``mean_{l,h} A[l,h][c,:]``: attention from the classification position, every layer and head."""
    mean = torch.stack([a.mean(dim=1) for a in context.model_pass.attentions]).mean(dim=0)
    return context.records("attention_mean", rows_at(mean, context.classification_positions))


def rollout(context: BatchContext, options: MethodOptions) -> list[TokenScores]:
    """Attention rollout (Abnar & Zuidema 2020): row ``c`` of ``R = Â[L] ··· Â[1]``."""
    matrices = rollout_matrices(context.model_pass.attentions)
    return context.records("rollout", rows_at(matrices, context.classification_positions))


def gradient_weighted_rollout(attentions: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor]) -> torch.Tensor:
    """Chefer et al.'s relevance ``R``: ``R = I``, then ``R ← R + mean_h (∇A ⊙ A)⁺ · R`` layer by layer.

    Args:
        attentions: ``L`` tensors ``[B, H, W, W]``, first layer first.
        gradients: ``∂z_ŷ/∂A`` of the same shapes.

    Returns:
        ``[B, W, W]``.
    """
    width = attentions[0].shape[-1]
    relevance = torch.eye(width, device=attentions[0].device).expand(attentions[0].shape[0], width, width)
    for attention, gradient in zip(attentions, gradients, strict=True):
        weighted = (gradient * attention).clamp(min=0).mean(dim=1)
        relevance = relevance + weighted @ relevance
    return relevance


def attention_grad(context: BatchContext, options: MethodOptions) -> list[TokenScores]:
    """Gradient-weighted attention rollout (Chefer et al. 2021): row ``c`` of ``R``."""
    model_pass = context.model_pass
    assert model_pass.attention_grads is not None, "attention_grad needs the attention gradients"
    relevance = gradient_weighted_rollout(model_pass.attentions, model_pass.attention_grads)
    return context.records("attention_grad", rows_at(relevance, context.classification_positions))


def norm_weighted_vectors(attention_row: torch.Tensor, values: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """``‖Σ_h a[h,j] · f_h(x_j)‖₂`` for every token ``j``.

    Args:
        attention_row: ``[B, H, W]``, each head's attention from the classification position.
        values: ``[B, W, H, d]``, each head's value vector ``x_j W_V^h + b_V^h`` of every token (for a
            pre-norm layer, ``x_j`` is the normed state the attention reads).
        output: ``[D, H, d]``, the attention output projection ``W_O`` split by head (its bias is added
            once per position, not per token, so it is left out, as in Kobayashi et al.).

    Returns:
        ``[B, W]``.
    """
    transformed = torch.einsum("bwhd,ohd->bwho", values, output)  # f_h(x_j), [B, W, H, D]
    return torch.einsum("bhw,bwho->bwo", attention_row, transformed).norm(dim=-1)


def attention_norm(context: BatchContext, options: MethodOptions) -> list[TokenScores]:
    """Norm-based attention of the last layer (Kobayashi et al. 2020)."""
    bundle = context.bundle
    last = bundle.num_layers - 1
    attention = context.model_pass.attentions[last]
    batch = torch.arange(attention.shape[0], device=attention.device)
    row = attention[batch, :, context.classification_positions]  # [B, H, W]
    with torch.inference_mode():
        values, output = bundle.adapter.norm_vectors(bundle.model, last, context.model_pass.hidden_states[last])
        scores = norm_weighted_vectors(row, values.float(), output.float())
    return context.records("attention_norm", scores)
