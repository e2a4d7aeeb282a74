"""Gradient references: saliency, grad x input, integrated gradients (checked against Captum) and its step schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients

from tasks.config import MethodOptions
from tasks.explain import gradients
from tasks.explain.gradients import (
    baseline_embeddings,
    completeness_holds,
    grad_x_input,
    integrated_gradients,
    saliency,
    steps_run,
)
from tasks.explain.passes import BatchContext
from tasks.explain.quadrature import integration_nodes, patterson_rule

OPTIONS = MethodOptions()


def fixed(steps: int) -> MethodOptions:
    """The fixed rule: a schedule of one size of Gauss–Legendre nodes."""
    return MethodOptions(ig_steps=(steps,), ig_rule="gausslegendre")


def legendre(*steps: int) -> MethodOptions:
    """A schedule of fresh Gauss–Legendre nodes."""
    return MethodOptions(ig_steps=steps, ig_rule="gausslegendre")


def single_example_gradient(bundle, example, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``e`` and ``∂z_target/∂e`` for one unpadded example, computed directly."""
    ids = torch.from_numpy(example.input_ids)[None]
    embeddings = bundle.model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = bundle.model(inputs_embeds=embeddings).logits
    (grad,) = torch.autograd.grad(logits[0, target], [embeddings])
    return embeddings.detach()[0], grad[0]


@pytest.mark.parametrize(("rule", "steps"), [("gausslegendre", 50), ("riemann_right", 50), ("patterson", 43)])
def test_integration_weights_sum_to_one_on_the_unit_interval(rule, steps):
    nodes, weights = integration_nodes(steps, rule)
    assert nodes.shape == weights.shape == (steps,)
    assert np.all((nodes > 0) & (nodes <= 1))
    np.testing.assert_allclose(weights.sum(), 1.0)


def test_gauss_legendre_integrates_a_polynomial_exactly():
    nodes, weights = integration_nodes(5, "gausslegendre")
    np.testing.assert_allclose((weights * nodes**7).sum(), 1 / 8)


@pytest.mark.parametrize(("size", "degree"), [(10, 19), (21, 31), (43, 65), (87, 131)])
def test_the_patterson_rules_integrate_polynomials_exactly_up_to_their_degree(size, degree):
    """QUADPACK's constants checked by what they must do: ``∫₋₁¹ P_k = 0`` for Legendre ``P_k``, ``k ≥ 1``,
    up to the rule's degree (Gauss 2n − 1; Kronrod 3n + 1 for n = 10; Patterson 65 and 131: odd degrees
    are exact by symmetry), and not beyond: a wrong digit in any node or weight breaks one of these."""
    nodes, weights = patterson_rule(size)
    integrals = [(weights * np.polynomial.legendre.legval(nodes, [0] * k + [1])).sum() for k in range(degree + 2)]
    np.testing.assert_allclose(integrals[0], 2.0, rtol=1e-15)
    np.testing.assert_allclose(integrals[1 : degree + 1], 0.0, atol=1e-14)
    assert abs(integrals[degree + 1]) > 1e-9


def test_the_patterson_rules_are_nested_and_start_from_the_gauss_rule():
    gauss, _ = np.polynomial.legendre.leggauss(10)
    np.testing.assert_allclose(np.sort(patterson_rule(10)[0]), gauss, atol=1e-15)
    for smaller, larger in ((10, 21), (21, 43), (43, 87)):
        assert np.array_equal(patterson_rule(larger)[0][:smaller], patterson_rule(smaller)[0])
        assert len(set(patterson_rule(larger)[0])) == larger
    with pytest.raises(ValueError, match="10, 21, 43, 87"):
        patterson_rule(50)


def test_saliency_is_the_norm_of_the_logit_gradient(context: BatchContext, tiny_bundle):
    records = saliency(context, OPTIONS)
    for row, example in enumerate(context.examples):
        _, grad = single_example_gradient(tiny_bundle, example, int(context.targets[row]))
        np.testing.assert_allclose(records[row].scores, grad.norm(dim=-1).numpy(), rtol=1e-4, atol=1e-6)


def test_grad_x_input_is_the_gradient_dot_the_embedding(context: BatchContext, tiny_bundle):
    records = grad_x_input(context, OPTIONS)
    for row, example in enumerate(context.examples):
        embeddings, grad = single_example_gradient(tiny_bundle, example, int(context.targets[row]))
        np.testing.assert_allclose(records[row].scores, (grad * embeddings).sum(-1).numpy(), rtol=1e-4, atol=1e-6)


