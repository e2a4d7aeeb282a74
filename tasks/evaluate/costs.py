"""What an audit costs against what it would cost done naively: the pass-count bound.

Every pass the audit needs, counted as if it were a full forward (or forward-and-backward) pass of a fresh
input, times the input's tokens, divided by the model's batched throughput on this machine, gives the
**naive bound** in seconds. The audit comes in under it by not doing passes: shared model passes,
de-duplicated perturbed inputs, interventions that start from cached hidden states, and a last layer
computed at the classification position only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tasks.config import AuditConfig
from tasks.explain.gradients import steps_run
from tasks.model.bundle import ModelBundle


@dataclass(frozen=True)
class Throughput:
    """Batched tokens per second of the model on this machine.

    Attributes:
        forward: Forward passes (inference mode).
        forward_backward: Forward and backward passes (gradient with respect to the input embeddings).
        length: Sequence length it was measured at.
    """

    forward: float
    forward_backward: float
    length: int


def measure_throughput(bundle: ModelBundle, length: int, rows: int = 32, repeats: int = 2) -> Throughput:
    """Best-of-``repeats`` batched throughput at ``rows`` x ``length`` tokens of random ids."""
    generator = torch.Generator().manual_seed(0)
    vocabulary = bundle.model.get_input_embeddings().num_embeddings
    ids = torch.randint(5, vocabulary, (rows, max(length, 2)), generator=generator).to(bundle.device)
    mask = torch.ones_like(ids)
    rates = []
    for backward in (False, True):
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            if backward:
                embeddings = bundle.model.get_input_embeddings()(ids).detach().requires_grad_(True)
                logits = bundle.model(inputs_embeds=embeddings, attention_mask=mask).logits
                torch.autograd.grad(logits[:, 0].sum(), [embeddings])
            else:
                with torch.inference_mode():
                    bundle.model(input_ids=ids, attention_mask=mask)
            best = min(best, time.perf_counter() - started)
        rates.append(ids.numel() / best)
    return Throughput(forward=rates[0], forward_backward=rates[1], length=int(ids.shape[1]))


def naive_passes(
    config: AuditConfig, tokens: int, content_tokens: int, layers: int, heads: int, ig_steps: int | None = None
) -> tuple[int, int]:
    """Forward-only and forward-and-backward passes one example needs, each counted as a full fresh pass.

    Per method, what it needs beyond the model pass (one forward and backward pass, counted once): the
    explanations read from the attention and the hidden states (attention, rollout, flow, norm-based
    attention, ALTI, GlobEnc, DecompX) nothing; leave-one-out one pass per content token; integrated
    gradients one backward pass per step it ran and the baseline's logit; Value Zeroing ``L · T`` passes, one per
    layer and zeroed token of the ``T`` (special tokens included) as Mohebbi et al. (2023) define it, each
    run changing one layer. Every explanation record adds comprehensiveness and sufficiency at every
    rationale size; each intervention its runs (``tasks.interventions``).

    Args:
        config: The resolved configuration (methods, interventions).
        tokens: The example's tokens ``T``, special tokens included.
        content_tokens: Its content tokens.
        layers: ``L``.
        heads: ``H``.
        ig_steps: The size of the step schedule the example's integrated gradients was kept at (its
            ``ig_steps`` diagnostic): it ran every size up to that one (only that one with a nested rule,
            ``tasks.explain.gradients.steps_run``). None counts the schedule's first
            size only, what every example needs.
    """
    methods, interventions = config.methods, config.interventions
    chosen = set(interventions.names)
    records = (
        len(methods.methods) - ("random" in methods.methods) + methods.random_draws * ("random" in methods.methods)
    )
    forward = 0 if "leave_one_out" not in methods.methods else content_tokens
    forward += layers * tokens if "value_zeroing" in methods.methods else 0
    forward += records * 2 * len(methods.k_fractions)  # comprehensiveness and sufficiency
    forward += 1 if "integrated_gradients" in methods.methods else 0  # the baseline's logit
    layers_run = len(interventions.layers)
    forward += interventions.permutation_draws * layers_run if "permutation" in chosen else 0
    forward += layers + 1 if "uniform" in chosen else 0
    forward += (1 + interventions.erasure_draws) * layers_run if "top_vs_random_erasure" in chosen else 0
    forward += layers * heads if "head_masking" in chosen else 0
    backward = 1  # the model pass
    if "integrated_gradients" in methods.methods:
        backward += steps_run(methods.ig_steps, methods.ig_steps[0] if ig_steps is None else ig_steps, methods.ig_rule)
    backward += interventions.adversarial_steps * layers_run if "adversarial" in chosen else 0
    return forward, backward


def naive_bound(
    config: AuditConfig,
    tokens: Sequence[int],
    content_tokens: Sequence[int],
    layers: int,
    heads: int,
    throughput: Throughput,
    ig_steps: Sequence[int | None] | None = None,
) -> float:
    """Seconds the naive pass count would take for these examples at the measured throughput.

    ``ig_steps``: per example, the step-schedule size its integrated gradients was kept at (see
    ``naive_passes``).
    """
    seconds = 0.0
    finals = ig_steps if ig_steps is not None else [None] * len(tokens)
    for length, content, final in zip(tokens, content_tokens, finals, strict=True):
        forward, backward = naive_passes(config, length, content, layers, heads, final)
        seconds += forward * length / throughput.forward + backward * length / throughput.forward_backward
    return seconds
