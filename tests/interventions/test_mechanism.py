"""The shared mechanism: attention edits inside the forward pass, from cached states, and TVD
(docs/methodology.md, "Interventions")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks.explain.passes import BatchContext
from tasks.interventions.mechanism import resolve_layer, tvd
from tasks.model.attention_hook import editing, unobserved
from tests.interventions.shared import original_probabilities


def identity(members):
    return lambda layer, probabilities: probabilities


def test_tvd_on_hand_worked_distributions():
    p, q = torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.0, 0.5, 0.5])
    assert float(tvd(p, q)) == pytest.approx(0.5)


def test_layers_count_from_the_top_when_negative():
    assert resolve_layer(-1, 6) == 5 and resolve_layer(0, 6) == 0
    with pytest.raises(ValueError, match="does not exist"):
        resolve_layer(6, 6)


def test_an_identity_edit_inside_a_full_forward_pass_changes_nothing_bit_for_bit(tiny_bundle, examples):
    context = BatchContext(tiny_bundle, examples, need_gradients=False)
    model_inputs = {"input_ids": context.input_ids, "attention_mask": context.attention_mask}
    with torch.no_grad():
        plain = tiny_bundle.model(**model_inputs).logits
        with editing(lambda layer, probabilities: probabilities):
            edited = tiny_bundle.model(**model_inputs).logits
    assert torch.equal(plain, edited)


def fused_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the calls of torch's fused attention kernel from now on (one entry per call)."""
    calls: list[int] = []
    kernel = torch.nn.functional.scaled_dot_product_attention

    def counted(*args, **kwargs):
        calls.append(1)
        return kernel(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counted)
    return calls


def test_an_unobserved_pass_runs_the_fused_kernel_returns_no_probabilities_and_the_same_logits(
    tiny_bundle, examples, monkeypatch
):
    context = BatchContext(tiny_bundle, examples, need_gradients=False)
    model_inputs = {"input_ids": context.input_ids, "attention_mask": context.attention_mask}
    calls = fused_calls(monkeypatch)
    with torch.no_grad():
        plain = tiny_bundle.model(**model_inputs, output_attentions=True)
        with unobserved():
            fused = tiny_bundle.model(**model_inputs, output_attentions=True)
    layers = tiny_bundle.num_layers
    assert len(calls) == layers
    assert all(a is not None for a in plain.attentions) and all(a is None for a in fused.attentions)
    torch.testing.assert_close(fused.logits, plain.logits, atol=1e-5, rtol=1e-5)


def test_an_edit_inside_an_unobserved_block_still_sees_and_replaces_the_probabilities(
    tiny_bundle, examples, monkeypatch
):
    context = BatchContext(tiny_bundle, examples, need_gradients=False)
    model_inputs = {"input_ids": context.input_ids, "attention_mask": context.attention_mask}
    seen: list[int] = []

    def uniform_rows(layer, probabilities):
        seen.append(layer)
        return torch.full_like(probabilities, 1.0 / probabilities.shape[-1])

    with torch.no_grad():
        with editing(uniform_rows):
            expected = tiny_bundle.model(**model_inputs).logits
        calls = fused_calls(monkeypatch)
        with unobserved(), editing(uniform_rows):
            edited = tiny_bundle.model(**model_inputs).logits
    assert not calls
    assert seen == [*range(tiny_bundle.num_layers)] * 2
    assert torch.equal(edited, expected)


def test_passes_that_read_only_logits_run_the_fused_kernel_and_intervened_runs_do_not(context, monkeypatch):
    rows = np.arange(len(context.examples))
    _ = context.model_pass  # eager: its probabilities are the attention the audit explains
    calls = fused_calls(monkeypatch)
    keep = [np.ones(example.length, dtype=bool) for example in context.examples]
    unchanged = context.perturbed_probabilities(list(enumerate(keep)))
    assert len(calls) == context.bundle.num_layers  # one chunk: every layer, the last at c included
    np.testing.assert_allclose(unchanged, context.target_probabilities, atol=1e-6)
    calls.clear()
    context.intervened_probabilities(rows, 0, identity)
    assert not calls


@pytest.mark.parametrize("start", [0, 1])
def test_running_the_top_of_the_network_from_cached_states_reproduces_the_output(context: BatchContext, start):
    rows = np.arange(len(context.examples))
    probabilities = context.intervened_probabilities(rows, start, identity)
    np.testing.assert_allclose(probabilities.numpy(), original_probabilities(context).numpy(), atol=1e-6)
    assert np.all(tvd(original_probabilities(context), probabilities).numpy() < 1e-6)
