"""Leave-one-out: how much the predicted class's probability drops when one token (or unit) is removed.

``LOO_j = p_ŷ(x) − p_ŷ(x ∖ j)`` for every content token ``j`` (signed; 0 at special tokens). The token
is removed by the run's removal operator: its id is deleted (default; Jain & Wallace, ERASER and
ferret), or replaced by ``[MASK]`` (Abnar & Zuidema) or ``[PAD]``. Ids are deleted directly, never
decoded and re-tokenised (word pieces would re-merge and change the input).

With word or sentence units (``--units``, ``tasks.data.units``) the unit ``u`` is what is left out: all its
pieces are removed at once, ``LOO_u = p_ŷ(x) − p_ŷ(x ∖ u)``, so an example costs one perturbed input per
content unit instead of one per content token. The token scores stored keep one row per token: each of
the unit's ``|u|`` tokens holds an equal share, ``LOO_u / |u|``, so the sum over a unit that every metric
takes (``tasks.data.units.to_units``) gives back ``LOO_u`` exactly, and token and unit totals agree.

The perturbed inputs go through the batch's perturbation cache, so comprehensiveness with a one-unit
rationale (the same input) costs nothing more.

References:
    Jain & Wallace (2019), "Attention is not Explanation", NAACL. https://arxiv.org/abs/1902.10186
"""

from __future__ import annotations

import numpy as np

from tasks.config import MethodOptions
from tasks.data.units import INDEX
from tasks.explain.passes import BatchContext
from tasks.records import TokenScores


def leave_one_out_inputs(content_mask: np.ndarray, unit: np.ndarray | None = None) -> list[np.ndarray]:
    """One keep-mask over tokens per content unit: everything kept but that unit's tokens.

    Args:
        content_mask: ``[T]``, the tokens that may be removed.
        unit: ``unit[t]``, the unit of token ``t`` (``tasks.data.units``); None: every token its own unit.
    """
    unit = np.arange(content_mask.shape[0]) if unit is None else unit
    return [unit != u for u in dict.fromkeys(unit[content_mask].tolist())]


def leave_one_out(context: BatchContext, options: MethodOptions) -> list[TokenScores]:
    """``p_ŷ(x) − p_ŷ(x ∖ u)`` for every content unit, shared equally by its tokens; one batched evaluation."""
    requests = [
        (row, keep)
        for row, example in enumerate(context.examples)
        for keep in leave_one_out_inputs(example.content_mask, INDEX[options.units](example))
    ]
    probabilities = context.perturbed_probabilities(requests)
    scores = [np.zeros(example.length) for example in context.examples]
    for (row, keep), probability in zip(requests, probabilities, strict=True):
        scores[row][~keep] = (context.target_probabilities[row] - probability) / np.count_nonzero(~keep)
    return context.records("leave_one_out", scores)