def test_integrated_gradients_match_captum(context: BatchContext, tiny_bundle):
    ours = integrated_gradients(context, fixed(50))
    baselines = baseline_embeddings(context)
    for row, example in enumerate(context.examples):
        length = example.length
        target = int(context.targets[row])

        def forward(embeddings: torch.Tensor) -> torch.Tensor:
            return tiny_bundle.model(inputs_embeds=embeddings).logits

        captum = IntegratedGradients(forward).attribute(
            context.model_pass.embeddings[row : row + 1, :length],
            baselines=baselines[row : row + 1, :length],
            target=target,
            n_steps=50,
            method="gausslegendre",
        )
        expected = captum[0].sum(dim=-1).detach().double().numpy()
        scale = np.abs(expected).max()
        np.testing.assert_allclose(ours[row].scores, expected, atol=1e-4 * scale + 1e-7)


def test_integrated_gradients_are_complete(context: BatchContext):
    for record in integrated_gradients(context, OPTIONS):
        gap = record.diagnostics["logit_gap"]
        np.testing.assert_allclose(record.scores.sum() - gap, record.diagnostics["completeness_error"], atol=1e-9)
        assert completeness_holds(record.diagnostics["completeness_error"], gap)
        assert record.diagnostics["completeness_holds"] == 1.0
        assert record.diagnostics["ig_steps"] in OPTIONS.ig_steps


def test_completeness_error_shrinks_as_the_riemann_sum_gets_finer(tiny_bundle, examples):
    def total_error(steps: int) -> float:
        context = BatchContext(tiny_bundle, examples, need_gradients=True)
        options = MethodOptions(ig_steps=(steps,), ig_rule="riemann_right")
        return sum(abs(r.diagnostics["completeness_error"]) for r in integrated_gradients(context, options))

    assert total_error(64) < total_error(4)


def test_integrated_gradients_are_zero_at_special_tokens(context: BatchContext):
    for record in integrated_gradients(context, OPTIONS):
        assert np.all(record.scores[~record.content_mask] == 0)


def test_integrated_gradients_do_not_depend_on_batching_or_token_budget(tiny_bundle, examples):
    together = integrated_gradients(BatchContext(tiny_bundle, examples, gradient_token_budget=4096), OPTIONS)
    for row, example in enumerate(examples):
        alone = integrated_gradients(BatchContext(tiny_bundle, [example], gradient_token_budget=64), OPTIONS)[0]
        np.testing.assert_allclose(together[row].scores, alone.scores, rtol=1e-4, atol=1e-6)


def test_completeness_tolerance_follows_methods_md():
    assert completeness_holds(0.009, 0.0)
    assert not completeness_holds(0.011, 0.1)
    assert completeness_holds(0.04, 1.0)
    assert not completeness_holds(0.06, 1.0)


# --- the step schedule ----------------------------------------------------------------------------


def assert_same_result(record, reference) -> None:
    """Adaptive and fixed runs batch the steps differently, so they agree to float32 rounding."""
    np.testing.assert_allclose(record.scores, reference.scores, rtol=1e-4, atol=1e-6)
    for name in ("completeness_error", "logit_gap", "completeness_holds"):
        np.testing.assert_allclose(record.diagnostics[name], reference.diagnostics[name], rtol=1e-4, atol=1e-6)


def tolerance_between_the_two(bundle, pair, first_size: MethodOptions, monkeypatch) -> tuple[list, int, int]:
    """Set the completeness tolerance between the two examples' errors at the first size, so that it holds for
    one (``easy``) and not the other (``hard``); returns the first size's records and the two rows."""
    first = integrated_gradients(BatchContext(bundle, pair), first_size)
    relative = np.array([record.diagnostics["completeness_relative_error"] for record in first])
    assert relative[0] != relative[1]
    monkeypatch.setattr(gradients, "COMPLETENESS_RELATIVE_TOLERANCE", float(relative.mean()))
    monkeypatch.setattr(gradients, "COMPLETENESS_ABSOLUTE_TOLERANCE", 0.0)
    easy, hard = (int(row) for row in np.argsort(relative))
    return first, easy, hard


