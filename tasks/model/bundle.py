"""The loaded classifier as the methods see it: model, tokenizer, adapter, labels and provenance.

Kept apart from ``tasks.model.loading`` so that the explanation methods, which only read a bundle,
do not import the loading and preset-building code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from tasks.model.adapters.base import ModelAdapter


@dataclass(frozen=True, eq=False)
class ModelBundle:
    """A loaded classifier with everything the methods need.

    Attributes:
        model: The ``*ForSequenceClassification`` model, in eval mode, eager attention.
        tokenizer: Its fast tokenizer.
        adapter: Where this family keeps its classification position and embeddings.
        labels: Class names in index order (``config.id2label``).
        fingerprint: SHA-256 over the weight files, in name order: identifies the exact weights.
        source: Provenance for the manifest (what was asked, where it was found, revision, preset).
    """

    model: Any
    tokenizer: Any
    adapter: ModelAdapter
    labels: tuple[str, ...]
    fingerprint: str
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        """Where the model's parameters live."""
        return next(self.model.parameters()).device

    @property
    def num_layers(self) -> int:
        """Number of transformer layers ``L``."""
        return int(self.model.config.num_hidden_layers)

    @property
    def num_heads(self) -> int:
        """Attention heads per layer ``H``."""
        return int(self.model.config.num_attention_heads)
