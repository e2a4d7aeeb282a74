"""Encoder families: BERT, RoBERTa, DistilBERT, ALBERT, ELECTRA and DeBERTa-v2/v3.

Their head reads position 0 (``[CLS]``, ``<s>``), so the last layer only needs computing at that one
query: ``encoder_last_layer`` does it for the three layer layouts (BERT's, DistilBERT's, ALBERT's)
with the family's own modules, in the order the family's forward applies them.

DeBERTa's attention probabilities are returned (so every attention-reading, gradient and perturbation
method applies), but they are not computed by the attention function transformers dispatches, so they
cannot be replaced inside the forward pass; its layers also need relative-position embeddings that only
its encoder builds. Interventions on the attention are therefore not applicable to DeBERTa.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tasks.model.adapters.base import (
    Embed,
    Head,
    LastLayer,
    ModelAdapter,
    attribute,
    inner_layer,
    linear_norm_inputs,
)
from tasks.model.adapters.decomposition import PostNormLayout, Stage
from tasks.model.attention_hook import audit_attention

Finish = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""``finish(layer, context [N, 1, H·d], at [N, 1, D]) -> [N, 1, D]``: a layer after its attention.

The output projection, residual and norm of the attention block, then the feed-forward block.
"""

# --- heads ----------------------------------------------------------------------------------------


def _pooled_head(pooler: str, activation: str | None = None) -> Head:
    """``classifier(dropout(pooler(h_c)))`` (BERT, ALBERT, DeBERTa): the pooler reads position 0."""

    def head(model: nn.Module, at_c: torch.Tensor) -> torch.Tensor:
        pooler_module = attribute(model, pooler)
        pooled = pooler_module(at_c[:, None]) if activation is None else pooler_module(at_c)
        if activation is not None:
            pooled = attribute(model, activation)(pooled)
        return model.classifier(model.dropout(pooled))  # type: ignore[operator]

    return head


def _sequence_head(model: nn.Module, at_c: torch.Tensor) -> torch.Tensor:
    """RoBERTa's and ELECTRA's classification head, which reads ``features[:, 0]``."""
    return model.classifier(at_c[:, None])  # type: ignore[operator]


def _distilbert_head(model: nn.Module, at_c: torch.Tensor) -> torch.Tensor:
    """``classifier(dropout(relu(pre_classifier(h_c))))``."""
    pooled = nn.functional.relu(model.pre_classifier(at_c))  # type: ignore[operator]
    return model.classifier(model.dropout(pooled))  # type: ignore[operator]


# --- embeddings -----------------------------------------------------------------------------------


def _encoder_embed(project: str | None = None) -> Embed:
    """``embeddings(ids | embeds, segments)``, then the projection to the hidden size where there is one.

    ALBERT always projects; ELECTRA does when its embedding size differs from the hidden size.
    """

    def embed(
        base: nn.Module,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
    ) -> torch.Tensor:
        hidden = base.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, inputs_embeds=inputs_embeds)  # type: ignore[operator]
        try:
            projection = attribute(base, project) if project else None
        except AttributeError:
            projection = None
        return hidden if projection is None else projection(hidden)

    return embed


def _distilbert_embed(
    base: nn.Module, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, _types: torch.Tensor | None
) -> torch.Tensor:
    """DistilBERT's embeddings take no segment ids."""
    return base.embeddings(input_ids, inputs_embeds)  # type: ignore[operator]


# --- the last layer at the classification position only -------------------------------------------


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
    n, width = key.shape[0], key.shape[1]
    q = query.view(n, 1, heads, -1).transpose(1, 2)
    k = key.view(n, width, heads, -1).transpose(1, 2)
    v = value.view(n, width, heads, -1).transpose(1, 2)
    output, _ = audit_attention(module, q, k, v, None if mask is None else mask[:, :, :1, :], scaling=scaling)
    return output.reshape(n, 1, -1)


