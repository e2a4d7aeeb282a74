"""The shared mechanism: attention edits inside the forward pass, from cached states, and TVD
(docs/methodology.md, "Interventions")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks.explain.passes import BatchContext
from tasks.interventions.mechanism import resolve_layer, tvd
from tasks.model.attention_hook import editing
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


@pytest.mark.parametrize("start", [0, 1])
def test_running_the_top_of_the_network_from_cached_states_reproduces_the_output(context: BatchContext, start):
    rows = np.arange(len(context.examples))
    probabilities = context.intervened_probabilities(rows, start, identity)
    np.testing.assert_allclose(probabilities.numpy(), original_probabilities(context).numpy(), atol=1e-6)
    assert np.all(tvd(original_probabilities(context), probabilities).numpy() < 1e-6)
