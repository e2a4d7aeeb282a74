"""Gradient-based reference attributions, all with respect to the input word embeddings.

``e_j`` is token ``j``'s row of the word-embedding table (before position and segment embeddings are
added, as in Captum's ``LayerIntegratedGradients`` on ``word_embeddings``); ``z_ŷ`` is the logit (not
the probability) of the predicted class.

- ``saliency``: ``‖∂z_ŷ/∂e_j‖₂`` (non-negative).
- ``grad_x_input``: ``Σ_d (∂z_ŷ/∂e_j)_d · e_{j,d}`` (signed).
- ``integrated_gradients``: ``IG_j = Σ_d (e_j − e'_j)_d · ∫₀¹ ∂z_ŷ(e' + α(e − e'))/∂e_{j,d} dα``
  (signed). Baseline ``e'``: the ``[PAD]`` embedding at content positions, special tokens unchanged
  (so their IG is 0). The integral uses ``m`` Gauss–Legendre nodes and weights on [0, 1] (Captum's
  default before the schedule), the nested Gauss–Kronrod–Patterson rules of QUADPACK (default) or the
  right Riemann sum ``mean_{k=1..m} ∂z_ŷ(e' + (k/m)(e − e'))``. Completeness:
  ``Σ_j IG_j ≈ z_ŷ(e) − z_ŷ(e')``; the error is stored per example and judged against
  ``max(0.05 · |z_ŷ(e) − z_ŷ(e')|, 0.01)``.
- **Step schedule** ``m_1 < m_2 < ...`` (default the nested ``patterson`` rule at 10, 21, 43, 87 nodes):
  every example is integrated with ``m_1`` nodes; an example whose completeness fails is integrated with
  ``m_2``, and so on. With a nested rule (``patterson``) only the nodes ``m_k`` adds are evaluated and the
  gradients already taken are reused with the new weights; with Gauss–Legendre (not nested) every size is
  a fresh set of nodes. An example keeps the first result that holds, or the last size's result, flagged.
  The size it was kept at is stored (diagnostic ``ig_steps``). A schedule of one size is the fixed-``m``
  rule. Nodes and weights: ``tasks.explain.quadrature``.

Saliency and grad x input come from the batch's single backward pass; integrated gradients runs each
size's interpolation steps for all the examples still pending together, chunked under the token budget.

References:
    Simonyan et al. (2014), "Deep Inside Convolutional Networks". https://arxiv.org/abs/1312.6034
    Shrikumar et al. (2017), "Learning Important Features Through Propagating Activation
    Differences". https://arxiv.org/abs/1704.02685
    Sundararajan et al. (2017), "Axiomatic Attribution for Deep Networks", ICML.
    https://arxiv.org/abs/1703.01365
"""

from __future__ import annotations

import numpy as np
import torch

from tasks.config import IntegrationRule, MethodOptions
from tasks.explain.batching import chunks_under_budget
from tasks.explain.passes import BatchContext
from tasks.explain.quadrature import integration_nodes, is_nested
from tasks.records import TokenScores

COMPLETENESS_RELATIVE_TOLERANCE = 0.05
COMPLETENESS_ABSOLUTE_TOLERANCE = 0.01


def steps_run(schedule: tuple[int, ...], final: int, rule: IntegrationRule) -> int:
    """Interpolation steps an example integrated with the sizes of ``schedule`` up to ``final`` has run.

    With a nested rule (``patterson``) every size reuses the nodes of the smaller ones, so an example kept
    at ``m_k`` ran ``m_k`` steps; otherwise every size is a fresh set of nodes and it ran ``m_1 + ... + m_k``.
    """
    if final not in schedule:
        raise ValueError(f"{final} steps is not a size of the schedule {schedule}")
    return final if is_nested(rule) else sum(steps for steps in schedule if steps <= final)


def completeness_holds(error: float, logit_gap: float) -> bool:
    """``|error| <= max(0.05 · |z_ŷ(e) − z_ŷ(e')|, 0.01)`` (docs/methodology.md)."""
    return abs(error) <= max(COMPLETENESS_RELATIVE_TOLERANCE * abs(logit_gap), COMPLETENESS_ABSOLUTE_TOLERANCE)


def saliency(context: BatchContext, options: MethodOptions) -> list[TokenScores]:
    """``‖∂z_ŷ/∂e_j‖₂`` from the batch's backward pass."""
    grads = context.model_pass.embedding_grads
    assert grads is not None, "saliency needs the gradient pass"
    return context.records("saliency", grads.norm(dim=-1))


def grad_x_input(context: BatchContext, options: MethodOptions) -> list[TokenScores]:
    """``Σ_d (∂z_ŷ/∂e_j)_d · e_{j,d}`` from the batch's backward pass."""
    grads, embeddings = context.model_pass.embedding_grads, context.model_pass.embeddings
    assert grads is not None and embeddings is not None, "grad x input needs the gradient pass"
    return context.records("grad_x_input", (grads * embeddings).sum(dim=-1))


def baseline_embeddings(context: BatchContext) -> torch.Tensor:
    """``e'``: the ``[PAD]`` embedding at content positions, the input's own at special tokens."""
    embeddings = context.model_pass.embeddings
    assert embeddings is not None
    table = context.bundle.adapter.word_embeddings(context.bundle.model)
    pad = table.weight[context.bundle.tokenizer.pad_token_id].detach()
    content = torch.zeros(embeddings.shape[:2], dtype=torch.bool, device=embeddings.device)
    for row, example in enumerate(context.examples):
        content[row, : example.length] = torch.from_numpy(example.content_mask)
    return torch.where(content[..., None], pad.to(embeddings.dtype), embeddings)


