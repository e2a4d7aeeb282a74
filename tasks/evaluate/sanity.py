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
from collections.abc import Iterator, Sequence
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
    """Spearman ρ (signed and absolute) between original and randomised scores, per example, method, stage.

    The examples are computed in batches (``plan_batches``: at most ``batch_size`` examples and
    ``token_budget`` tokens), and ``progress`` is told after each batch of the original model and of
    every stage of the cascade.
    """
    methods = [m for m in methods if m in METHODS]
    batches = plan_batches(examples, batch_size, token_budget)
    total = len(batches) * (2 + len(cascade_stages(bundle)))  # the original, the head, each layer
    before: dict[tuple[str, str], np.ndarray] = {}
    targets: list[list[int]] = []
    for index, batch in enumerate(batches, start=1):
        original, batch_targets = scores_of(bundle, batch, methods, options, None, token_budget)
        before.update({(r.example_id, r.method): r.content_scores for r in original})
        targets.append(batch_targets)
        progress(index, total, f"original model, batch {index}/{len(batches)} ({len(batch)} examples)")
    rows = []
    for stage, label, randomised in randomised_models(bundle, seed):
        for index, (batch, batch_targets) in enumerate(zip(batches, targets, strict=True), start=1):
            after, _ = scores_of(randomised, batch, methods, options, batch_targets, token_budget)
            for record in after:
                first = before[(record.example_id, record.method)]
                rows.append(
                    {
                        "example_id": record.example_id,
                        "method": record.method,
                        "stage": stage,
                        "randomised": label,
                        "spearman": _spearman(first, record.content_scores),
                        "spearman_absolute": _spearman(np.abs(first), np.abs(record.content_scores)),
                    }
                )
            progress((stage + 1) * len(batches) + index, total, f"{label}, batch {index}/{len(batches)}")
    return pd.DataFrame(rows)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ; 1 for identical vectors (even constant ones: nothing changed), NaN when undefined."""
    if a.shape[0] < 2:
        return float("nan")
    if np.array_equal(a, b):
        return 1.0
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return spearman_rho(a, b)
