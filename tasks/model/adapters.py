"""Per-family model adapters: where a family keeps what the methods and interventions need.

Methods never reach into a model's modules directly; they ask its adapter. An adapter says

- which position the classification head reads (the **classification position** ``c`` of docs/methodology.md):
  position 0 for encoders (``[CLS]``, ``<s>``), the last non-padding token for decoder-style classifiers;
- how the head turns the final hidden state at ``c`` into logits, and which final norm a pre-norm
  decoder applies before it;
- how the embedding layer produces ``hidden_states[0]`` (ids or embeddings, segment and position ids);
- where the transformer layers are, how to run one from cached hidden states (the mask it takes,
  rotary position embeddings), and where a layer's attention module and value and output projections
  are (interventions, norm-based attention).

The audit right-pads every batch itself, whatever the tokenizer's ``padding_side``: example ``i``
occupies positions ``0 .. T_i - 1`` of its row, so no family needs position ids shifted for padding.
``classification_positions`` nevertheless reads the last attended position of each row, which is the
last non-padding token under left padding too.

Families:

| family | model types | ``c`` | interventions |
|---|---|---|---|
| BERT | bert | first | yes |
| RoBERTa | roberta, xlm-roberta, camembert | first | yes |
| DistilBERT | distilbert | first | yes |
| ALBERT | albert (one layer's parameters shared by every depth) | first | yes |
| ELECTRA | electra | first | yes |
| DeBERTa-v2/v3 | deberta-v2 | first | no: its disentangled attention is computed inside its own module |
| GPT-2 | gpt2 | last | yes |
| Llama-style | llama, mistral, qwen2, qwen3 | last | yes |

DeBERTa's attention probabilities are returned (so every attention-reading, gradient and perturbation
method applies), but they are not computed by the attention function transformers dispatches, so they
cannot be replaced inside the forward pass; its layers also need relative-position embeddings that only
its encoder builds. Interventions on the attention are therefore not applicable to DeBERTa.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tasks.errors import AuditError

Head = Callable[[nn.Module, torch.Tensor], torch.Tensor]
"""``head(model, final_hidden_at_c [N, D]) -> logits [N, C]``: the family's classification head."""
Embed = Callable[[nn.Module, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None], torch.Tensor]
"""``embed(base, input_ids, inputs_embeds, token_type_ids) -> hidden_states[0]``: the embedding layer."""
NormInputs = Callable[[nn.Module, nn.Module, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``norm_inputs(layer, attention, hidden [N, W, D]) -> (values [N, W, H, d], W_O [D, H, d])``."""
LastLayer = Callable[[nn.Module, torch.Tensor, torch.Tensor | None, torch.Tensor], torch.Tensor]
"""``last(layer, hidden [N, W, D], mask, positions [N]) -> [N, 1, D]``: a layer's output at one query each."""


def _attribute(root: object, dotted: str) -> Any:
    value = root
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


# --- heads ----------------------------------------------------------------------------------------


def _pooled_head(pooler: str, activation: str | None = None) -> Head:
    """``classifier(dropout(pooler(h_c)))`` (BERT, ALBERT, DeBERTa): the pooler reads position 0."""

    def head(model: nn.Module, at_c: torch.Tensor) -> torch.Tensor:
        pooler_module = _attribute(model, pooler)
        pooled = pooler_module(at_c[:, None]) if activation is None else pooler_module(at_c)
        if activation is not None:
            pooled = _attribute(model, activation)(pooled)
        return model.classifier(model.dropout(pooled))  # type: ignore[operator]

    return head


def _sequence_head(model: nn.Module, at_c: torch.Tensor) -> torch.Tensor:
    """RoBERTa's and ELECTRA's classification head, which reads ``features[:, 0]``."""
    return model.classifier(at_c[:, None])  # type: ignore[operator]


def _distilbert_head(model: nn.Module, at_c: torch.Tensor) -> torch.Tensor:
    pooled = nn.functional.relu(model.pre_classifier(at_c))  # type: ignore[operator]
    return model.classifier(model.dropout(pooled))  # type: ignore[operator]


def _score_head(model: nn.Module, at_c: torch.Tensor) -> torch.Tensor:
    """Decoder-style classifiers: a linear ``score`` on the (final-normed) state of the last token."""
    return model.score(at_c)  # type: ignore[operator]


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
            projection = _attribute(base, project) if project else None
        except AttributeError:
            projection = None
        return hidden if projection is None else projection(hidden)

    return embed


def _distilbert_embed(
    base: nn.Module, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, _types: torch.Tensor | None
) -> torch.Tensor:
    return base.embeddings(input_ids, inputs_embeds)  # type: ignore[operator]


def _gpt2_embed(
    base: nn.Module, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, _types: torch.Tensor | None
) -> torch.Tensor:
    embeds = base.wte(input_ids) if inputs_embeds is None else inputs_embeds  # type: ignore[operator]
    positions = torch.arange(embeds.shape[1], device=embeds.device)[None]
    return base.drop(embeds + base.wpe(positions))  # type: ignore[operator]


def _token_embed(
    base: nn.Module, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, _types: torch.Tensor | None
) -> torch.Tensor:
    """Llama-style decoders: the token embeddings are ``hidden_states[0]`` (positions are rotary)."""
    return base.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # type: ignore[operator]


# --- value and output projections (norm-based attention) ------------------------------------------


def _heads(weight_out_in: torch.Tensor, heads: int) -> torch.Tensor:
    """An output projection's weight ``[D_out, H·d]`` split by head: ``[D_out, H, d]``."""
    return weight_out_in.view(weight_out_in.shape[0], heads, -1)


def _linear_norm_inputs(value: str, output: str, heads: str, input_norm: str | None = None) -> NormInputs:
    """``f_h``'s parts for separate value and output ``nn.Linear`` projections.

    ``input_norm`` names the pre-norm that a pre-LN layer applies to its input before the attention
    (the value projection reads the normed state). Grouped-query attention shares each value head
    among ``H / H_kv`` query heads, so value heads are repeated to one per query head.
    """

    def norm_inputs(layer: nn.Module, attention: nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = hidden if input_norm is None else _attribute(layer, input_norm)(hidden)
        query_heads = int(_attribute(attention, heads))
        projection = _attribute(layer, value)
        head_size = _heads(_attribute(layer, output).weight, query_heads).shape[-1]
        values = projection(x).view(*x.shape[:2], -1, head_size)  # [N, W, H_kv, d]
        values = values.repeat_interleave(query_heads // values.shape[2], dim=2)
        return values, _heads(_attribute(layer, output).weight, query_heads)

    return norm_inputs


def _gpt2_norm_inputs(
    layer: nn.Module, attention: nn.Module, hidden: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """GPT-2 fuses Q, K and V in one ``Conv1D`` (``x W + b``, weight ``[D, 3D]``); V is the last third."""
    x = layer.ln_1(hidden)  # type: ignore[operator]
    size = attention.embed_dim
    values = x @ attention.c_attn.weight[:, 2 * size :] + attention.c_attn.bias[2 * size :]
    output = attention.c_proj.weight.T  # Conv1D stores [in, out]
    return values.view(*x.shape[:2], attention.num_heads, -1), _heads(output, attention.num_heads)


# --- the last layer at the classification position only (encoders) -------------------------------


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
    from tasks.model.attention_hook import audit_attention

    n, width = key.shape[0], key.shape[1]
    q = query.view(n, 1, heads, -1).transpose(1, 2)
    k = key.view(n, width, heads, -1).transpose(1, 2)
    v = value.view(n, width, heads, -1).transpose(1, 2)
    output, _ = audit_attention(module, q, k, v, None if mask is None else mask[:, :, :1, :], scaling=scaling)
    return output.reshape(n, 1, -1)


def _rows_at(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), positions][:, None]  # [N, 1, D]


def _bert_last_layer(
    layer: nn.Module, hidden: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor
) -> torch.Tensor:
    attention = layer.attention.self  # type: ignore[union-attr]
    at = _rows_at(hidden, positions)
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
    at = _rows_at(hidden, positions)
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


def _albert_last_layer(
    group: nn.Module, hidden: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor
) -> torch.Tensor:
    layer = group.albert_layers[-1]  # type: ignore[index]  # one inner layer (checked when loaded)
    attention = layer.attention
    at = _rows_at(hidden, positions)
    context = _attend_at(
        attention,
        attention.query(at),
        attention.key(hidden),
        attention.value(hidden),
        attention.num_attention_heads,
        mask,
        attention.scaling,
    )
    mixed = attention.LayerNorm(at + attention.output_dropout(attention.dense(context)))
    return layer.full_layer_layer_norm(layer.ff_chunk(mixed) + mixed)


# --- the adapter ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelAdapter:
    """What the audit needs to know about a model family.

    Attributes:
        family: Human-readable family name for the report.
        model_types: The ``config.model_type`` values this adapter serves.
        base: Attribute of the classifier that holds the transformer (``bert``, ``transformer``, ``model``).
        layers: Dotted path from the base to its ``ModuleList`` of transformer layers (ALBERT: of layer
            groups, run once per depth).
        attention: Dotted path from a layer to the module that computes its self-attention.
        head: The classification head applied to the final hidden state at ``c``.
        embed: The embedding layer, to ``hidden_states[0]``.
        norm_inputs: The value vectors and output projection of a layer (norm-based attention).
        causal: Decoder-style: causal attention, and ``c`` is the last non-padding token.
        final_norm: Dotted path from the base to the norm a pre-LN decoder applies before the head.
        rotary: Dotted path from the base to the rotary position embedding its layers take.
        editable: The attention probabilities are computed by transformers' attention function, so
            they can be replaced inside the forward pass (interventions) and the layers can be run from
            cached hidden states. ``not_editable`` says why not, where not.
        last_layer: The last layer computed at ``c`` only (the head reads nothing else), for encoders.
    """

    family: str
    model_types: tuple[str, ...]
    base: str
    layers: str
    attention: str
    head: Head
    embed: Embed
    norm_inputs: NormInputs
    causal: bool = False
    final_norm: str | None = None
    rotary: str | None = None
    editable: bool = True
    not_editable: str = ""
    last_layer: LastLayer | None = None

    @property
    def supports_interventions(self) -> bool:
        """Whether attention can be replaced inside the forward pass and layers run from cached states."""
        return self.editable

    def require(self, what: str) -> None:
        """Raise a clear error when ``what`` needs attention this family computes out of reach."""
        if not self.editable:
            raise AuditError(
                f"{what} is not applicable to {self.family} models: {self.not_editable}",
                "leave it out with --interventions none",
            )

    def classification_positions(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """The classification position ``c`` of every row, shape ``[B]``.

        Encoders: 0. Decoders: the last attended position (``argmax_t t·m_t``), right or left padded.
        """
        if not self.causal:
            return torch.zeros(attention_mask.shape[0], dtype=torch.long, device=attention_mask.device)
        steps = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        return (steps * attention_mask.long()).argmax(dim=1)

    def base_model(self, model: nn.Module) -> nn.Module:
        """The transformer under the classification head."""
        return _attribute(model, self.base)

    def word_embeddings(self, model: nn.Module) -> nn.Embedding:
        """The token-embedding table ``E``; ``e_j = E[x_j]`` is what gradient methods differentiate."""
        embeddings = model.get_input_embeddings()  # type: ignore[operator]
        if not isinstance(embeddings, nn.Embedding):
            raise AuditError(
                f"the model's input embeddings are a {type(embeddings).__name__}, not an embedding table",
                "audit a model whose get_input_embeddings() returns torch.nn.Embedding",
            )
        return embeddings

    def layer_modules(self, model: nn.Module) -> list[nn.Module]:
        """The module run at each depth, first to last (ALBERT repeats its shared group)."""
        modules = list(_attribute(self.base_model(model), self.layers))
        depth = int(model.config.num_hidden_layers)  # type: ignore[union-attr]
        if len(modules) == depth:
            return modules
        return [modules[int(i / (depth / len(modules)))] for i in range(depth)]  # ALBERT's group index

    def attention_module(self, layer: nn.Module) -> nn.Module:
        """A layer's self-attention module (ALBERT: that of the group's last layer)."""
        if hasattr(layer, "albert_layers"):
            layer = layer.albert_layers[-1]
        return _attribute(layer, self.attention)

    def norm_vectors(self, model: nn.Module, layer: int, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values [N, W, H, d], W_O [D, H, d])`` of layer ``layer`` for ``hidden`` entering it."""
        module = self.layer_modules(model)[layer]
        inner = module.albert_layers[-1] if hasattr(module, "albert_layers") else module
        return self.norm_inputs(inner, self.attention_module(module), hidden)

    def head_logits(self, model: nn.Module, final_hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits from the base model's output ``[N, W, D]`` (already final-normed) at ``positions``."""
        rows = torch.arange(final_hidden.shape[0], device=final_hidden.device)
        return self.head(model, final_hidden[rows, positions])

    def logits_from(
        self,
        model: nn.Module,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        start: int,
        edit: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Logits from the hidden states entering layer ``start``: layers ``start .. L-1``, then the head.

        ``hidden`` is ``hidden_states[start]`` of a full forward pass. The mask is built by transformers'
        own function for the family, so the result equals the full forward pass. ``edit`` replaces
        the attention probabilities of the layers run (``tasks.model.attention_hook.editing``). Where the
        adapter can, the last layer is computed at ``c`` only (all the head reads).
        """
        from tasks.model.attention_hook import editing

        self.require("running layers from cached hidden states")
        base = self.base_model(model)
        mask = self._mask(model, hidden, attention_mask)
        extra = self._layer_inputs(base, hidden)
        positions = self.classification_positions(attention_mask)
        remaining = self.layer_modules(model)[start:]
        fast = self.last_layer is not None and remaining
        with editing(edit, first_layer=start) if edit is not None else nullcontext():
            for layer in remaining[:-1] if fast else remaining:
                hidden = layer(hidden, attention_mask=mask, **extra)
            if fast:
                at_c = self.last_layer(remaining[-1], hidden, mask, positions)[:, 0]  # type: ignore[misc]
                return self.head(model, at_c)
        if self.final_norm is not None:
            hidden = _attribute(base, self.final_norm)(hidden)
        return self.head_logits(model, hidden, positions)

    def forward_logits(
        self,
        model: nn.Module,
        attention_mask: torch.Tensor,
        *,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The model's logits at ``c``, with the last layer at ``c`` only where the adapter can.

        Equal to the model's own logits up to floating-point rounding. Families whose layers cannot be
        run one by one run the base model's forward.
        """
        if not self.editable:
            base = self.base_model(model)
            inputs = {"input_ids": input_ids, "inputs_embeds": inputs_embeds, "token_type_ids": token_type_ids}
            output = base(attention_mask=attention_mask, **{k: v for k, v in inputs.items() if v is not None})
            return self.head_logits(model, output.last_hidden_state, self.classification_positions(attention_mask))
        hidden = self.embed(self.base_model(model), input_ids, inputs_embeds, token_type_ids)
        return self.logits_from(model, hidden, attention_mask, 0)

    def _mask(self, model: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        from transformers.masking_utils import (
            create_bidirectional_mask,
            create_causal_mask,
            create_sliding_window_causal_mask,
        )

        config = model.config  # type: ignore[union-attr]
        if not self.causal:
            return create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=attention_mask)
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None]
        arguments = {"config": config, "inputs_embeds": hidden, "attention_mask": attention_mask, "cache": None}
        sliding = getattr(config, "sliding_window", None) and (
            "sliding_attention" in (getattr(config, "layer_types", None) or ()) or config.model_type == "mistral"
        )
        if sliding:
            return create_sliding_window_causal_mask(**arguments, position_ids=positions)
        return create_causal_mask(**arguments, position_ids=positions)

    def _layer_inputs(self, base: nn.Module, hidden: torch.Tensor) -> dict[str, Any]:
        if self.rotary is None:
            return {}
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None]
        return {"position_embeddings": _attribute(base, self.rotary)(hidden, position_ids=positions)}


def _bert_style(
    family: str, model_types: tuple[str, ...], base: str, head: Head, project: str | None = None
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
        norm_inputs=_linear_norm_inputs("attention.self.value", "attention.output.dense", "num_attention_heads"),
        last_layer=_bert_last_layer,
    )


ADAPTERS: tuple[ModelAdapter, ...] = (
    _bert_style("BERT", ("bert",), "bert", _pooled_head("bert.pooler")),
    _bert_style("RoBERTa", ("roberta", "xlm-roberta", "camembert"), "roberta", _sequence_head),
    ModelAdapter(
        family="DistilBERT",
        model_types=("distilbert",),
        base="distilbert",
        layers="transformer.layer",
        attention="attention",
        head=_distilbert_head,
        embed=_distilbert_embed,
        norm_inputs=_linear_norm_inputs("attention.v_lin", "attention.out_lin", "n_heads"),
        last_layer=_distilbert_last_layer,
    ),
    ModelAdapter(
        family="ALBERT",
        model_types=("albert",),
        base="albert",
        layers="encoder.albert_layer_groups",
        attention="attention",
        head=_pooled_head("albert.pooler", activation="albert.pooler_activation"),
        embed=_encoder_embed(project="encoder.embedding_hidden_mapping_in"),
        norm_inputs=_linear_norm_inputs("attention.value", "attention.dense", "num_attention_heads"),
        last_layer=_albert_last_layer,
    ),
    _bert_style("ELECTRA", ("electra",), "electra", _sequence_head, project="embeddings_project"),
    ModelAdapter(
        family="DeBERTa-v2/v3",
        model_types=("deberta-v2",),
        base="deberta",
        layers="encoder.layer",
        attention="attention.self",
        head=_pooled_head("pooler"),
        embed=_encoder_embed(),
        norm_inputs=_linear_norm_inputs("attention.self.value_proj", "attention.output.dense", "num_attention_heads"),
        editable=False,
        not_editable=(
            "its disentangled attention is computed inside its own module, not by the attention function "
            "transformers dispatches, so its probabilities cannot be replaced inside the forward pass"
        ),
    ),
    ModelAdapter(
        family="GPT-2",
        model_types=("gpt2",),
        base="transformer",
        layers="h",
        attention="attn",
        head=_score_head,
        embed=_gpt2_embed,
        norm_inputs=_gpt2_norm_inputs,
        causal=True,
        final_norm="ln_f",
    ),
    ModelAdapter(
        family="Llama-style decoder",
        model_types=("llama", "mistral", "qwen2", "qwen3"),
        base="model",
        layers="layers",
        attention="self_attn",
        head=_score_head,
        embed=_token_embed,
        norm_inputs=_linear_norm_inputs(
            "self_attn.v_proj", "self_attn.o_proj", "config.num_attention_heads", input_norm="input_layernorm"
        ),  # fmt: skip
        causal=True,
        final_norm="norm",
        rotary="rotary_emb",
    ),
)


def adapter_for(model_type: str) -> ModelAdapter:
    """The adapter serving ``model_type``.

    Raises:
        AuditError: No adapter describes this family.
    """
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    supported = ", ".join(t for adapter in ADAPTERS for t in adapter.model_types)
    raise AuditError(
        f"no adapter for model type {model_type!r}: the audit does not know which token this family's "
        "classification head reads, nor where its attention is",
        f"audit a model of a supported type ({supported}), or add a ModelAdapter in tasks/adapters.py",
    )