def integrated_gradients(context: BatchContext, options: MethodOptions) -> list[TokenScores]:
    """Integrated gradients with the ``[PAD]`` baseline, sizes of the step schedule tried in turn.

    Diagnostics hold the completeness check of the result kept and the steps ``m`` it used (``ig_steps``).
    """
    embeddings = context.model_pass.embeddings
    assert embeddings is not None, "integrated gradients needs the gradient pass"
    baseline = baseline_embeddings(context)
    all_rows = torch.arange(len(context.examples), device=embeddings.device)
    baseline_logit = context.target_logits(baseline, all_rows).cpu().numpy()
    input_logit = context.model_pass.logits.gather(1, context.targets[:, None])[:, 0].double().cpu().numpy()
    gaps = input_logit - baseline_logit
    rule, sizes = options.ig_rule, options.ig_steps
    # partial[s]: Σ_k w_k^(s) · c_k over the nodes evaluated so far, for size s of the schedule.
    partial = torch.zeros((len(sizes), *embeddings.shape[:2]), dtype=torch.float64, device=embeddings.device)
    steps_used = np.zeros(len(context.examples), dtype=np.int64)
    pending = np.arange(len(context.examples))
    evaluated = 0  # nodes the pending examples have been integrated at (a nested rule reuses them)
    for index, steps in enumerate(sizes):
        first = evaluated if is_nested(rule) else 0
        targets = range(index, len(sizes)) if is_nested(rule) else range(index, index + 1)
        alphas = integration_nodes(steps, rule)[0][first:]
        weights = np.stack([integration_nodes(sizes[target], rule)[1][first:steps] for target in targets])
        rows = torch.as_tensor(pending, device=embeddings.device)
        partial[targets.start : targets.stop, rows] += path_attributions(context, baseline, pending, alphas, weights)
        evaluated = steps
        steps_used[pending] = steps
        errors = partial[index, pending].sum(dim=1).cpu().numpy() - gaps[pending]
        holds = np.array([completeness_holds(e, g) for e, g in zip(errors, gaps[pending], strict=True)], dtype=bool)
        pending = pending[~holds]
        if pending.size == 0:
            break
    kept = torch.as_tensor([sizes.index(int(steps)) for steps in steps_used], device=embeddings.device)
    attributions = partial[kept, torch.arange(len(context.examples), device=embeddings.device)]
    diagnostics = []
    for row in range(len(context.examples)):
        gap = float(gaps[row])
        error = float(attributions[row].sum()) - gap
        diagnostics.append(
            {
                "completeness_error": error,
                "completeness_relative_error": abs(error) / abs(gap) if gap != 0 else float("nan"),
                "logit_gap": gap,
                "completeness_holds": float(completeness_holds(error, gap)),
                "ig_steps": float(steps_used[row]),
            }
        )
    return context.records("integrated_gradients", attributions, diagnostics=diagnostics)


def path_attributions(
    context: BatchContext, baseline: torch.Tensor, rows: np.ndarray, alphas: np.ndarray, weights: np.ndarray
) -> torch.Tensor:
    """``Σ_k w_k^(l) · c_jk`` of the batch rows ``rows``, ``[len(weights), len(rows), W]`` in float64.

    ``c_jk = Σ_d (e_j − e'_j)_d · ∂z_ŷ(e' + α_k(e − e'))/∂e_{j,d}`` is token ``j``'s contribution at node
    ``α_k``; every row ``l`` of ``weights`` (one weight per node) is one quadrature of those nodes (a nested
    rule weighs the same nodes for each of its larger sizes). Every (example, node) pair is one row of work,
    run length-sorted in chunks under the gradient token budget; rows of one chunk share the chunk's width.
    Padding has ``e = e'``, so its ``c_jk`` is 0.
    """
    embeddings = context.model_pass.embeddings
    assert embeddings is not None
    difference = embeddings - baseline
    order = rows[np.argsort(context.lengths[rows], kind="stable")]
    slot = {int(row): index for index, row in enumerate(rows)}
    pairs = [(int(row), node) for row in order for node in range(len(alphas))]
    node_weights = torch.as_tensor(weights, dtype=torch.float64, device=embeddings.device)
    result = torch.zeros((len(weights), len(rows), embeddings.shape[1]), dtype=torch.float64, device=embeddings.device)
    for chunk in chunks_under_budget([int(context.lengths[row]) for row, _ in pairs], context.gradient_token_budget):
        members = torch.tensor([pairs[i][0] for i in chunk], device=embeddings.device)
        slots = torch.tensor([slot[pairs[i][0]] for i in chunk], device=embeddings.device)
        nodes = torch.tensor([pairs[i][1] for i in chunk], device=embeddings.device)
        alpha = torch.tensor(alphas[nodes.cpu().numpy()], dtype=embeddings.dtype, device=embeddings.device)
        width = int(context.lengths[members.cpu().numpy()].max())
        points = baseline[members, :width] + alpha[:, None, None] * difference[members, :width]
        _, grads = context.target_logit_gradients(points, members)
        contributions = (difference[members, :width].double() * grads.double()).sum(dim=-1)
        result[:, :, :width].index_add_(1, slots, node_weights[:, nodes, None] * contributions[None])
    return result
