"""Gradient-based reference attributions, all with respect to the input word embeddings.

``e_j`` is token ``j``'s row of the word-embedding table (before position and segment embeddings are
added, as in Captum's ``LayerIntegratedGradients`` on ``word_embeddings``); ``z_ŷ`` is the logit (not
the probability) of the predicted class.

- ``saliency``: ``‖∂z_ŷ/∂e_j‖₂`` (non-negative).
- ``grad_x_input``: ``Σ_d (∂z_ŷ/∂e_j)_d · e_{j,d}`` (signed).
- ``integrated_gradients``: ``IG_j = Σ_d (e_j − e'_j)_d · ∫₀¹ ∂z_ŷ(e' + α(e − e'))/∂e_{j,d} dα``
  (signed). Baseline ``e'``: the ``[PAD]`` embedding at content positions, special tokens unchanged
  (so their IG is 0). The integral uses ``m`` Gauss–Legendre nodes and weights on [0, 1] (Captum's
  default) or the right Riemann sum ``mean_{k=1..m} ∂z_ŷ(e' + (k/m)(e − e'))``. Completeness:
  ``Σ_j IG_j ≈ z_ŷ(e) − z_ŷ(e')``; the error is stored per example and judged against
  ``max(0.05 · |z_ŷ(e) − z_ŷ(e')|, 0.01)``.
- **Step schedule** ``m_1 < m_2 < ...`` (default 16, 32, 64): every example is integrated with ``m_1``
  steps; an example whose completeness fails is integrated afresh with ``m_2`` (Gauss–Legendre nodes
  are not nested, so nothing is reused), and so on. An example keeps the first result that holds, or
  the last size's result, flagged. The steps it used are stored (diagnostic ``ig_steps``). A schedule
  of one size is the fixed-``m`` rule.

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
from tasks.records import TokenScores

COMPLETENESS_RELATIVE_TOLERANCE = 0.05
COMPLETENESS_ABSOLUTE_TOLERANCE = 0.01


def integration_nodes(steps: int, rule: IntegrationRule) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``α_k`` in (0, 1] and weights ``w_k`` (summing to 1) of the path integral."""
    if rule == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (nodes + 1.0), 0.5 * weights
    return np.arange(1, steps + 1) / steps, np.full(steps, 1.0 / steps)


def steps_run(schedule: tuple[int, ...], final: int) -> int:
    """Interpolation steps an example integrated with the sizes of ``schedule`` up to ``final`` has run.

    Every size is a fresh set of nodes, so an example kept at ``m_k`` ran ``m_1 + ... + m_k`` steps.
    """
    if final not in schedule:
        raise ValueError(f"{final} steps is not a size of the schedule {schedule}")
    return sum(steps for steps in schedule if steps <= final)


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
    attributions = torch.zeros(embeddings.shape[:2], dtype=torch.float64, device=embeddings.device)
    steps_used = np.zeros(len(context.examples), dtype=np.int64)
    pending = np.arange(len(context.examples))
    for steps in options.ig_steps:
        attributions[pending] = path_attributions(context, baseline, pending, steps, options.ig_rule)
        steps_used[pending] = steps
        errors = attributions[pending].sum(dim=1).cpu().numpy() - gaps[pending]
        holds = np.array([completeness_holds(e, g) for e, g in zip(errors, gaps[pending], strict=True)], dtype=bool)
        pending = pending[~holds]
        if pending.size == 0:
            break
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
    context: BatchContext, baseline: torch.Tensor, rows: np.ndarray, steps: int, rule: IntegrationRule
) -> torch.Tensor:
    """``IG_j`` of the batch rows ``rows`` with ``steps`` nodes of ``rule``, ``[len(rows), W]`` in float64.

    Every (example, node) pair is one row of work, run length-sorted in chunks under the gradient token
    budget; rows of one chunk share the chunk's width. Padding has ``e = e'``, so its ``IG_j`` is 0.
    """
    embeddings = context.model_pass.embeddings
    assert embeddings is not None
    difference = embeddings - baseline
    alphas, weights = integration_nodes(steps, rule)
    order = rows[np.argsort(context.lengths[rows], kind="stable")]
    slot = {int(row): index for index, row in enumerate(rows)}
    pairs = [(int(row), node) for row in order for node in range(steps)]
    path_gradient = torch.zeros((len(rows), *embeddings.shape[1:]), dtype=torch.float64, device=embeddings.device)
    for chunk in chunks_under_budget([int(context.lengths[row]) for row, _ in pairs], context.gradient_token_budget):
        members = torch.tensor([pairs[i][0] for i in chunk], device=embeddings.device)
        slots = torch.tensor([slot[pairs[i][0]] for i in chunk], device=embeddings.device)
        alpha = torch.tensor([alphas[pairs[i][1]] for i in chunk], dtype=embeddings.dtype, device=embeddings.device)
        weight = torch.tensor([weights[pairs[i][1]] for i in chunk], dtype=torch.float64, device=embeddings.device)
        width = int(context.lengths[members.cpu().numpy()].max())
        points = baseline[members, :width] + alpha[:, None, None] * difference[members, :width]
        _, grads = context.target_logit_gradients(points, members)
        path_gradient[:, :width].index_add_(0, slots, weight[:, None, None] * grads.double())
    return (difference[torch.as_tensor(rows, device=embeddings.device)].double() * path_gradient).sum(dim=-1)
