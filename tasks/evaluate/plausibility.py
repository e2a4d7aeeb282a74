"""Plausibility: does an explanation highlight what people highlight (ERASER; ferret)?

Against a human rationale ``h`` (a boolean mask over the content tokens, ``tasks.data.rationales``), per example:

- ``token_f1``: F1 between ``h`` and the explanation's top-``k`` content tokens, ``k = |h|`` (the same number
  of tokens as people marked; ties go to the earlier token);
- ``token_iou``: intersection over union of those two token sets; the dataset-level **IOU-F1** is the share
  of examples with IOU ≥ 0.5 (ERASER's partial-match criterion, with each example's rationale taken as
  one span set);
- ``auprc``: area under the precision–recall curve of the scores against ``h`` (trapezoidal, as
  ``sklearn.metrics.auc(recall, precision)`` on ``precision_recall_curve``, which ferret uses).

Signed scores rank by value (evidence for the predicted class), as for faithfulness. Undefined (NaN) when
the example has no rationale, an empty one, or no content tokens. Plausibility is not faithfulness: an
explanation can look right to people and still not reflect what the model used (Jacovi & Goldberg 2020).

References:
    DeYoung et al. (2020), "ERASER: A Benchmark to Evaluate Rationalized NLP Models", ACL.
    https://arxiv.org/abs/1911.03429
    Attanasio et al. (2023), "ferret: a Framework for Benchmarking Explainers on Transformers".
    Jacovi & Goldberg (2020), "Towards Faithfully Interpretable NLP Systems", ACL.
    https://arxiv.org/abs/2004.03685
"""

from __future__ import annotations

import numpy as np

from tasks.evaluate.agreement import top_indices

IOU_MATCH = 0.5
"""ERASER's partial-match threshold for IOU-F1."""


def _predicted(scores: np.ndarray, rationale: np.ndarray) -> np.ndarray:
    """The top-``|h|`` positions as a boolean mask (same length as ``scores``)."""
    predicted = np.zeros(scores.shape[0], dtype=bool)
    predicted[top_indices(scores, int(rationale.sum()))] = True
    return predicted


def token_f1(scores: np.ndarray, rationale: np.ndarray) -> float:
    """F1 of the top-``|h|`` tokens against the rationale ``h`` (content tokens only); NaN if ``h`` is empty."""
    if scores.shape[0] == 0 or not rationale.any():
        return float("nan")
    predicted = _predicted(scores, rationale)
    overlap = int((predicted & rationale).sum())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / predicted.sum(), overlap / rationale.sum()
    return float(2 * precision * recall / (precision + recall))


def token_iou(scores: np.ndarray, rationale: np.ndarray) -> float:
    """``|top-|h| ∩ h| / |top-|h| ∪ h|``; NaN if ``h`` is empty."""
    if scores.shape[0] == 0 or not rationale.any():
        return float("nan")
    predicted = _predicted(scores, rationale)
    return float((predicted & rationale).sum() / (predicted | rationale).sum())


def auprc(scores: np.ndarray, rationale: np.ndarray) -> float:
    """Trapezoidal area under the precision–recall curve of ``scores`` against ``rationale``.

    Follows ``sklearn.metrics.precision_recall_curve`` (one point per distinct score, descending, the curve
    stopping at full recall, plus the point recall 0 / precision 1) and ``sklearn.metrics.auc``.
    """
    if scores.shape[0] == 0 or not rationale.any():
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    ordered, truth = scores[order], rationale[order].astype(np.float64)
    last_of_each_value = np.r_[np.flatnonzero(np.diff(ordered)), ordered.shape[0] - 1]
    true_positives = np.cumsum(truth)[last_of_each_value]
    predicted_positives = last_of_each_value + 1.0
    precision = true_positives / predicted_positives
    recall = true_positives / true_positives[-1]
    full = int(np.searchsorted(true_positives, true_positives[-1]))
    precision = np.r_[precision[full::-1], 1.0]
    recall = np.r_[recall[full::-1], 0.0]
    return float(abs(np.trapezoid(precision, recall)))
