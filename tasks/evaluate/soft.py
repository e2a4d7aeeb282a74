"""Soft comprehensiveness and sufficiency (Zhao & Aletras 2023) on one batch: inputs dimmed, not removed.

For a record with min-max-normalised content scores ``s``, each element ``d`` of token ``j``'s word
embedding is kept (``m_{j,d} = 1``) with probability ``q_j`` and zeroed otherwise, ``m_{j,d} ~
Bernoulli(q_j)``: ``q_j = 1 − s_j`` for comprehensiveness, ``q_j = s_j`` for sufficiency, ``q = 1`` at the
special tokens (``tasks.evaluate.faithfulness.soft_keep_probabilities``). The model runs once on ``e ⊙ m``
(one draw of ``m`` per example, method, draw and metric, seeded by ``(seed, example, method, draw,
metric)``, so a value does not depend on the batch), and once per example on the input whose content
embeddings are all zeroed, the ``S(0)`` of the normalisation. In word or sentence units a unit's
probability applies to each of its tokens.

References:
    Zhao & Aletras (2023), "Incorporating Attribution Importance for Improving Faithfulness Metrics",
    ACL. https://arxiv.org/abs/2305.10496
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from tasks.config import MethodOptions
from tasks.evaluate.faithfulness import soft_comprehensiveness, soft_keep_probabilities, soft_sufficiency
from tasks.explain.batching import chunks_under_budget
from tasks.explain.passes import BatchContext
from tasks.records import MetricValue, TokenScores

SoftRequest = tuple[int, np.ndarray, int]
"""``(batch row, q per token [T], seed)``: one soft input."""


def draw_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from the run's seed and the parts that name one draw (stable across processes)."""
    text = ":".join(str(part) for part in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def keep_mask(keep: np.ndarray, dimensions: int, seed: int) -> np.ndarray:
    """``m_{j,d} ~ Bernoulli(q_j)``, ``[T, D]``: 1 with probability ``keep[j]`` (always at 1, never at 0)."""
    uniform = np.random.default_rng(seed).random((keep.shape[0], dimensions))
    return (uniform < keep[:, None]).astype(np.float32)


def soft_probabilities(context: BatchContext, requests: Sequence[SoftRequest]) -> np.ndarray:
    """``p_ŷ(e ⊙ m)`` for every request, run in length-sorted chunks under the token budget."""
    model, adapter = context.bundle.model, context.bundle.adapter
    with torch.inference_mode():
        embeddings = adapter.word_embeddings(model)(context.input_ids).float()
    dimensions = embeddings.shape[-1]
    lengths = [int(context.lengths[row]) for row, _, _ in requests]
    order = np.argsort(lengths, kind="stable")
    out = np.empty(len(requests))
    for chunk in chunks_under_budget([lengths[i] for i in order], context.token_budget):
        members = [int(order[i]) for i in chunk]
        width = max(lengths[m] for m in members)
        rows = torch.tensor([requests[m][0] for m in members], device=embeddings.device)
        masks = np.ones((len(members), width, dimensions), dtype=np.float32)
        for position, member in enumerate(members):
            _, keep, seed = requests[member]
            masks[position, : keep.shape[0]] = keep_mask(keep, dimensions, seed)
        inputs = embeddings[rows, :width] * torch.from_numpy(masks).to(embeddings.device)
        out[members] = context.target_probabilities_at(inputs.to(embeddings.dtype), rows)
    return out


def soft_values(
    records: Sequence[TokenScores],
    context: BatchContext,
    options: MethodOptions,
    units: Mapping[str, np.ndarray] | None = None,
) -> list[MetricValue]:
    """Soft-NC and Soft-NS of every record (NaN where the scores are constant or ``1 − S(0) = 0``)."""
    row_of = {example.example_id: row for row, example in enumerate(context.examples)}
    empty_requests = [
        (row, np.where(example.content_mask, 0.0, 1.0), 0) for row, example in enumerate(context.examples)
    ]
    plan: list[tuple[TokenScores, str]] = []
    requests: list[SoftRequest] = []
    for record in records:
        unit = None if units is None else units[record.example_id]
        for metric in ("soft_comprehensiveness", "soft_sufficiency"):
            keep = soft_keep_probabilities(record, comprehensiveness=metric == "soft_comprehensiveness")
            if keep is None:
                continue
            seed = draw_seed(options.seed, record.example_id, record.method, record.draw, metric)
            plan.append((record, metric))
            requests.append((row_of[record.example_id], keep if unit is None else keep[unit], seed))
    probabilities = soft_probabilities(context, [*empty_requests, *requests])
    empty, perturbed = probabilities[: len(empty_requests)], probabilities[len(empty_requests) :]
    values = [
        MetricValue(record.example_id, record.method, metric, float("nan"), record.draw)
        for record in records
        for metric in ("soft_comprehensiveness", "soft_sufficiency")
        if soft_keep_probabilities(record, comprehensiveness=True) is None
    ]
    for (record, metric), probability in zip(plan, perturbed, strict=True):
        row = row_of[record.example_id]
        original = float(context.target_probabilities[row])
        function = soft_comprehensiveness if metric == "soft_comprehensiveness" else soft_sufficiency
        values.append(
            MetricValue(
                record.example_id,
                record.method,
                metric,
                function(original, float(probability), float(empty[row])),
                record.draw,
            )
        )
    return values
