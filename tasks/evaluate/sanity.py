"""Sanity checks (Adebayo et al. 2018): does an explanation change when the model is destroyed?

Model-parameter randomisation, cascading: stage 0 re-initialises the classification head (with the
model's own initialiser, seeded), stage ``s`` also the top ``s`` transformer layers, down to every layer
(the embeddings are kept, as in Adebayo et al.'s cascade over the network's layers). At every stage every
built-in explanation is recomputed on a seeded sample of the run's examples, explaining the class the
original model predicted, and compared with its original scores by Spearman's ρ over the content tokens,
on the signed scores and on their absolute values (as Adebayo et al. do).

An explanation that barely changes when the model it explains is destroyed cannot be explaining that
model: it **fails** when, with every layer randomised, the interval of the mean absolute-value ρ lies
above ``similarity_max``; it **passes** when the interval lies below; otherwise the check is unclear.
A ranking that ignores the model (the random baseline, or token position) fails by construction.
Label randomisation (retraining on shuffled labels) is out of scope: it needs a retrained model per check.
Imported explanations cannot be recomputed on a randomised model, so they have no sanity check.

References:
    Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim (2018), "Sanity Checks for Saliency Maps", NeurIPS.
    https://arxiv.org/abs/1810.03292
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from tasks.config import MethodOptions
from tasks.data.encoding import plan_batches
from tasks.evaluate.agreement import spearman_rho
from tasks.explain.passes import BatchContext
from tasks.explain.registry import METHODS
from tasks.model.bundle import ModelBundle
from tasks.records import EncodedExample, Progress, TokenScores, no_progress

HEAD_MODULES = ("classifier", "pre_classifier", "score", "classification_head")


def cascade_stages(bundle: ModelBundle) -> list[torch.nn.Module]:
    """The layers the cascade randomises one at a time, from the top (ALBERT's shared group once)."""
    return list(dict.fromkeys(reversed(bundle.adapter.layer_modules(bundle.model))))


def randomised_models(bundle: ModelBundle, seed: int) -> Iterator[tuple[int, str, ModelBundle]]:
    """``(stage, what is randomised, bundle)`` for the head, then cumulatively each layer from the top."""
    model = copy.deepcopy(bundle.model)
    initialise = model._init_weights  # noqa: SLF001 - the model's own initialiser, as at training start
    torch.manual_seed(seed)
    for name, module in model.named_modules():
        if name.split(".")[0] in HEAD_MODULES or name.endswith("pooler"):
            module.apply(initialise)
    yield 0, "classification head", replace(bundle, model=model)
    layers = bundle.adapter.layer_modules(model)
    distinct = cascade_stages(replace(bundle, model=model))
    for stage, layer in enumerate(distinct, start=1):
        torch.manual_seed(seed + stage)
        layer.apply(initialise)
        if len(distinct) < len(layers):
            label = f"head + {stage} of {len(distinct)} shared layer group{'s' if len(distinct) > 1 else ''}"
        else:
            label = f"head + top {stage} layer{'s' if stage > 1 else ''}"
        yield stage, label, replace(bundle, model=model)


def sample(
    examples: Sequence[EncodedExample], size: int | None, seed: int, tokens: int | None = None
) -> list[EncodedExample]:
    """The first examples in the order of ``sha256(f"{seed}:{id}")`` (independent of the batches).

    Args:
        examples: The run's examples.
        size: At most this many (None: no cap).
        seed: Seed of the order.
        tokens: Take examples only until their tokens (special tokens included) reach this many; the
            example that reaches it is taken, so the sample is never empty. None: no token budget.

    Returns:
        A prefix of the seeded order, so a larger size or budget keeps every example a smaller one took.
    """
    key = {e.example_id: hashlib.sha256(f"{seed}:{e.example_id}".encode()).hexdigest() for e in examples}
    ordered = sorted(examples, key=lambda e: key[e.example_id])[:size]
    if tokens is None:
        return ordered
    taken = np.cumsum([0, *(e.length for e in ordered)])
    return ordered[: max(1, int(np.searchsorted(taken, tokens, side="left")))]


def scores_of(
    bundle: ModelBundle, examples: Sequence[EncodedExample], methods: Sequence[str], options: MethodOptions,
    targets: Sequence[int] | None, token_budget: int,
) -> tuple[list[TokenScores], list[int]]:  # fmt: skip
    """Every method's scores on ``examples``, explaining ``targets`` (the model's predictions when None)."""
    context, records = explained(bundle, examples, methods, options, targets, token_budget)
    return records, [int(t) for t in context.targets]


def explained(
    bundle: ModelBundle, examples: Sequence[EncodedExample], methods: Sequence[str], options: MethodOptions,
    targets: Sequence[int] | None, token_budget: int,
) -> tuple[BatchContext, list[TokenScores]]:  # fmt: skip
    """The batch's passes and every method's first-draw scores, explaining ``targets`` (ŷ when None)."""
    specs = [METHODS[name] for name in methods]
    context = BatchContext(
        bundle,
        examples,
        token_budget=token_budget,
        removal=options.removal,
        need_gradients=any(spec.needs_gradients for spec in specs),
        need_attention_grads=any(spec.needs_attention_grads for spec in specs),
        target_classes=targets,
    )
    return context, [record for spec in specs for record in spec.compute(context, options) if record.draw == 0]


Stage = int | None
"""A unit of the check: None for the original model, ``s`` for the cascade's stage ``s`` (``randomised_models``)."""

StageScores = tuple[str, dict[tuple[str, str], np.ndarray]]
"""What a stage computed: its label and every ``(example id, method)``'s content scores."""


def stages(bundle: ModelBundle) -> list[Stage]:
    """The check's units: the original model, the head, then each layer from the top."""
    return [None, *range(1 + len(cascade_stages(bundle)))]


def stage_scores(
    bundle: ModelBundle,
    examples: Sequence[EncodedExample],
    methods: Sequence[str],
    options: MethodOptions,
    seed: int,
    stage: Stage,
    token_budget: int,
    *,
    batch_size: int = 32,
    batch_done: Callable[[str, int, int], None] | None = None,
) -> StageScores:
    """Every method's content scores on one stage's model, explaining the original model's predicted classes.

    Each stage is computed on its own (the cascade's model rebuilt up to ``stage``, the original model's
    classes recomputed by a forward pass), so the stages can run in any order or in parallel and give the
    rows of one sequential cascade. The examples are computed in batches (``plan_batches``: at most
    ``batch_size`` examples and ``token_budget`` tokens); ``batch_done(label, index, batches)`` is told after each.
    """
    methods = [m for m in methods if m in METHODS]
    label, model = ("original model", bundle) if stage is None else stage_model(bundle, seed, stage)
    batches = plan_batches(examples, batch_size, token_budget)
    scores: dict[tuple[str, str], np.ndarray] = {}
    for index, batch in enumerate(batches, start=1):
        targets = BatchContext(bundle, batch, token_budget=token_budget, need_gradients=False).targets.tolist()
        records, _ = scores_of(model, batch, methods, options, targets, token_budget)
        scores.update({(record.example_id, record.method): record.content_scores for record in records})
        if batch_done is not None:
            batch_done(label, index, len(batches))
    return label, scores


def compared(scores: Mapping[Stage, StageScores]) -> pd.DataFrame:
    """Spearman ρ (signed and absolute) between the original's scores and each stage's, per example and method."""
    _, before = scores[None]
    rows = [
        {
            "example_id": example_id,
            "method": method,
            "stage": stage,
            "randomised": label,
            "spearman": _spearman(before[(example_id, method)], after),
            "spearman_absolute": _spearman(np.abs(before[(example_id, method)]), np.abs(after)),
        }
        for stage, (label, stage_after) in sorted((s, v) for s, v in scores.items() if s is not None)
        for (example_id, method), after in stage_after.items()
    ]
    return pd.DataFrame(rows)


def sanity_rows(
    bundle: ModelBundle,
    examples: Sequence[EncodedExample],
    methods: Sequence[str],
    options: MethodOptions,
    seed: int,
    token_budget: int,
    *,
    batch_size: int = 32,
    progress: Progress = no_progress,
) -> pd.DataFrame:
    """The whole check in this process: every stage's scores (``stage_scores``), ``compared``.

    ``progress`` is told after each batch of the original model and of every stage of the cascade.
    """
    units = stages(bundle)
    told = 0

    def batch_done(label: str, index: int, batches: int) -> None:
        nonlocal told
        told += 1
        progress(told, batches * len(units), f"{label}, batch {index}/{batches}")

    scores = {
        stage: stage_scores(
            bundle, examples, methods, options, seed, stage, token_budget, batch_size=batch_size, batch_done=batch_done
        )
        for stage in units
    }
    return compared(scores)


def stage_model(bundle: ModelBundle, seed: int, stage: int) -> tuple[str, ModelBundle]:
    """The cascade's model at ``stage`` and its label, weight for weight as ``randomised_models`` yields it."""
    return next((label, model) for at, label, model in randomised_models(bundle, seed) if at == stage)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ; 1 for identical vectors (even constant ones: nothing changed), NaN when undefined."""
    if a.shape[0] < 2:
        return float("nan")
    if np.array_equal(a, b):
        return 1.0
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return spearman_rho(a, b)
