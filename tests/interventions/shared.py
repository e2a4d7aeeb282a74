"""What the intervention tests share: their options and the original output distribution."""

from __future__ import annotations

import torch

from tasks.config import InterventionOptions
from tasks.explain.passes import BatchContext

OPTIONS = InterventionOptions(permutation_draws=12, erasure_draws=4, adversarial_steps=30)


def original_probabilities(context: BatchContext) -> torch.Tensor:
    """The model's output distribution on the batch, as the interventions compare with it."""
    return torch.softmax(context.model_pass.logits.double(), dim=-1)
