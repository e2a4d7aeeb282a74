"""Explanations read from the attention weights: the explanations under test.

Definitions (METHODS.md), for attention ``A[l,h]`` of layer ``l`` and head ``h`` (rows = queries, columns
= keys) and the classification position ``c``:

- ``attention_last``: ``mean_h A[L,h][c,:]``, the last layer's attention from ``c``.
- ``attention_mean``: ``mean_{l,h} A[l,h][c,:]``, averaged over every layer and head.
- ``rollout``: ``Â[l] = 0.5 * mean_h A[l,h] + 0.5 * I`` (rows renormalised), ``R = Â[L] ··· Â[1]``, score
  ``R[c,:]``. The identity models the residual connection.

All three are non-negative and, over a row's real (non-padding) keys, sum to 1.

References:
    Jain & Wallace (2019), "Attention is not Explanation", NAACL. https://arxiv.org/abs/1902.10186
    Abnar & Zuidema (2020), "Quantifying Attention Flow in Transformers", ACL.
    https://arxiv.org/abs/2005.00928
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tasks.config import MethodOptions
from tasks.passes import BatchContext
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
