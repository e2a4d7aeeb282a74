"""Leave-one-out: how much the predicted class's probability drops when one token is removed.

``LOO_j = p_ŷ(x) − p_ŷ(x ∖ j)`` for every content token ``j`` (signed; 0 at special tokens). The token
is removed by the run's removal operator: its id is deleted (default; Jain & Wallace, ERASER and
ferret), or replaced by ``[MASK]`` (Abnar & Zuidema) or ``[PAD]``. Ids are deleted directly, never
decoded and re-tokenised (word pieces would re-merge and change the input).

The perturbed inputs go through the batch's perturbation cache, so comprehensiveness with a one-token
rationale (the same input) costs nothing more.

References:
    Jain & Wallace (2019), "Attention is not Explanation", NAACL. https://arxiv.org/abs/1902.10186
"""

from __future__ import annotations

import numpy as np

from tasks.config import MethodOptions
from tasks.explain.passes import BatchContext
from tasks.records import TokenScores


def leave_one_out_inputs(content_mask: np.ndarray) -> list[np.ndarray]:
    """One keep-mask per content token: everything kept but that token."""
    masks = []
    for position in np.flatnonzero(content_mask):
        keep = np.ones(content_mask.shape[0], dtype=bool)
        keep[position] = False
        masks.append(keep)
    return masks


def leave_one_out(context: BatchContext, options: MethodOptions) -> list[TokenScores]:
    """``p_ŷ(x) − p_ŷ(x ∖ j)`` for every content token, in one batched, de-duplicated evaluation."""
    requests = [
        (row, keep)
        for row, example in enumerate(context.examples)
        for keep in leave_one_out_inputs(example.content_mask)
    ]
    probabilities = context.perturbed_probabilities(requests)
    scores = [np.zeros(example.length) for example in context.examples]
    for (row, keep), probability in zip(requests, probabilities, strict=True):
        scores[row][~keep] = context.target_probabilities[row] - probability
    return context.records("leave_one_out", scores)
