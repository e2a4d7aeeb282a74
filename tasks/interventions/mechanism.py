"""The mechanism every intervention shares: edit attention inside the forward pass, measure the change.

An intervention replaces attention probabilities inside the model's forward pass
(``tasks.model.attention_hook``), never the input. An edit of layer ``l`` starts from the cached hidden
states entering ``l`` and runs only the layers above it (``BatchContext.intervened_probabilities``). The
change of the output distribution ``p`` (original) to ``q`` (under the edit) is measured as the total
variation distance ``TVD(p, q) = ½ Σ_i |p_i − q_i|`` and as a decision flip (``argmax q ≠ ŷ``), as in
Jain & Wallace (2019), "Attention is not Explanation", NAACL (docs/methodology.md, "Interventions").
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from functools import partial

import numpy as np
import torch

from tasks.explain.passes import BatchContext
from tasks.model.attention_hook import AttentionEdit
from tasks.records import EncodedExample, InterventionValue

RowTransform = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``transform(rows [n, H, W'], runs [n]) -> rows``: new classification rows for the runs of one chunk."""

PerRunTransform = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``transform(per_run, rows, runs) -> rows``: a ``RowTransform`` reading its run's entry of ``per_run``."""


def tvd(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Total variation distance ``½ Σ |p − q|`` along the last axis."""
    return 0.5 * (p - q).abs().sum(dim=-1)


def resolve_layer(layer: int, layers: int) -> int:
    """A layer index with negatives counted from the top (-1 is the last), checked against the model.

    Raises:
        ValueError: The layer does not exist.
    """
    resolved = layer + layers if layer < 0 else layer
    if not 0 <= resolved < layers:
        raise ValueError(f"layer {layer} does not exist in a model with {layers} layers")
    return resolved


def example_rng(example: EncodedExample, *keys: int) -> np.random.Generator:
    """A generator seeded by ``keys`` and the example id: independent of the batch the example is in."""
    example_key = int.from_bytes(hashlib.sha256(example.example_id.encode()).digest()[:8], "little")
    return np.random.default_rng([*keys, example_key])


def content_positions(example: EncodedExample) -> np.ndarray:
    """Token positions of the example's content (not special, not padding) tokens."""
    return np.flatnonzero(example.content_mask)


# --- editing the classification rows ------------------------------------------------------------


def edit_classification_rows(
    layer: int, positions: torch.Tensor, new_rows: Callable[[torch.Tensor], torch.Tensor]
) -> AttentionEdit:
    """An edit replacing row ``positions[n]`` of every head of ``layer`` by ``new_rows(old_rows)``.

    ``new_rows`` maps ``[n, H, W]`` to ``[n, H, W]``; other layers and rows are left as they are.
    """

    def edit(at: int, probabilities: torch.Tensor) -> torch.Tensor:
        if at != layer:
            return probabilities
        runs = torch.arange(probabilities.shape[0], device=probabilities.device)
        # A last layer computed at the classification position only has that single query row.
        queries = positions if probabilities.shape[-2] > 1 else torch.zeros_like(positions)
        rows = probabilities[runs, :, queries]
        edited = probabilities.clone()
        edited[runs, :, queries] = new_rows(rows)
        return edited

    return edit


def row_edits(layer: int, positions: torch.Tensor, transform: RowTransform) -> Callable[[np.ndarray], AttentionEdit]:
    """Per-chunk edits of the classification rows of ``layer`` for ``intervened_probabilities``."""

    def edit_for(members: np.ndarray) -> AttentionEdit:
        runs = torch.as_tensor(members, device=positions.device)
        return edit_classification_rows(layer, positions[runs], lambda old: transform(old, runs))

    return edit_for


# --- measuring the change -----------------------------------------------------------------------


def output_changes(
    context: BatchContext, rows: np.ndarray, probabilities: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """TVD from the original output and whether the decision flipped, per run.

    Args:
        context: The batch (its model pass holds the original logits and predictions).
        rows: The batch row of each run.
        probabilities: The output distribution of each run under its edit, ``[runs, classes]``.
    """
    original = torch.softmax(context.model_pass.logits.double().cpu(), dim=-1)[torch.as_tensor(rows)]
    predicted = context.targets.cpu()[torch.as_tensor(rows)]
    return tvd(original, probabilities).numpy(), (probabilities.argmax(dim=-1) != predicted).numpy()


def row_edit_changes(
    context: BatchContext, rows: np.ndarray, layer: int, transform: PerRunTransform, per_run: np.ndarray | list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Edit the classification rows of ``layer``, one run per entry of ``rows``; TVD and flip per run.

    ``transform(per_run, old_rows, runs)`` gives each run's new rows from its entry of ``per_run``
    (a permutation of the keys, a key to erase).
    """
    positions = context.classification_positions[torch.as_tensor(rows)]
    edit_for = row_edits(layer, positions, partial(transform, torch.as_tensor(per_run, device=positions.device)))
    return output_changes(context, rows, context.intervened_probabilities(rows, layer, edit_for))


def statistic_values(
    example_id: str,
    intervention: str,
    statistics: Mapping[str, float],
    layer: int | None,
    head: int | None = None,
) -> list[InterventionValue]:
    """The stored rows of one example at one layer (and head): one per statistic, in the given order."""
    return [
        InterventionValue(example_id, intervention, statistic, float(value), layer, head)
        for statistic, value in statistics.items()
    ]
