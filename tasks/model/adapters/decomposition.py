"""What a family exposes for the decompositions (ALTI, GlobEnc, DecompX): one description, one reason.

A post-layer-norm encoder layer computes, for the states ``x`` entering it,

    y = LN1(x + Σ_h A_h (x W_V^h + b_V^h) W_O^h + b_O),      x' = LN2(y + W2 act(W1 y + b1) + b2),

and the classifier reads the final state at ``c`` through a head of linear maps and element-wise
activations. ``PostNormLayout`` names those modules once per family (dotted paths); every decomposition
reads them from it:

- ALTI and GlobEnc split each layer's attention block by source token: ``W_V``, ``W_O``, ``LN1``, ``LN2``;
- DecompX carries a token decomposition through every module of every layer and then the head.

A family without a layout (the pre-norm decoders) gets one reason, ``not_decomposable``, for GlobEnc and
DecompX; ALTI decomposes a pre-norm block from the adapter's ``PreNormBlock`` instead (Ferrando et al.
2023). A layout whose ``head`` is None applies to the layers only, with its ``no_head`` reason for DecompX.

Families with a layout: BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA, DistilBERT and ALBERT (every method),
DeBERTa-v2/v3 (layers only: ALTI and GlobEnc).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from tasks.model.adapters.base import attribute

if TYPE_CHECKING:
    from tasks.model.adapters.base import ModelAdapter

Activation = Callable[[torch.Tensor], torch.Tensor]
Stage = str | Activation
"""A head stage: a dotted path from the classifier to an ``nn.Linear`` or an activation module, or a function."""


@dataclass(frozen=True)
class LayerParts:
    """One post-LN encoder layer's modules: ``y = LN1(x + Attn(x))``, ``x' = LN2(y + W2 act(W1 y + b1) + b2)``.

    Attributes:
        value: ``W_V``, ``b_V`` (all heads, ``[H·d, D]``).
        output: ``W_O``, ``b_O`` of the attention block (``[D, H·d]``).
        norm1: ``LN1``, the layer norm after the attention residual.
        intermediate: ``W1``, ``b1`` of the feed-forward block.
        activation: The feed-forward activation (element-wise).
        ffn_output: ``W2``, ``b2``.
        norm2: ``LN2``, the layer norm after the feed-forward residual.
        heads: ``H``.
    """

    value: nn.Linear
    output: nn.Linear
    norm1: nn.LayerNorm
    intermediate: nn.Linear
    activation: Activation
    ffn_output: nn.Linear
    norm2: nn.LayerNorm
    heads: int


@dataclass(frozen=True)
class HeadStage:
    """One stage of the classification head: a linear map, or an element-wise activation."""

    linear: nn.Linear | None = None
    activation: Activation | None = None


@dataclass(frozen=True)
class Decomposable:
    """Everything DecompX reads from a model: its layers' parts, first to last, and its head's stages."""

    layers: tuple[LayerParts, ...]
    head: tuple[HeadStage, ...]


@dataclass(frozen=True)
class PostNormLayout:
    """Where a post-LN encoder family keeps the modules of ``LayerParts`` and its head's stages.

    Layer paths are dotted from the (inner) transformer layer, head stages from the classifier. Dropout
    is the identity in eval mode, so it is not a stage.

    Attributes:
        value, output, norm1, intermediate, activation, ffn_output, norm2, heads: The paths of the
            ``LayerParts`` fields of the same names (``heads``: the number of heads).
        head: The head's stages applied to the final state at ``c``, in order; None where DecompX cannot
            carry the decomposition to the logits (``no_head`` says why).
        no_head: Why DecompX does not apply where ``head`` is None.
    """

    value: str
    output: str
    norm1: str
    intermediate: str
    activation: str
    ffn_output: str
    norm2: str
    heads: str
    head: tuple[Stage, ...] | None
    no_head: str = ""

    def parts(self, layer: nn.Module) -> LayerParts:
        """The modules of ``layer`` (an inner transformer layer)."""
        return LayerParts(
            value=attribute(layer, self.value),
            output=attribute(layer, self.output),
            norm1=attribute(layer, self.norm1),
            intermediate=attribute(layer, self.intermediate),
            activation=attribute(layer, self.activation),
            ffn_output=attribute(layer, self.ffn_output),
            norm2=attribute(layer, self.norm2),
            heads=int(attribute(layer, self.heads)),
        )

    def head_stages(self, model: nn.Module) -> tuple[HeadStage, ...]:
        """The head's stages of classifier ``model`` (call only where ``head`` is not None)."""
        stages = []
        for stage in self.head or ():
            module = attribute(model, stage) if isinstance(stage, str) else stage
            stages.append(HeadStage(linear=module) if isinstance(module, nn.Linear) else HeadStage(activation=module))
        return tuple(stages)


PRE_NORM = (
    "its layers are pre-norm (the norm precedes the attention, so there is no layer norm after each residual "
    "connection to linearise), and GlobEnc and DecompX carry each token's part through the layer norms of "
    "post-LN encoder layers; ALTI decomposes pre-norm blocks too (Ferrando et al. 2023: alti)"
)
"""Why GlobEnc and DecompX do not apply to a pre-norm decoder (ALTI reads its ``PreNormBlock`` instead)."""


def not_decomposable(adapter: ModelAdapter, *, to_logits: bool = False) -> str:
    """Why ``adapter``'s family cannot be decomposed, ``"{family} models: why"``; ``""`` where it can.

    Args:
        adapter: The family's adapter.
        to_logits: Through the head to the logits as well (DecompX), not only layer by layer (ALTI, GlobEnc).
    """
    layout = adapter.post_norm
    if layout is None:
        why = PRE_NORM if adapter.causal else "its layers are not described for decompositions (no PostNormLayout)"
        return f"{adapter.family} models: {why}"
    if to_logits and layout.head is None:
        return f"{adapter.family} models: {layout.no_head}"
    return ""
