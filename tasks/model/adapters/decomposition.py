"""The modules a token decomposition (DecompX) reads, per family: each layer's parts and the head's stages.

DecompX (Modarressi et al. 2023) carries a per-token decomposition through every linear map, layer norm
and activation of a post-layer-norm encoder and its classification head. It needs the modules
themselves (weights, biases, the norms' ``γ``, ``β`` and ``ε``, the activation function), in the order
the family's forward applies them. ``LayerParts`` names them for one layer; ``HeadStage`` lists the head
as linear maps and element-wise activations applied to the final state at ``c``.

Families whose layout is wired here: BERT's (BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA). The others get
a reason (``not_decomposable``) that the audit records as not applicable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from tasks.model.adapters.base import attribute, inner_layer


@dataclass(frozen=True)
class LayerParts:
    """One post-LN encoder layer: ``y = LN1(x + Attn(x))``, ``x' = LN2(y + W2 act(W1 y + b1) + b2)``.

    Attributes:
        value: ``W_V``, ``b_V`` (all heads, ``[H·d, D]``).
        output: ``W_O``, ``b_O`` of the attention block (``[D, H·d]``).
        norm1: The layer norm after the attention residual.
        intermediate: ``W1``, ``b1`` of the feed-forward block.
        activation: The feed-forward activation (element-wise).
        ffn_output: ``W2``, ``b2``.
        norm2: The layer norm after the feed-forward residual.
        heads: ``H``.
    """

    value: nn.Linear
    output: nn.Linear
    norm1: nn.LayerNorm
    intermediate: nn.Linear
    activation: Callable[[torch.Tensor], torch.Tensor]
    ffn_output: nn.Linear
    norm2: nn.LayerNorm
    heads: int


@dataclass(frozen=True)
class HeadStage:
    """One stage of the classification head: a linear map, or an element-wise activation."""

    linear: nn.Linear | None = None
    activation: Callable[[torch.Tensor], torch.Tensor] | None = None


@dataclass(frozen=True)
class Decomposable:
    """Everything DecompX reads from a model: its layers' parts, first to last, and its head's stages."""

    layers: tuple[LayerParts, ...]
    head: tuple[HeadStage, ...]


def bert_layer_parts(layer: nn.Module) -> LayerParts:
    """``LayerParts`` of a layer with BERT's layout (``attention.self`` / ``attention.output`` / ...)."""
    layer = inner_layer(layer)
    return LayerParts(
        value=attribute(layer, "attention.self.value"),
        output=attribute(layer, "attention.output.dense"),
        norm1=attribute(layer, "attention.output.LayerNorm"),
        intermediate=attribute(layer, "intermediate.dense"),
        activation=attribute(layer, "intermediate.intermediate_act_fn"),
        ffn_output=attribute(layer, "output.dense"),
        norm2=attribute(layer, "output.LayerNorm"),
        heads=int(attribute(layer, "attention.self.num_attention_heads")),
    )


def pooled_head(pooler: str) -> Callable[[nn.Module], tuple[HeadStage, ...]]:
    """BERT's head: ``classifier(tanh(pooler.dense(h_c)))`` (dropout is the identity in eval mode)."""

    def stages(model: nn.Module) -> tuple[HeadStage, ...]:
        return (
            HeadStage(linear=attribute(model, f"{pooler}.dense")),
            HeadStage(activation=torch.tanh),
            HeadStage(linear=attribute(model, "classifier")),
        )

    return stages


def sequence_head(model: nn.Module) -> tuple[HeadStage, ...]:
    """RoBERTa's (tanh) and ELECTRA's (its own activation) head: ``out_proj(act(dense(h_c)))``."""
    head = attribute(model, "classifier")
    activation = getattr(head, "activation", torch.tanh)
    return (HeadStage(linear=head.dense), HeadStage(activation=activation), HeadStage(linear=head.out_proj))


def not_decomposable(family: str, causal: bool) -> str:
    """Why DecompX does not apply to a family whose adapter wires no decomposition."""
    if causal:
        return (
            f"DecompX is defined for post-layer-norm encoder classifiers; {family} is a pre-norm causal decoder, "
            "whose decomposition (Ferrando et al. 2023) is a different method: alti"
        )
    return (
        f"DecompX reads BERT's layer layout (separate value and output projections, two post-layer norms, "
        f"one feed-forward block); {family}'s layers are not wired for it"
    )
