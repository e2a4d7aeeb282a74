"""Per-family model adapters: where a family keeps what the methods need.

Methods never reach into a model's modules directly; they ask its adapter. An adapter says which
position the classification head reads (the **classification position** ``c`` of METHODS.md) and
where the input word embeddings are. Later methods (attention interventions, norm-based attention)
extend the adapter rather than the methods.

Positions assume right padding, which ``tasks.passes`` always uses: example ``i`` occupies
positions ``0 .. T_i - 1`` of its row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from tasks.errors import AuditError


@dataclass(frozen=True)
class ModelAdapter:
    """What the audit needs to know about a model family.

    Attributes:
        family: Human-readable family name for the report.
        model_types: The ``config.model_type`` values this adapter serves.
        classification_token: ``first`` for encoders that classify from ``[CLS]`` / ``<s>`` at
            position 0; ``last`` for decoder-style classifiers that read the last non-padding token.
    """

    family: str
    model_types: tuple[str, ...]
    classification_token: Literal["first", "last"]

    def classification_positions(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """The classification position ``c`` of every row of a right-padded batch, shape ``[B]``."""
        if self.classification_token == "first":
            return torch.zeros(attention_mask.shape[0], dtype=torch.long, device=attention_mask.device)
        return attention_mask.sum(dim=1).long() - 1

    def word_embeddings(self, model: nn.Module) -> nn.Embedding:
        """The token-embedding table ``E``; ``e_j = E[x_j]`` is what gradient methods differentiate."""
        embeddings = model.get_input_embeddings()  # type: ignore[operator]
        if not isinstance(embeddings, nn.Embedding):
            raise AuditError(
                f"the model's input embeddings are a {type(embeddings).__name__}, not an embedding table",
                "audit a model whose get_input_embeddings() returns torch.nn.Embedding",
            )
        return embeddings


ADAPTERS: tuple[ModelAdapter, ...] = (
    ModelAdapter(
        family="BERT-style encoder",
        model_types=(
            "bert",
            "roberta",
            "xlm-roberta",
            "distilbert",
            "electra",
            "albert",
            "camembert",
            "mpnet",
            "deberta",
            "deberta-v2",
        ),
        classification_token="first",
    ),
    ModelAdapter(
        family="decoder-style classifier",
        model_types=("gpt2", "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "gpt_neox"),
        classification_token="last",
    ),
)


def adapter_for(model_type: str) -> ModelAdapter:
    """The adapter serving ``model_type``.

    Raises:
        AuditError: No adapter knows where this family classifies from.
    """
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    supported = ", ".join(t for adapter in ADAPTERS for t in adapter.model_types)
    raise AuditError(
        f"no adapter for model type {model_type!r}: the audit does not know which token this family's "
        "classification head reads",
        f"audit a model of a supported type ({supported}), or add a ModelAdapter in tasks/adapters.py",
    )
