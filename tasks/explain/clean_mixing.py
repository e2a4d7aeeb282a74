"""A post-LN encoder layer run again with part of its attention output taken away.

Value Zeroing removes one token's value vector from every head of a layer, head masking one head's whole
output; both rerun the layer many times per example from the model pass. Such a layer computes, for the
states ``x`` entering it,

    z_i = x_i + Σ_h W_O^h (A_h V_h)_i + b_O,     y_i = LN1(z_i),     x'_i = LN2(y_i + W2 act(W1 y_i + b1) + b2),

so taking away a part ``δ_i = Σ_h W_O^h u_i^h`` of the attention output (``u_i^h`` in head ``h``'s value
space: ``A_h[i,j] v_j^h`` for Value Zeroing, ``(A_h V_h)_i`` for a masked head) leaves ``z_i − δ_i``: the
query, key, value and output projections and the softmax are not run again (``CleanMixing`` holds what they
gave on the clean batch). Nor is the feed-forward block's first map on every position of every run:
``LN1(u) = γ ⊙ P u / σ(u) + β``, with ``P`` the centring over features and ``σ(u)`` the standard deviation,
is affine up to its scale, so with ``N = W1 diag(γ) P``

    W1 LN1(z_i − δ_i) + b1 = (N z_i − Σ_h N W_O^h u_i^h) / σ(z_i − δ_i) + W1 β + b1:

``N`` maps each clean position once per batch and ``N W_O^h`` each removed head-space vector, a ``d``-wide
product instead of a ``D``-wide one (``layer_output``). The activation, ``W2`` and ``LN2`` run per position.

References:
    Mohebbi, Zuidema, Chrupała & Alishahi (2023), "Quantifying Context Mixing in Transformers", EACL.
    https://arxiv.org/abs/2301.12971
    Michel, Levy & Neubig (2019), "Are Sixteen Heads Really Better than One?", NeurIPS.
    https://arxiv.org/abs/1905.10650
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tasks.explain.passes import BatchContext
from tasks.model.adapters.decomposition import LayerParts


@dataclass(frozen=True)
class CleanMixing:
    """One post-LN layer's attention block on the clean batch, what every rerun of it starts from.

    Attributes:
        parts: The layer's modules.
        residual: ``z = x + W_O (A V) + b_O``, ``LN1``'s input, ``[B, W, D]``.
        values: ``v_j = x_j W_V + b_V`` by head, ``[B, W, H, d]``.
        head_contexts: ``(A_h V_h)_i``, each head's attention output before ``W_O``, ``[B, W, H, d]``.
        mapped_residual: ``N z``, ``[B, W, F]``.
        head_maps: ``W_O^h`` and ``N W_O^h`` by head, side by side, ``[H, d, D + F]``.
        offset: ``W1 β + b1``, ``[F]``.
    """

    parts: LayerParts
    residual: torch.Tensor
    values: torch.Tensor
    head_contexts: torch.Tensor
    mapped_residual: torch.Tensor
    head_maps: torch.Tensor
    offset: torch.Tensor

    @property
    def width(self) -> int:
        """``D``, the hidden size (``head_maps`` holds ``W_O^h`` in its first ``D`` columns)."""
        return self.residual.shape[-1]


def clean_mixing(context: BatchContext, layer: int) -> CleanMixing:
    """Layer ``layer``'s ``CleanMixing`` from the model pass's hidden states and attention probabilities.

    The model pass is computed first if needed, outside inference mode (other methods differentiate through
    it); the block itself is computed in inference mode.
    """
    _ = context.model_pass
    with torch.inference_mode():
        return _clean_mixing(context, layer)


def _clean_mixing(context: BatchContext, layer: int) -> CleanMixing:
    bundle = context.bundle
    parts = bundle.adapter.layer_parts(bundle.model, layer)
    hidden = context.model_pass.hidden_states[layer]
    values = parts.value(hidden)
    values = values.view(*values.shape[:2], parts.heads, -1)
    head_contexts = torch.einsum("bhij,bjhd->bihd", context.model_pass.attentions[layer], values)
    residual = hidden + parts.output(head_contexts.flatten(2))
    first, norm = parts.intermediate, parts.norm1
    scaled = first.weight * norm.weight  # W1 diag(γ)
    mapped = scaled - scaled.mean(dim=1, keepdim=True)  # N = W1 diag(γ) P
    offset = first.weight @ norm.bias if norm.bias is not None else torch.zeros_like(first.weight[:, 0])
    maps = torch.cat([parts.output.weight, mapped @ parts.output.weight])  # [D + F, H·d]
    return CleanMixing(
        parts=parts,
        residual=residual,
        values=values,
        head_contexts=head_contexts,
        mapped_residual=torch.nn.functional.linear(residual, mapped),
        head_maps=maps.T.reshape(parts.heads, -1, len(maps)).contiguous(),
        offset=offset if first.bias is None else offset + first.bias,
    )


def layer_output(mixing: CleanMixing, residual: torch.Tensor, mapped: torch.Tensor) -> torch.Tensor:
    """The layer's output ``LN2(y + W2 act(W1 y + b1) + b2)``, ``y = LN1(z − δ)``, from ``z − δ`` and ``N (z − δ)``.

    Args:
        mixing: The layer's clean attention block.
        residual: ``z_i − δ_i`` of every run and position, ``[n, W', D]``.
        mapped: ``N z_i − Σ_h N W_O^h u_i^h``, the same positions mapped by ``N``, ``[n, W', F]``; overwritten.
    """
    parts, norm = mixing.parts, mixing.parts.norm1
    # LN1(z_i − δ_i) and 1 / σ(z_i − δ_i), both as the module computes them
    normed, _, scale = torch.native_layer_norm(residual, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    hidden = parts.activation(mapped.mul_(scale).add_(mixing.offset))  # act(W1 LN1(z_i − δ_i) + b1)
    return parts.norm2(normed + parts.ffn_output(hidden))
