"""The per-example metrics of ``tasks.evaluate.metrics`` evaluated on one batch's records.

``faithfulness_values`` and ``agreement_values`` apply the pure functions of ``tasks.evaluate.faithfulness``
and ``tasks.evaluate.agreement`` to every method's records, asking the batch for all perturbed inputs at
once so that each distinct input is run once; ``plausibility_values`` those of
``tasks.evaluate.plausibility``. Each returns ``MetricValue`` rows keyed by the registry's metric ids.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from tasks.config import MethodOptions
from tasks.data.units import aggregate, token_mask
from tasks.evaluate.agreement import pairwise_kendall_tau, pairwise_spearman_rho, pairwise_top_k_overlap
from tasks.evaluate.faithfulness import (
    aopc,
    comprehensiveness_input,
    probability_drop,
    sufficiency_input,
    taucorr_loo,
)
from tasks.evaluate.plausibility import auprc, token_f1, token_iou
from tasks.explain.passes import BatchContext
from tasks.explain.registry import METHODS, spec_of
from tasks.records import EncodedExample, HeadAgreement, MethodFamily, MetricValue, TokenScores


def faithfulness_values(
    records: Sequence[TokenScores],
    context: BatchContext,
    options: MethodOptions,
    units: Mapping[str, np.ndarray] | None = None,
) -> list[MetricValue]:
    """Comprehensiveness and sufficiency at every ``k``, their AOPC, and τ with leave-one-out.

    ``records`` are in the run's units (``tasks.data.units``); ``units`` maps each example to ``unit[t]``, so
    that removing a unit removes all its tokens (token level when None). Examples without content
    units get NaN (there is nothing to remove).
    """
    row_of = {example.example_id: row for row, example in enumerate(context.examples)}
    requests: list[tuple[int, np.ndarray]] = []
    plan: list[tuple[TokenScores, str, float]] = []
    for record in records:
        if not record.content_mask.any():
            continue
        unit = None if units is None else units[record.example_id]
        for k in options.k_fractions:
            for metric, keep in (
                ("comprehensiveness", comprehensiveness_input(record, k)),
                ("sufficiency", sufficiency_input(record, k)),
            ):
                plan.append((record, metric, k))
                requests.append((row_of[record.example_id], keep if unit is None else token_mask(keep, unit)))
    probabilities = context.perturbed_probabilities(requests)

    per_k: dict[tuple[str, str, int, str], list[float]] = defaultdict(list)
    values: list[MetricValue] = []
    for (record, metric, k), probability in zip(plan, probabilities, strict=True):
        original = float(context.target_probabilities[row_of[record.example_id]])
        value = probability_drop(original, float(probability))
        per_k[(record.example_id, record.method, record.draw, metric)].append(value)
        values.append(MetricValue(record.example_id, record.method, metric, value, record.draw, k=k))
    leave_one_out = {r.example_id: r for r in records if r.method == "leave_one_out"}
    for record in records:
        key = (record.example_id, record.method, record.draw)
        for metric in ("comprehensiveness", "sufficiency"):
            values.append(
                MetricValue(
                    record.example_id,
                    record.method,
                    f"aopc_{metric}",
                    aopc(per_k.get((*key, metric), [])),
                    record.draw,
                )
            )
        if record.example_id in leave_one_out:
            values.append(
                MetricValue(
                    record.example_id,
                    record.method,
                    "taucorr_loo",
                    taucorr_loo(record, leave_one_out[record.example_id]),
                    record.draw,
                )
            )
    return values


def magnitudes(record: TokenScores) -> np.ndarray:
    """Content scores as agreement compares them: ``|s|`` for signed methods (Jain & Wallace)."""
    scores = record.content_scores
    return np.abs(scores) if spec_of(record.method).signed else scores


def oriented(a: TokenScores, b: TokenScores) -> tuple[TokenScores, TokenScores]:
    """Which of a pair is stored as ``method`` and which as ``reference``.

    The random baseline is always the method (its draws stay apart); otherwise an explanation under test
    is the method and a reference the reference; two of a kind keep the registry's order.
    """
    family = {r.method: spec_of(r.method).family for r in (a, b)}
    if family[b.method] == MethodFamily.BASELINE or (
        family[a.method] == MethodFamily.REFERENCE and family[b.method] != MethodFamily.REFERENCE
    ):
        return b, a
    return a, b


def agreement_values(records: Sequence[TokenScores], options: MethodOptions) -> list[MetricValue]:
    """Kendall τ-b, Spearman ρ and top-k overlap of every pair of methods, per example.

    Every explanation is compared with every reference (attention's agreement, the verdict's evidence),
    the references with each other (are they consistent?), and every other pair (the all-pairs matrix).
    The random baseline's agreement with each method is the chance level.
    """
    order = {name: index for index, name in enumerate(METHODS)}
    by_example: dict[str, list[TokenScores]] = defaultdict(list)
    for record in records:
        by_example[record.example_id].append(record)
    values: list[MetricValue] = []
    for example_records in by_example.values():
        ranked = sorted(example_records, key=lambda r: (order.get(r.method, len(order)), r.draw))
        position = {id(record): index for index, record in enumerate(ranked)}
        scores = np.stack([magnitudes(record) for record in ranked])
        matrices = (
            ("kendall_tau", pairwise_kendall_tau(scores, scores)),
            ("spearman_rho", pairwise_spearman_rho(scores, scores)),
            ("top_k_overlap", pairwise_top_k_overlap(scores, scores, options.agreement_top_k)),
        )
        for index, first in enumerate(ranked):
            for second in ranked[index + 1 :]:
                if first.method == second.method:
                    continue  # draws of the random baseline among themselves
                method, reference = oriented(first, second)
                pair = (position[id(method)], position[id(reference)])
                for metric, matrix in matrices:
                    values.append(
                        MetricValue(
                            method.example_id,
                            method.method,
                            metric,
                            float(matrix[pair]),
                            method.draw,
                            reference=reference.method,
                        )
                    )
    return values


def segment_share_values(records: Sequence[TokenScores], examples: Sequence[EncodedExample]) -> list[MetricValue]:
    """For text pairs: the share of each explanation's mass on the second text.

    ``share = Σ_{j ∈ b} |s_j| / Σ_j |s_j|`` over the content tokens of the pair ``(a, b)``, on token
    scores whatever the units (a word's sum can cancel signed pieces). The first text's share is
    ``1 − share``; NaN when the explanation puts no mass anywhere.
    """
    segments = {e.example_id: e.segments for e in examples if e.segments is not None}
    values = []
    for record in records:
        segment = segments.get(record.example_id)
        if segment is None:
            continue
        mass = np.abs(record.scores) * record.content_mask
        total = float(mass.sum())
        share = float(mass[segment == 1].sum()) / total if total > 0 else float("nan")
        values.append(MetricValue(record.example_id, record.method, "second_text_share", share, record.draw))
    return values


def diagnostic_values(records: Sequence[TokenScores]) -> list[MetricValue]:
    """The methods' own per-example diagnostics (e.g. IG completeness) as metric values."""
    return [
        MetricValue(record.example_id, record.method, name, float(value), record.draw)
        for record in records
        for name, value in record.diagnostics.items()
    ]


def head_agreement_values(
    records: Sequence[TokenScores], context: BatchContext, units: Mapping[str, np.ndarray] | None = None
) -> list[HeadAgreement]:
    """Kendall τ-b of every head's classification row ``A[l,h][c,:]`` with every reference, per example.

    Relates a head's importance (``head_masking``) to whether its attention ranks tokens as the
    references do. Content units only (a head's attention to a word is summed over its tokens);
    signed references by magnitude.
    """
    attentions = context.model_pass.attentions
    positions = context.classification_positions
    rows = torch.arange(len(context.examples), device=positions.device)
    heads = torch.stack([a[rows, :, positions] for a in attentions], dim=1).cpu().numpy()  # [B, L, H, W]
    layers, per_layer = heads.shape[1:3]
    row_of = {example.example_id: row for row, example in enumerate(context.examples)}
    values = []
    for reference in records:
        if spec_of(reference.method).family != MethodFamily.REFERENCE:
            continue
        row = row_of[reference.example_id]
        unit = None if units is None else units[reference.example_id]
        row_scores = heads[row].reshape(layers * per_layer, -1)[:, : context.examples[row].length]
        scores = row_scores if unit is None else np.stack([aggregate(head, unit) for head in row_scores])
        tau = pairwise_kendall_tau(scores[:, reference.content_mask], magnitudes(reference)[None, :])[:, 0]
        values.extend(
            HeadAgreement(
                reference.example_id,
                index // per_layer,
                index % per_layer,
                reference.method,
                "kendall_tau",
                float(value),
            )
            for index, value in enumerate(tau)
        )
    return values


def plausibility_values(
    records: Sequence[TokenScores],
    examples: Sequence[EncodedExample],
    units: Mapping[str, np.ndarray] | None = None,
) -> list[MetricValue]:
    """Token F1, token IOU and AUPRC of every record against its example's human rationale, if it has one.

    In word or sentence units a unit is in the rationale when any of its tokens is.
    """
    rationale = {
        e.example_id: e.rationale if units is None else aggregate(e.rationale, units[e.example_id], first=False) > 0
        for e in examples
        if e.rationale is not None
    }
    values = []
    for record in records:
        human = rationale.get(record.example_id)
        if human is None:
            continue
        scores, truth = record.content_scores, human[record.content_mask]
        for metric, function in (("token_f1", token_f1), ("token_iou", token_iou), ("auprc", auprc)):
            values.append(MetricValue(record.example_id, record.method, metric, function(scores, truth), record.draw))
    return values