def test_the_schedule_integrates_again_only_the_examples_whose_completeness_fails(tiny_bundle, examples, monkeypatch):
    pair = examples[:2]
    first, easy, hard = tolerance_between_the_two(tiny_bundle, pair, fixed(2), monkeypatch)
    context = BatchContext(tiny_bundle, pair)
    assert context.model_pass.embeddings is not None  # the shared pass is not integrated gradients' work
    before = context.counter.snapshot()

    records = integrated_gradients(context, legendre(2, 8))

    assert records[easy].diagnostics["ig_steps"] == 2 and records[easy].diagnostics["completeness_holds"] == 1.0
    assert records[hard].diagnostics["ig_steps"] == 8
    work = context.counter.minus(before)
    # Both examples ran the 2 nodes, only the hard one the 8 fresh nodes; the baseline logit is 2 forward rows.
    assert work.backward_rows == 2 * 2 + 8
    assert work.forward_rows == 2 * 2 + 8 + 2
    assert work.backward_tokens == 2 * (pair[0].length + pair[1].length) + 8 * pair[hard].length
    assert_same_result(records[easy], first[easy])
    assert_same_result(records[hard], integrated_gradients(BatchContext(tiny_bundle, pair), fixed(8))[hard])


def test_an_example_that_fails_at_every_size_keeps_the_last_result_flagged(tiny_bundle, examples, monkeypatch):
    monkeypatch.setattr(gradients, "COMPLETENESS_RELATIVE_TOLERANCE", 0.0)
    monkeypatch.setattr(gradients, "COMPLETENESS_ABSOLUTE_TOLERANCE", 0.0)
    records = integrated_gradients(BatchContext(tiny_bundle, examples), legendre(2, 4))
    last = integrated_gradients(BatchContext(tiny_bundle, examples), fixed(4))
    for record, reference in zip(records, last, strict=True):
        assert record.diagnostics["ig_steps"] == 4
        assert record.diagnostics["completeness_holds"] == 0.0
        assert_same_result(record, reference)


def test_a_schedule_stops_at_the_first_size_where_every_example_is_complete(tiny_bundle, examples):
    context = BatchContext(tiny_bundle, examples)
    assert context.model_pass.embeddings is not None  # the shared pass is not integrated gradients' work
    before = context.counter.snapshot()
    records = integrated_gradients(context, legendre(50, 100))
    assert all(record.diagnostics["ig_steps"] == 50 for record in records)
    assert context.counter.minus(before).backward_rows == 50 * len(examples)
    reference = integrated_gradients(BatchContext(tiny_bundle, examples), fixed(50))
    for record, expected in zip(records, reference, strict=True):
        assert_same_result(record, expected)


def test_an_example_kept_at_a_size_ran_every_size_up_to_it():
    assert steps_run((16, 32, 64), 16, "gausslegendre") == 16
    assert steps_run((16, 32, 64), 64, "gausslegendre") == 16 + 32 + 64
    assert steps_run((50,), 50, "gausslegendre") == 50
    assert steps_run((10, 21, 43, 87), 43, "patterson") == 43  # nested: the smaller sizes' nodes are reused
    with pytest.raises(ValueError, match="not a size"):
        steps_run((16, 32, 64), 50, "gausslegendre")


def test_the_nested_schedule_evaluates_only_the_nodes_a_size_adds(tiny_bundle, examples, monkeypatch):
    pair = examples[:2]
    first, easy, hard = tolerance_between_the_two(tiny_bundle, pair, MethodOptions(ig_steps=(10,)), monkeypatch)
    context = BatchContext(tiny_bundle, pair)
    assert context.model_pass.embeddings is not None  # the shared pass is not integrated gradients' work
    before = context.counter.snapshot()

    records = integrated_gradients(context, MethodOptions(ig_steps=(10, 21)))

    assert records[easy].diagnostics["ig_steps"] == 10 and records[hard].diagnostics["ig_steps"] == 21
    # Both examples ran the 10 Gauss nodes, only the hard one the 11 nodes the 21-point rule adds.
    assert context.counter.minus(before).backward_rows == 2 * 10 + 11
    assert_same_result(records[easy], first[easy])
    alone = integrated_gradients(BatchContext(tiny_bundle, pair), MethodOptions(ig_steps=(21,)))
    assert_same_result(records[hard], alone[hard])


def test_the_patterson_rule_matches_gauss_legendre_where_both_have_converged(context: BatchContext):
    for nested, legendre_50 in zip(integrated_gradients(context, MethodOptions(ig_steps=(87,))),
                                   integrated_gradients(context, fixed(50)), strict=True):  # fmt: skip
        scale = np.abs(legendre_50.scores).max()
        np.testing.assert_allclose(nested.scores, legendre_50.scores, atol=1e-4 * scale + 1e-7)


def test_the_patterson_rule_takes_only_its_sizes():
    with pytest.raises(ValueError, match="10,21,43,87 nodes, not 50.*--ig-rule gausslegendre"):
        MethodOptions(ig_steps=(50,))
    assert MethodOptions(ig_steps=(50,), ig_rule="gausslegendre").ig_steps == (50,)
