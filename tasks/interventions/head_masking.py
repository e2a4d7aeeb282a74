"""Head masking (Michel et al. 2019): which heads does the decision rest on?

One head ``h`` of one layer ``l`` is masked: its attention probabilities are set to 0,
``α'_{l,h} = 0``, so its output (``α V``) is zero and it contributes nothing to the layer; every other
head is left as it is. Per example and per head of every layer: ``TVD(p(α), p(α'))`` and the flip
(``argmax p(α') ≠ ŷ``). Heads whose removal changes the output matter to the decision, so their
attention is the one worth explaining; the verdict relates this importance to each head's agreement
with the references.

Reference:
    Michel, Levy & Neubig (2019), "Are Sixteen Heads Really Better than One?", NeurIPS.
    https://arxiv.org/abs/1905.10650
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from tasks.config import InterventionOptions
from tasks.explain.clean_mixing import CleanMixing, clean_mixing, layer_output
from tasks.explain.passes import BatchContext
from tasks.interventions.mechanism import output_changes, statistic_values
from tasks.model.attention_hook import AttentionEdit
from tasks.records import InterventionValue


def head_mask_edit(layer: int, heads: torch.Tensor) -> AttentionEdit:
    """An edit zeroing head ``heads[n]`` of ``layer`` in run ``n`` (the head then adds nothing)."""

    def edit(at: int, probabilities: torch.Tensor) -> torch.Tensor:
        if at != layer:
            return probabilities
        keep = torch.ones(probabilities.shape[:2], dtype=probabilities.dtype, device=probabilities.device)
        keep[torch.arange(probabilities.shape[0]), heads] = 0.0
        return probabilities * keep[:, :, None, None]

    return edit


def masked_head_outputs(
    mixing: CleanMixing, selected: torch.Tensor, heads: torch.Tensor, width: int, at: torch.Tensor | None = None
) -> torch.Tensor:
    """A post-LN layer's output with head ``heads[n]`` masked in run ``n``, from its clean attention block.

    Masking head ``h`` takes ``δ_i = W_O^h (A_h V_h)_i`` away from ``LN1``'s clean input ``z_i``
    (``tasks.explain.clean_mixing``): the head's output ``(A_h V_h)_i`` is the model pass's, mapped by
    ``W_O^h`` and ``N W_O^h`` (a ``d``-wide product), and only ``LN1``, the feed-forward block and ``LN2`` run.

    Args:
        mixing: The layer's clean attention block.
        selected: ``[n]`` batch row of each run.
        heads: ``[n]`` head masked in each run.
        width: Positions kept, ``W'``.
        at: ``[n]`` the one position to compute per run (the classification position of the last layer),
            or None for every position.

    Returns:
        ``[n, W', D]``, or ``[n, 1, D]`` with ``at``.
    """
    heads = heads.to(selected.device)
    if at is None:
        removed = mixing.head_contexts[selected, :width, heads]  # (A_h V_h)_i, [n, W', d]
        residual, mapped = mixing.residual[selected, :width], mixing.mapped_residual[selected, :width]
    else:
        removed = mixing.head_contexts[selected, at, heads][:, None]
        residual, mapped = mixing.residual[selected, at][:, None], mixing.mapped_residual[selected, at][:, None]
    removed_maps = removed.new_empty((*removed.shape[:2], mixing.head_maps.shape[-1]))
    for head in torch.unique(heads).tolist():  # one product per head: W_O^h and N W_O^h of (A_h V_h)_i
        runs = torch.nonzero(heads == head).squeeze(1)
        removed_maps[runs] = removed[runs] @ mixing.head_maps[head]
    delta, mapped_delta = removed_maps.split([mixing.width, mixing.offset.shape[0]], dim=-1)
    return layer_output(mixing, residual - delta, mapped - mapped_delta)


def _masked_outputs_for(
    context: BatchContext, layer: int, masked_heads: torch.Tensor
) -> Callable[[np.ndarray, torch.Tensor, int], torch.Tensor]:
    """``output_for`` of ``BatchContext.probabilities_after_layer``: run ``n`` masks head ``masked_heads[n]``."""
    mixing = clean_mixing(context, layer)
    last = layer == context.bundle.num_layers - 1

    def output_for(members: np.ndarray, selected: torch.Tensor, width: int) -> torch.Tensor:
        at = context.classification_positions[selected] if last else None
        return masked_head_outputs(mixing, selected, masked_heads[torch.as_tensor(members)], width, at)

    return output_for


def head_masking(context: BatchContext, options: InterventionOptions) -> list[InterventionValue]:
    """Mask each head of each layer alone; TVD and flip per head.

    On a post-LN encoder the masked layer's output comes from its clean attention block
    (``masked_head_outputs``) and only the layers above it run; other families run the masked layer and
    those above it with the head's probabilities zeroed (``head_mask_edit``).
    """
    bundle, examples = context.bundle, context.examples
    heads = bundle.num_heads
    values = []
    rows = np.repeat(np.arange(len(examples)), heads)
    masked_heads = torch.as_tensor(np.tile(np.arange(heads), len(examples)))
    from_clean = bundle.adapter.post_norm is not None and bundle.adapter.supports_interventions
    for layer in range(bundle.num_layers):
        if from_clean:
            output_for = _masked_outputs_for(context, layer, masked_heads)
            probabilities = context.probabilities_after_layer(rows, layer, output_for)
        else:

            def edit_for(members: np.ndarray, layer: int = layer) -> AttentionEdit:
                return head_mask_edit(layer, masked_heads[torch.as_tensor(members)])

            probabilities = context.intervened_probabilities(rows, layer, edit_for)
        changes, flips = output_changes(context, rows, probabilities)
        for run, (row, head) in enumerate(zip(rows.tolist(), masked_heads.tolist(), strict=True)):
            statistics = {"tvd": changes[run], "flip": flips[run]}
            values += statistic_values(examples[row].example_id, "head_masking", statistics, layer, head)
    return values
