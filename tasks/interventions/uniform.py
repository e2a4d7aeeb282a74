"""Uniform attention (Wiegreffe & Pinter 2019): is the learned attention distribution needed at all?

Every head's attention of a layer ``l``, every query row, is replaced by uniform weights over the
non-padding keys, ``α'_{h,i,j} = m_j / Σ_k m_k`` with ``m`` the attention mask; each layer alone and all
layers at once (stored with layer None). Per example: ``TVD(p(α), p(α'))``, the flip
(``argmax p(α') ≠ ŷ``) and the prediction under the change, from which the report compares accuracy with
and without learned attention. If uniform attention predicts as well, the learned distribution is not
needed for the decision.

Reference:
    Wiegreffe & Pinter (2019), "Attention is not not Explanation", EMNLP.
    https://arxiv.org/abs/1908.04626
"""

from __future__ import annotations

import numpy as np
import torch

from tasks.config import InterventionOptions
from tasks.explain.passes import BatchContext
from tasks.interventions.mechanism import output_changes, statistic_values
from tasks.model.attention_hook import AttentionEdit
from tasks.records import InterventionValue


def uniform_edit(layers: set[int], key_mask: torch.Tensor) -> AttentionEdit:
    """An edit replacing the attention of ``layers`` by uniform weights over the keys in ``key_mask``.

    ``key_mask`` is ``[n, W]`` (1 at real tokens) and may be wider than the chunk being run.
    """

    def edit(at: int, probabilities: torch.Tensor) -> torch.Tensor:
        if at not in layers:
            return probabilities
        keys = key_mask[:, : probabilities.shape[-1]].to(probabilities.dtype)
        weights = keys / keys.sum(dim=-1, keepdim=True)
        return weights[:, None, None, :].expand_as(probabilities).contiguous()

    return edit


def uniform(context: BatchContext, options: InterventionOptions) -> list[InterventionValue]:
    """Uniform attention over the non-padding keys in each layer alone and in all layers at once."""
    layers = context.bundle.num_layers
    batch_rows = np.arange(len(context.examples))
    values = []
    for layer in [*range(layers), None]:
        changed = set(range(layers)) if layer is None else {layer}

        def edit_for(members: np.ndarray, changed: set[int] = changed) -> AttentionEdit:
            return uniform_edit(changed, context.attention_mask[torch.as_tensor(batch_rows[members])])

        probabilities = context.intervened_probabilities(batch_rows, 0 if layer is None else layer, edit_for)
        changes, flips = output_changes(context, batch_rows, probabilities)
        predicted = probabilities.argmax(dim=-1).numpy()
        for row, example in enumerate(context.examples):
            statistics = {"tvd": changes[row], "flip": flips[row], "predicted": predicted[row]}
            values += statistic_values(example.example_id, "uniform", statistics, layer)
    return values
