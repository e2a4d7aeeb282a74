"""Adversarial attention (Jain & Wallace 2019): JSD in bits, the ε constraint, and no training."""

from __future__ import annotations

import pytest
import torch

from tasks.explain.passes import BatchContext
from tasks.interventions.adversarial import adversarial, initial_noise, jsd
from tests.interventions.shared import OPTIONS


def test_jsd_on_hand_worked_distributions():
    p, q = torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.0, 0.5, 0.5])
    assert float(jsd(p, p)) == pytest.approx(0.0, abs=1e-7)
    assert float(jsd(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))) == pytest.approx(1.0)
    assert float(jsd(p, q)) == pytest.approx(0.5)


def test_adversarial_attention_stays_within_epsilon_and_diverges(context: BatchContext):
    values = adversarial(context, OPTIONS)
    by_statistic: dict[str, list[float]] = {}
    for value in values:
        by_statistic.setdefault(value.statistic, []).append(value.value)
    assert all(0 <= value <= 1 for value in by_statistic["jsd"])
    assert all(value <= OPTIONS.adversarial_epsilon + 1e-6 for value in by_statistic["tvd"])
    assert set(by_statistic["constraint_held"]) <= {0.0, 1.0}
    assert max(by_statistic["jsd"]) > 0.01


def test_interventions_do_not_train_the_model(context: BatchContext, tiny_bundle):
    adversarial(context, OPTIONS)
    assert all(parameter.grad is None for parameter in tiny_bundle.model.parameters())


def test_the_initial_noise_of_an_example_does_not_depend_on_its_batch(examples):
    heads, width = 4, max(example.length for example in examples)
    together = initial_noise(examples, torch.Size((len(examples), heads, width)), seed=0, layer=1)
    for row, example in enumerate(examples):
        alone = initial_noise([example], torch.Size((1, heads, example.length)), seed=0, layer=1)[0]
        torch.testing.assert_close(together[row, :, : example.length], alone, rtol=0, atol=0)
        assert torch.all(together[row, :, example.length :] == 0)  # padding draws nothing
    reordered = initial_noise(examples[::-1], torch.Size((len(examples), heads, width)), seed=0, layer=1)
    torch.testing.assert_close(reordered.flip(0), together, rtol=0, atol=0)
    other_layer = initial_noise(examples, torch.Size((len(examples), heads, width)), seed=0, layer=0)
    assert not torch.equal(other_layer, together)
