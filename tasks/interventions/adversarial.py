"""Adversarial attention (Jain & Wallace 2019): can very different attention give the same prediction?

For each chosen layer ``l``, every head's classification row ``α_{h,c}`` is replaced by
``α' = softmax(z)`` over the non-padding keys, with the logits ``z`` optimised by Adam (from
``log α`` plus standard normal noise, drawn per example over its own keys from a generator seeded by
``(seed, layer, example id)``, so that an example's result does not depend on its batch) to

    maximise  JSD(α, α') − λ · max(0, TVD(p(α'), p(α)) − ε),

the Jensen–Shannon divergence in bits averaged over heads, ``λ = ADVERSARIAL_PENALTY``. Per example: the
largest JSD reached by an iterate within the constraint ``TVD ≤ ε`` (``jsd``), that iterate's TVD
(``tvd``), and whether the last iterate held the constraint (``constraint_held``). A large JSD with an
unchanged output means very different attention explains the same prediction, so this attention is not
the explanation. Only the logits ``z`` are optimised, never the model's parameters.

Reference:
    Jain & Wallace (2019), "Attention is not Explanation", NAACL. https://arxiv.org/abs/1902.10186
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tasks.config import InterventionOptions
from tasks.explain.passes import BatchContext
from tasks.interventions.mechanism import (
    edit_classification_rows,
    example_rng,
    resolve_layer,
    statistic_values,
    tvd,
)
from tasks.records import EncodedExample, InterventionValue

ADVERSARIAL_PENALTY = 100.0
"""``λ`` of the adversarial objective: a TVD 0.01 over ε costs as much as a JSD gain of 1."""
_NOISE_STREAM = 3
"""Key of the initial noise in ``example_rng`` (permutation draws from 1, erasure from 2)."""


def jsd(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon divergence in bits along the last axis (0 ≤ JSD ≤ 1); zero entries are handled.

    ``JSD(p, q) = ½ KL(p ‖ m) + ½ KL(q ‖ m)`` with ``m = ½ (p + q)`` and ``KL`` in base 2.
    """
    middle = 0.5 * (p + q)

    def kl(a: torch.Tensor) -> torch.Tensor:
        ratio = torch.where(a > 0, a / middle.clamp_min(1e-30), torch.ones_like(a))
        return (a * torch.log2(ratio)).sum(dim=-1)

    return 0.5 * kl(p) + 0.5 * kl(q)


def adversarial(context: BatchContext, options: InterventionOptions) -> list[InterventionValue]:
    """Adversarial attention rows: as different as possible from the original, the output within ε."""
    values = []
    for requested in options.layers:
        layer = resolve_layer(requested, context.bundle.num_layers)
        best_jsd, best_tvd, final_held = _optimise(context, options, layer)
        for row, example in enumerate(context.examples):
            statistics = {
                "jsd": float(best_jsd[row]),
                "tvd": float(best_tvd[row]),
                "constraint_held": float(final_held[row]),
            }
            values += statistic_values(example.example_id, "adversarial", statistics, layer)
    return values


def initial_noise(examples: Sequence[EncodedExample], shape: torch.Size, seed: int, layer: int) -> torch.Tensor:
    """Standard normal noise ``[B, H, W]`` on each example's own keys, 0 on padding.

    Row ``b`` is drawn from ``example_rng(examples[b], seed, layer, 3)`` over ``[H, length_b]`` only,
    so it is the same whatever the batch's size, order and width.
    """
    noise = torch.zeros(shape)
    for row, example in enumerate(examples):
        draw = example_rng(example, seed, layer, _NOISE_STREAM).standard_normal((shape[1], example.length))
        noise[row, :, : example.length] = torch.from_numpy(draw)
    return noise


def _optimise(
    context: BatchContext, options: InterventionOptions, layer: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run Adam on the logits of the adversarial rows of ``layer``, counting the work.

    Returns:
        Per example: the best feasible JSD, its TVD, and whether the last iterate held the constraint.
    """
    bundle, examples = context.bundle, context.examples
    original = torch.softmax(context.model_pass.logits.double(), dim=-1).float()
    rows = torch.arange(len(examples), device=context.input_ids.device)
    positions = context.classification_positions
    keys = context.attention_mask.bool()  # [B, W]
    attention = context.model_pass.attentions[layer][rows, :, positions].float()  # [B, H, W]
    noise = initial_noise(examples, attention.shape, options.seed, layer).to(attention.device)
    logits = (attention.clamp_min(1e-12).log() + noise).requires_grad_(True)
    optimiser = torch.optim.Adam([logits], lr=options.adversarial_learning_rate)
    best_jsd = torch.zeros(len(examples))
    best_tvd = torch.zeros(len(examples))
    changed = torch.zeros(len(examples))  # the output change before any step; replaced by each step (at least one)
    hidden = context.model_pass.hidden_states[layer]
    share = (bundle.num_layers - layer) / bundle.num_layers  # the layers run: those from ``layer`` up
    tokens = int(context.lengths.sum() * share)
    for _step in range(options.adversarial_steps):
        candidate = torch.softmax(logits.masked_fill(~keys[:, None, :], float("-inf")), dim=-1)
        edit = edit_classification_rows(layer, positions, lambda old, new=candidate: new.to(old.dtype))
        with torch.enable_grad():
            output = bundle.adapter.logits_from(bundle.model, hidden, context.attention_mask, layer, edit)
            changed = tvd(torch.softmax(output.float(), dim=-1), original)
            divergence = jsd(attention, candidate).mean(dim=-1)
            loss = (-divergence + ADVERSARIAL_PENALTY * (changed - options.adversarial_epsilon).clamp_min(0)).sum()
        (logits.grad,) = torch.autograd.grad(loss, [logits])  # not the model's parameters
        optimiser.step()
        with torch.no_grad():
            feasible = (changed <= options.adversarial_epsilon) & (divergence > best_jsd)
            best_jsd = torch.where(feasible, divergence.detach(), best_jsd)
            best_tvd = torch.where(feasible, changed.detach(), best_tvd)
        context.counter.forward_rows += len(examples)
        context.counter.backward_rows += len(examples)
        context.counter.forward_tokens += tokens
        context.counter.backward_tokens += tokens
    return best_jsd, best_tvd, changed.detach() <= options.adversarial_epsilon