def _rows_at(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``hidden[n, positions[n]]`` of every row, ``[N, 1, D]``."""
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), positions][:, None]


def encoder_last_layer(attention: str, projections: tuple[str, str, str], heads: str, finish: Finish) -> LastLayer:
    """An encoder layer computed at one query per row (the classification position).

    Args:
        attention: Dotted path from the layer to its self-attention module.
        projections: Names of the query, key and value projections on that module.
        heads: Name of its number of heads.
        finish: The rest of the layer after the attention, on the one query row.
    """
    query_name, key_name, value_name = projections

    def last_layer(
        module: nn.Module, hidden: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor
    ) -> torch.Tensor:
        layer = inner_layer(module)
        self_attention = attribute(layer, attention)
        at = _rows_at(hidden, positions)
        context = _attend_at(
            self_attention,
            attribute(self_attention, query_name)(at),
            attribute(self_attention, key_name)(hidden),
            attribute(self_attention, value_name)(hidden),
            attribute(self_attention, heads),
            mask,
            self_attention.scaling,
        )
        return finish(layer, context, at)

    return last_layer


def _bert_finish(layer: nn.Module, context: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    mixed = layer.attention.output(context, at)  # type: ignore[union-attr,operator]
    return layer.output(layer.intermediate(mixed), mixed)  # type: ignore[operator]


def _distilbert_finish(layer: nn.Module, context: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    mixed = layer.sa_layer_norm(layer.attention.out_lin(context) + at)  # type: ignore[operator,union-attr]
    return layer.output_layer_norm(layer.ffn(mixed) + mixed)  # type: ignore[operator]


def _albert_finish(layer: nn.Module, context: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    attention = layer.attention
    mixed = attention.LayerNorm(at + attention.output_dropout(attention.dense(context)))  # type: ignore[operator]
    return layer.full_layer_layer_norm(layer.ff_chunk(mixed) + mixed)  # type: ignore[operator]


_QKV = ("query", "key", "value")


# --- the layouts the decompositions read (ALTI, GlobEnc, DecompX) ----------------------------------


def _bert_layout(
    head: tuple[Stage, ...] | None, value: str = "attention.self.value", no_head: str = ""
) -> PostNormLayout:
    """BERT's layer layout (``attention.self`` / ``attention.output`` / ``intermediate`` / ``output``)."""
    return PostNormLayout(
        value=value,
        output="attention.output.dense",
        norm1="attention.output.LayerNorm",
        intermediate="intermediate.dense",
        activation="intermediate.intermediate_act_fn",
        ffn_output="output.dense",
        norm2="output.LayerNorm",
        heads="attention.self.num_attention_heads",
        head=head,
        no_head=no_head,
    )


_SEQUENCE_HEAD = ("classifier.dense", torch.tanh, "classifier.out_proj")
"""RoBERTa's head: ``out_proj(tanh(dense(h_c)))``; ELECTRA's has its own activation module instead of tanh."""
_DISTILBERT = PostNormLayout(
    value="attention.v_lin",
    output="attention.out_lin",
    norm1="sa_layer_norm",
    intermediate="ffn.lin1",
    activation="ffn.activation",
    ffn_output="ffn.lin2",
    norm2="output_layer_norm",
    heads="attention.n_heads",
    head=("pre_classifier", torch.relu, "classifier"),
)
_ALBERT = PostNormLayout(
    value="attention.value",
    output="attention.dense",
    norm1="attention.LayerNorm",
    intermediate="ffn",
    activation="activation",
    ffn_output="ffn_output",
    norm2="full_layer_layer_norm",
    heads="attention.num_attention_heads",
    head=("albert.pooler", "albert.pooler_activation", "classifier"),
)
"""ALBERT's shared layer, applied at every depth; ``h⁰`` is already projected from E to D (see ``decompx``)."""


# --- the adapters -----------------------------------------------------------------------------------


def _bert_style(
    family: str,
    model_types: tuple[str, ...],
    base: str,
    head: Head,
    layout: PostNormLayout,
    project: str | None = None,
) -> ModelAdapter:
    """An adapter for BERT's layer layout (``encoder.layer[i].attention.self`` / ``.output.dense``)."""
    return ModelAdapter(
        family=family,
        model_types=model_types,
        base=base,
        layers="encoder.layer",
        attention="attention.self",
        head=head,
        embed=_encoder_embed(project=project),
        norm_inputs=linear_norm_inputs("attention.self.value", "attention.output.dense", "num_attention_heads"),
        last_layer=encoder_last_layer("attention.self", _QKV, "num_attention_heads", _bert_finish),
        post_norm=layout,
    )


ENCODERS: tuple[ModelAdapter, ...] = (
    _bert_style(
        "BERT",
        ("bert",),
        "bert",
        _pooled_head("bert.pooler"),
        _bert_layout(("bert.pooler.dense", torch.tanh, "classifier")),
    ),
    _bert_style(
        "RoBERTa", ("roberta", "xlm-roberta", "camembert"), "roberta", _sequence_head, _bert_layout(_SEQUENCE_HEAD)
    ),
    ModelAdapter(
        family="DistilBERT",
        model_types=("distilbert",),
        base="distilbert",
        layers="transformer.layer",
        attention="attention",
        head=_distilbert_head,
        embed=_distilbert_embed,
        norm_inputs=linear_norm_inputs("attention.v_lin", "attention.out_lin", "n_heads"),
        last_layer=encoder_last_layer("attention", ("q_lin", "k_lin", "v_lin"), "n_heads", _distilbert_finish),
        post_norm=_DISTILBERT,
    ),
    ModelAdapter(
        family="ALBERT",
        model_types=("albert",),
        base="albert",
        layers="encoder.albert_layer_groups",
        attention="attention",
        head=_pooled_head("albert.pooler", activation="albert.pooler_activation"),
        embed=_encoder_embed(project="encoder.embedding_hidden_mapping_in"),
        norm_inputs=linear_norm_inputs("attention.value", "attention.dense", "num_attention_heads"),
        last_layer=encoder_last_layer("attention", _QKV, "num_attention_heads", _albert_finish),
        post_norm=_ALBERT,
    ),
    _bert_style(
        "ELECTRA",
        ("electra",),
        "electra",
        _sequence_head,
        _bert_layout(("classifier.dense", "classifier.activation", "classifier.out_proj")),
        project="embeddings_project",
    ),
    ModelAdapter(
        family="DeBERTa-v2/v3",
        model_types=("deberta-v2",),
        base="deberta",
        layers="encoder.layer",
        attention="attention.self",
        head=_pooled_head("pooler"),
        embed=_encoder_embed(),
        norm_inputs=linear_norm_inputs("attention.self.value_proj", "attention.output.dense", "num_attention_heads"),
        post_norm=_bert_layout(
            None,
            value="attention.self.value_proj",
            no_head=(
                "DecompX carries the decomposition through every layer, and DeBERTa-v2 can add a convolution "
                "over neighbouring tokens to its first layer's output (conv_kernel_size) that DecompX does not "
                "decompose"
            ),
        ),
        editable=False,
        not_editable=(
            "its disentangled attention is computed inside its own module, not by the attention function "
            "transformers dispatches, so its probabilities cannot be replaced inside the forward pass"
        ),
    ),
)
"""The encoder families, in the order ``adapter_for`` searches them."""
