"""Per-family model adapters: where a family keeps what the methods and interventions need.

Methods never reach into a model's modules directly; they ask its adapter. An adapter says which
position the classification head reads (the **classification position** ``c`` of METHODS.md), where the
transformer layers and their attention modules are, where a layer's value and output projections are
(norm-based attention), and how the classification head turns the last hidden states into logits
(running the top of the network from cached hidden states). A family without the structural paths
supports the attention-reading methods but not the ones that need the structure; ``require``
says so clearly.

Positions assume right padding, which ``tasks.passes`` always uses: example ``i`` occupies positions
``0 .. T_i - 1`` of its row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from tasks.errors import AuditError

Classify = Callable[[nn.Module, torch.Tensor], torch.Tensor]
"""``classify(model, last_hidden_states [N, T, D]) -> logits [N, C]``: the family's head."""
Embed = Callable[[nn.Module, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None], torch.Tensor]
"""``embed(model, input_ids, inputs_embeds, token_type_ids) -> hidden_states[0]``: the embedding layer."""
LastLayer = Callable[[nn.Module, torch.Tensor, torch.Tensor | None, torch.Tensor], torch.Tensor]
"""``last(layer, hidden [N, W, D], mask, positions [N]) -> [N, 1, D]``: a layer's output at one query each."""


def _attribute(root: object, dotted: str) -> nn.Module:
    value = root
    for part in dotted.split("."):
        value = getattr(value, part)
    return value  # type: ignore[return-value]


def _bert_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    pooled = model.bert.pooler(hidden)  # type: ignore[union-attr]
    return model.classifier(model.dropout(pooled))  # type: ignore[operator]


def _sequence_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    return model.classifier(hidden)  # type: ignore[operator]


