"""Faithfulness: does removing what a method ranks highest change the prediction?

For a method's scores over the ``n`` content tokens, ``r_k`` is the set of its top
``max(1, ⌊k·n⌋)`` tokens by score (signed scores by value: evidence for ``ŷ`` first; ties go to the
earlier token). Unlike ferret, which takes ``int(k·n)`` tokens and so skips small ``k`` on short
sentences, the rationale always holds at least one token.

- ``comprehensiveness(k) = p_ŷ(x) − p_ŷ(x ∖ r_k)``: higher is more faithful.
- ``sufficiency(k) = p_ŷ(x) − p_ŷ(r_k)``, keeping ``r_k`` and the special tokens: lower is more faithful.
- AOPC: the mean over ``k ∈ {1, 5, 10, 20, 50} %`` (configurable).
- ``taucorr_loo``: Kendall τ-b between the method's scores and leave-one-out's (higher is better).

Soft comprehensiveness and sufficiency (Zhao & Aletras 2023) do not remove tokens: each element of a
content token's word embedding is kept with a probability given by the min-max-normalised score ``s_j``
(``1 − s_j`` for comprehensiveness, ``s_j`` for sufficiency) and zeroed otherwise, and the drop is
normalised by the all-zero input's sufficiency ``S(0)`` (``soft_comprehensiveness``, ``soft_sufficiency``).

Tokens are removed with the run's removal operator (``delete`` by default). ``comp(100 %)`` keeps only
the special tokens. The functions here are pure: which inputs a metric needs (``keep`` masks) and how
its value follows from the model's probabilities on them. ``tasks.evaluate.batch_metrics`` runs the model on
every distinct input once.

References:
    DeYoung et al. (2020), "ERASER: A Benchmark to Evaluate Rationalized NLP Models", ACL.
    https://arxiv.org/abs/1911.03429
    Zhao & Aletras (2023), "Incorporating Attribution Importance for Improving Faithfulness Metrics",
    ACL. https://arxiv.org/abs/2305.10496
    Attanasio et al. (2023), "ferret: a Framework for Benchmarking Explainers on Transformers", EACL
    demos. https://arxiv.org/abs/2208.01575
"""

from __future__ import annotations

import math

import numpy as np

from tasks.evaluate.agreement import kendall_tau, top_indices
from tasks.records import TokenScores


def rationale_size(n_content: int, k: float) -> int:
    """``max(1, ⌊k·n⌋)`` tokens (0 when there are no content tokens)."""
    if n_content == 0:
        return 0
    return max(1, math.floor(k * n_content + 1e-9))


def rationale(record: TokenScores, k: float) -> np.ndarray:
    """Boolean mask over all ``T`` positions marking ``r_k``, the top ``k`` share of content tokens."""
    content_positions = np.flatnonzero(record.content_mask)
    size = rationale_size(content_positions.shape[0], k)
    chosen = content_positions[top_indices(record.scores[content_positions], size)]
    mask = np.zeros(record.scores.shape[0], dtype=bool)
    mask[chosen] = True
    return mask


def comprehensiveness_input(record: TokenScores, k: float) -> np.ndarray:
    """Keep-mask of ``x ∖ r_k``: everything but the rationale."""
    return ~rationale(record, k)


def sufficiency_input(record: TokenScores, k: float) -> np.ndarray:
    """Keep-mask of ``r_k`` alone, with the special tokens."""
    return rationale(record, k) | ~record.content_mask


def probability_drop(original: float, perturbed: float) -> float:
    """``p_ŷ(x) − p_ŷ(x')``: comprehensiveness for ``x' = x ∖ r_k``, sufficiency for ``x' = r_k``."""
    return original - perturbed


def aopc(values: list[float]) -> float:
    """Area over the perturbation curve: the mean over rationale sizes (NaN if any is NaN)."""
    return float(np.mean(values)) if values else float("nan")


def taucorr_loo(record: TokenScores, leave_one_out: TokenScores) -> float:
    """Kendall τ-b between a method's content scores and leave-one-out's (signed, as ferret)."""
    return kendall_tau(record.content_scores, leave_one_out.content_scores)


def soft_keep_probabilities(record: TokenScores, comprehensiveness: bool) -> np.ndarray | None:
    """Per token, the probability ``q_j`` that an element of its embedding is kept (Zhao & Aletras 2023).

    ``s_j = (a_j − min a) / (max a − min a)`` over the content tokens (signed scores by value, as
    the paper's min-max normalisation); ``q_j = 1 − s_j`` for comprehensiveness, ``s_j`` for sufficiency;
    special tokens are always kept (``q = 1``), as the hard metrics keep them. None when the content
    scores are constant (or there are none): the normalisation is undefined.
    """
    content = record.content_scores
    if content.shape[0] == 0 or not np.isfinite(content).all() or np.ptp(content) == 0:
        return None
    normalised = (content - content.min()) / np.ptp(content)
    keep = np.ones(record.scores.shape[0])
    keep[record.content_mask] = 1.0 - normalised if comprehensiveness else normalised
    return keep


def soft_sufficiency_of(original: float, perturbed: float) -> float:
    """``S(x') = 1 − max(0, p_ŷ(x) − p_ŷ(x'))`` (Carton et al. 2020, as Zhao & Aletras 2023 use it)."""
    return 1.0 - max(0.0, original - perturbed)


def soft_comprehensiveness(original: float, perturbed: float, empty: float) -> float:
    """Soft-NC: ``max(0, p_ŷ(x) − p_ŷ(x')) / (1 − S(0))``, clipped to [0, 1] (Zhao & Aletras 2023).

    ``empty`` is ``p_ŷ`` of the input with every content embedding zeroed; NaN when ``1 − S(0) = 0`` (the
    empty input is as confident as the full one, so nothing can be normalised).
    """
    denominator = 1.0 - soft_sufficiency_of(original, empty)
    if denominator <= 0:
        return float("nan")
    return float(np.clip(max(0.0, original - perturbed) / denominator, 0.0, 1.0))


def soft_sufficiency(original: float, perturbed: float, empty: float) -> float:
    """Soft-NS: ``max(0, S(x') − S(0)) / (1 − S(0))``, clipped to [0, 1] (Zhao & Aletras 2023).

    Higher is better (unlike the hard ``sufficiency``, a drop); NaN when ``1 − S(0) = 0``.
    """
    empty_sufficiency = soft_sufficiency_of(original, empty)
    if empty_sufficiency >= 1.0:
        return float("nan")
    value = max(0.0, soft_sufficiency_of(original, perturbed) - empty_sufficiency) / (1.0 - empty_sufficiency)
    return float(np.clip(value, 0.0, 1.0))
