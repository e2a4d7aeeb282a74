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

import numpy as np
import torch

from tasks.config import InterventionOptions
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


def head_masking(context: BatchContext, options: InterventionOptions) -> list[InterventionValue]:
    """Mask each head of each layer alone; TVD and flip per head."""
    bundle, examples = context.bundle, context.examples
    heads = bundle.num_heads
    values = []
    rows = np.repeat(np.arange(len(examples)), heads)
    masked_heads = torch.as_tensor(np.tile(np.arange(heads), len(examples)))
    for layer in range(bundle.num_layers):

        def edit_for(members: np.ndarray, layer: int = layer) -> AttentionEdit:
            return head_mask_edit(layer, masked_heads[torch.as_tensor(members)])

        changes, flips = output_changes(context, rows, context.intervened_probabilities(rows, layer, edit_for))
        for run, (row, head) in enumerate(zip(rows.tolist(), masked_heads.tolist(), strict=True)):
            statistics = {"tvd": changes[run], "flip": flips[run]}
            values += statistic_values(examples[row].example_id, "head_masking", statistics, layer, head)
    return values