def _distilbert_head(model: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    pooled = nn.functional.relu(model.pre_classifier(hidden[:, 0]))  # type: ignore[operator]
    return model.classifier(model.dropout(pooled))  # type: ignore[operator]


def _bert_embed(base: str) -> Embed:
    def embed(
        model: nn.Module,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
    ) -> torch.Tensor:
        embeddings = getattr(model, base).embeddings
        return embeddings(input_ids=input_ids, token_type_ids=token_type_ids, inputs_embeds=inputs_embeds)

    return embed


def _distilbert_embed(
    model: nn.Module,
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    token_type_ids: torch.Tensor | None,
) -> torch.Tensor:
    return model.distilbert.embeddings(input_ids, inputs_embeds)  # type: ignore[union-attr,operator]


def _attend_at(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    heads: int,
    mask: torch.Tensor | None,
    scaling: float,
) -> torch.Tensor:
    """Attention of one query row per sequence through the audit attention function: ``[N, 1, H·d]``."""
    from tasks.attention_hook import audit_attention

    n, width = key.shape[0], key.shape[1]
    q = query.view(n, 1, heads, -1).transpose(1, 2)
    k = key.view(n, width, heads, -1).transpose(1, 2)
    v = value.view(n, width, heads, -1).transpose(1, 2)
    output, _ = audit_attention(module, q, k, v, None if mask is None else mask[:, :, :1, :], scaling=scaling)
    return output.reshape(n, 1, -1)


def _bert_last_layer(
    layer: nn.Module, hidden: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor
) -> torch.Tensor:
    attention = layer.attention.self  # type: ignore[union-attr]
    at = hidden[torch.arange(hidden.shape[0], device=hidden.device), positions][:, None]  # [N, 1, D]
    context = _attend_at(
        attention,
        attention.query(at),
        attention.key(hidden),
        attention.value(hidden),
        attention.num_attention_heads,
        mask,
        attention.scaling,
    )
    mixed = layer.attention.output(context, at)  # type: ignore[union-attr,operator]
    return layer.output(layer.intermediate(mixed), mixed)  # type: ignore[operator]


def _distilbert_last_layer(
    layer: nn.Module, hidden: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor
) -> torch.Tensor:
    attention = layer.attention  # type: ignore[union-attr]
    at = hidden[torch.arange(hidden.shape[0], device=hidden.device), positions][:, None]
    context = _attend_at(
        attention,
        attention.q_lin(at),
        attention.k_lin(hidden),
        attention.v_lin(hidden),
        attention.n_heads,
        mask,
        attention.scaling,
    )
    mixed = layer.sa_layer_norm(attention.out_lin(context) + at)  # type: ignore[operator]
    return layer.output_layer_norm(layer.ffn(mixed) + mixed)  # type: ignore[operator]


@dataclass(frozen=True)
class ModelAdapter:
    """What the audit needs to know about a model family.

    Attributes:
        family: Human-readable family name for the report.
        model_types: The ``config.model_type`` values this adapter serves.
        classification_token: ``first`` for encoders that classify from ``[CLS]`` / ``<s>`` at
            position 0; ``last`` for decoder-style classifiers that read the last non-padding token.
        layers: Dotted path from the classifier to its ``ModuleList`` of transformer layers.
        attention: Dotted path from a layer to the module that calls the attention function.
        value: Dotted path from a layer to its value projection ``W_V`` (all heads).
        output: Dotted path from a layer to the attention output projection ``W_O``.
        classify: The classification head applied to the last layer's hidden states.
        embed: The embedding layer (ids or embeddings, and segment ids, to ``hidden_states[0]``).
        last_layer: The last layer computed at the classification position only: the head reads
            nothing else, so the other query rows of the last layer are never computed.
    """

    family: str
    model_types: tuple[str, ...]
    classification_token: Literal["first", "last"]
    layers: str | None = None
    attention: str | None = None
    value: str | None = None
    output: str | None = None
    classify: Classify | None = None
    embed: Embed | None = None
    last_layer: LastLayer | None = None

    @property
    def supports_interventions(self) -> bool:
        """Whether the structure for interventions and norm-based attention is known."""
        return None not in (self.layers, self.attention, self.value, self.output, self.classify)

    @property
    def supports_fast_forward(self) -> bool:
        """Whether logits can be computed layer by layer with the last layer at ``c`` only."""
        return self.supports_interventions and self.embed is not None and self.last_layer is not None

    def require(self, what: str) -> None:
        """Raise a clear error when ``what`` needs structure this family's adapter does not describe."""
        if not self.supports_interventions:
            raise AuditError(
                f"{what} needs the layer structure of the model, which the {self.family} adapter "
                f"({', '.join(self.model_types)}) does not describe",
                "leave it out with --methods / --interventions, or describe the family in tasks/adapters.py",
            )

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

    def layer_modules(self, model: nn.Module) -> nn.ModuleList:
        """The transformer layers, first to last."""
        self.require("running layers from cached hidden states")
        return _attribute(model, self.layers)  # type: ignore[arg-type,return-value]

    def attention_modules(self, model: nn.Module) -> list[nn.Module]:
        """Each layer's module that calls the attention function, first to last."""
        return [_attribute(layer, self.attention) for layer in self.layer_modules(model)]  # type: ignore[arg-type]

    def value_output(self, model: nn.Module, layer: int) -> tuple[nn.Linear, nn.Linear]:
        """The value projection and attention output projection of one layer."""
        module = self.layer_modules(model)[layer]
        return _attribute(module, self.value), _attribute(module, self.output)  # type: ignore[arg-type,return-value]

    def logits_from(
        self, model: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor, start: int
    ) -> torch.Tensor:
        """Logits from the hidden states entering layer ``start``: layers ``start .. L-1``, then the head.

        ``hidden`` is ``hidden_states[start]`` of a full forward pass. The padding mask is built by
        transformers' own function, so the result equals the full forward pass; where the adapter can,
        the last layer is computed at the classification position only (all the head reads).
        """
        from transformers.masking_utils import create_bidirectional_mask

        mask = create_bidirectional_mask(config=model.config, inputs_embeds=hidden, attention_mask=attention_mask)
        remaining = list(self.layer_modules(model))[start:]
        if self.last_layer is None or not remaining:
            for layer in remaining:
                hidden = layer(hidden, mask)
            return self.classify(model, hidden)  # type: ignore[misc]
        for layer in remaining[:-1]:
            hidden = layer(hidden, mask)
        positions = self.classification_positions(attention_mask)
        return self.classify(model, self.last_layer(remaining[-1], hidden, mask, positions))  # type: ignore[misc]

    def forward_logits(
        self,
        model: nn.Module,
        attention_mask: torch.Tensor,
        *,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The model's logits, layer by layer, with the last layer at the classification position only.

        Equal to ``model(...).logits`` up to floating-point rounding; families without a described
        structure run the model's own forward.
        """
        if not self.supports_fast_forward:
            inputs = {"input_ids": input_ids, "inputs_embeds": inputs_embeds, "attention_mask": attention_mask}
            if token_type_ids is not None:
                inputs["token_type_ids"] = token_type_ids
            return model(**{k: v for k, v in inputs.items() if v is not None}).logits  # type: ignore[operator]
        hidden = self.embed(model, input_ids, inputs_embeds, token_type_ids)  # type: ignore[misc]
        return self.logits_from(model, hidden, attention_mask, 0)


ADAPTERS: tuple[ModelAdapter, ...] = (
    ModelAdapter(
        family="BERT encoder",
        model_types=("bert",),
        classification_token="first",
        layers="bert.encoder.layer",
        attention="attention.self",
        value="attention.self.value",
        output="attention.output.dense",
        classify=_bert_head,
        embed=_bert_embed("bert"),
        last_layer=_bert_last_layer,
    ),
    ModelAdapter(
        family="RoBERTa encoder",
        model_types=("roberta", "xlm-roberta", "camembert"),
        classification_token="first",
        layers="roberta.encoder.layer",
        attention="attention.self",
        value="attention.self.value",
        output="attention.output.dense",
        classify=_sequence_head,
        embed=_bert_embed("roberta"),
        last_layer=_bert_last_layer,
    ),
    ModelAdapter(
        family="DistilBERT encoder",
        model_types=("distilbert",),
        classification_token="first",
        layers="distilbert.transformer.layer",
        attention="attention",
        value="attention.v_lin",
        output="attention.out_lin",
        classify=_distilbert_head,
        embed=_distilbert_embed,
        last_layer=_distilbert_last_layer,
    ),
    ModelAdapter(
        family="encoder",
        model_types=("electra", "albert", "mpnet", "deberta", "deberta-v2"),
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
