"""The seed baseline (Wiegreffe & Pinter 2019): how much do attention and explanations vary with the seed?

Jain & Wallace's adversarial attention is "very different" from the original when its Jensen–Shannon
divergence from it is large. Wiegreffe & Pinter ask: large compared with what? Fine-tuning the same
architecture on the same data with another random seed already moves attention; an adversary that moves
it no further than a seed does has shown nothing about explanation. So every other fine-tuning (seed
model) is run on the run's examples and compared with the audited model, per example:

- at every layer ``l`` the adversarial intervention edits, the classification rows ``α_{h,c}`` of the
  audited model and ``β_{h,c}`` of the seed model, over the example's keys, exactly as
  ``tasks.interventions.adversarial`` compares the original with its adversary:
  ``attention_jsd = (1/H) Σ_h JSD(α_h, β_h)`` (bits) and ``attention_tvd = (1/H) Σ_h ½ Σ_j |α_hj − β_hj|``;
- the output distributions ``p`` and ``q``: ``output_tvd = ½ Σ_i |p_i − q_i|`` and ``prediction_kept``
  (1 when ``argmax p = argmax q``), the other half of W&P's comparison;
- for every built-in explanation method (the random baseline and imported explanations excluded: the
  first ignores the model, the second cannot be recomputed), Kendall's τ-b between its scores on the two
  models over the content units, compared as agreement compares them (``|s|`` for signed methods), the
  seed model explaining the class the audited model predicted (as the sanity check does).

An explanation whose mean τ with itself across seeds is below its agreement with the references changes
with the seed more than it agrees with them. The comparison and its words live in ``tasks.report.seeds``.

References:
    Wiegreffe & Pinter (2019), "Attention is not not Explanation", EMNLP, sections 3 and 4.
    https://arxiv.org/abs/1908.04626
    Jain & Wallace (2019), "Attention is not Explanation", NAACL. https://arxiv.org/abs/1902.10186
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tasks.config import MethodOptions
from tasks.data.encoding import plan_batches
from tasks.data.units import records_in_units, unit_indices
from tasks.evaluate.agreement import kendall_tau
from tasks.evaluate.batch_metrics import magnitudes
from tasks.evaluate.sanity import explained
from tasks.explain.registry import METHODS
from tasks.interventions.adversarial import jsd
from tasks.interventions.mechanism import resolve_layer, tvd
from tasks.model.bundle import ModelBundle
from tasks.records import EncodedExample, MethodFamily, Progress, SeedAgreement, SeedDistance, no_progress


@dataclass(frozen=True)
class ModelView:
    """What one model gives on one batch.

    Attributes:
        probabilities: Output distribution per example, ``[B, C]``.
        rows: Per resolved layer, each example's classification rows ``[H, T]`` over its own keys.
        scores: Per ``(example id, method)``, the scores agreement compares (``magnitudes``, in the run's units).
        targets: The class each example's explanations explain.
    """

    probabilities: np.ndarray
    rows: dict[int, list[np.ndarray]]
    scores: dict[tuple[str, str], np.ndarray]
    targets: list[int]


def compared_methods(methods: Iterable[str]) -> list[str]:
    """The methods compared across seeds: the registered ones that read the model (not the random baseline)."""
    return [name for name in methods if name in METHODS and METHODS[name].family != MethodFamily.BASELINE]


def attention_distances(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """JSD (bits) and TVD between two models' classification rows ``[H, T]``, each the mean over heads.

    ``JSD`` is ``tasks.interventions.adversarial.jsd`` and ``TVD`` ``tasks.interventions.mechanism.tvd``,
    the functions the adversarial intervention uses, so the numbers are on the same scale as its ``jsd``.
    """
    p, q = torch.from_numpy(np.asarray(a, dtype=np.float64)), torch.from_numpy(np.asarray(b, dtype=np.float64))
    return float(jsd(p, q).mean()), float(tvd(p, q).mean())


def view_of(
    bundle: ModelBundle,
    examples: Sequence[EncodedExample],
    methods: Sequence[str],
    options: MethodOptions,
    layers: Sequence[int],
    targets: Sequence[int] | None,
    token_budget: int,
) -> ModelView:
    """One model's output, classification rows at ``layers`` and explanations on one batch.

    The passes are the audit's own (``tasks.explain.passes.BatchContext`` through ``sanity.explained``).
    """
    context, records = explained(bundle, examples, methods, options, targets, token_budget)
    ranked = records_in_units(records, unit_indices(examples, options.units), options.units)
    positions = context.classification_positions.cpu()
    attentions = context.model_pass.attentions
    rows = {
        layer: [
            attentions[layer][row, :, int(positions[row]), : example.length].double().cpu().numpy()
            for row, example in enumerate(examples)
        ]
        for layer in layers
    }
    probabilities = torch.softmax(context.model_pass.logits.double(), dim=-1).cpu().numpy()
    scores = {(record.example_id, record.method): magnitudes(record) for record in ranked}
    return ModelView(probabilities, rows, scores, [int(t) for t in context.targets])


def compare_views(
    examples: Sequence[EncodedExample], original: ModelView, other: ModelView, seed_model: str
) -> tuple[list[SeedDistance], list[SeedAgreement]]:
    """The per-example distances and per-method τ between the audited model's view and a seed model's."""
    distances: list[SeedDistance] = []
    for row, example in enumerate(examples):
        p, q = original.probabilities[row], other.probabilities[row]
        output_tvd = 0.5 * float(np.abs(p - q).sum())
        kept = float(int(np.argmax(p)) == int(np.argmax(q)))
        for layer, rows in original.rows.items():
            attention_jsd, attention_tvd = attention_distances(rows[row], other.rows[layer][row])
            for statistic, value in (
                ("attention_jsd", attention_jsd),
                ("attention_tvd", attention_tvd),
                ("output_tvd", output_tvd),
                ("prediction_kept", kept),
            ):
                distances.append(SeedDistance(example.example_id, seed_model, layer, statistic, value))
    agreement = [
        SeedAgreement(example_id, seed_model, method, kendall_tau(scores, other.scores[(example_id, method)]))
        for (example_id, method), scores in original.scores.items()
    ]
    return distances, agreement


def seed_baseline(
    audited: ModelBundle,
    seeds: Sequence[tuple[str, ModelBundle]],
    examples: Sequence[EncodedExample],
    methods: Sequence[str],
    options: MethodOptions,
    layers: Sequence[int],
    *,
    batch_size: int,
    token_budget: int,
    progress: Progress = no_progress,
) -> tuple[list[SeedDistance], list[SeedAgreement]]:
    """Compare every seed model with the audited model on ``examples`` (batched as the audit batches).

    Args:
        audited: The audited model.
        seeds: ``(name, bundle)`` of each other fine-tuning, checked comparable (``tasks.model.seeds``).
        examples: The examples to compare.
        methods: The run's methods; those ``compared_methods`` keeps are recomputed on every model.
        options: The run's method options (units, removal, steps).
        layers: The adversarial intervention's layers (negative counts from the top).
        batch_size: Examples per batch.
        token_budget: Most tokens per forward pass.
        progress: Told after each batch, on the audited model and on every seed model.

    Returns:
        One ``SeedDistance`` per (example, seed model, layer, statistic) and one ``SeedAgreement`` per
        (example, seed model, method).
    """
    chosen = compared_methods(methods)
    resolved = sorted({resolve_layer(layer, audited.num_layers) for layer in layers})
    batches = plan_batches(examples, batch_size, token_budget)
    total = len(batches) * (1 + len(seeds))
    originals = []
    for index, batch in enumerate(batches, start=1):
        originals.append(view_of(audited, batch, chosen, options, resolved, None, token_budget))
        progress(index, total, f"audited model, batch {index}/{len(batches)}")
    distances: list[SeedDistance] = []
    agreement: list[SeedAgreement] = []
    for number, (name, bundle) in enumerate(seeds, start=1):  # seed models outer: each is loaded (and cached) once
        for index, (batch, original) in enumerate(zip(batches, originals, strict=True), start=1):
            other = view_of(bundle, batch, chosen, options, resolved, original.targets, token_budget)
            batch_distances, batch_agreement = compare_views(batch, original, other, name)
            distances += batch_distances
            agreement += batch_agreement
            progress(number * len(batches) + index, total, f"seed model {name}, batch {index}/{len(batches)}")
    return distances, agreement
