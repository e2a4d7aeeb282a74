"""The adapter: what the audit needs to know about a model family, and the parts families share.

A ``ModelAdapter`` is a frozen description (attribute paths and small functions) plus the generic code
that uses it: the classification position ``c`` of docs/methodology.md, the head's logits, the layers
run one by one from cached hidden states (interventions), and the value and output projections of a
layer (norm-based attention). The families' parts live in ``encoders`` and ``decoders``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from tasks.errors import AuditError
from tasks.model.attention_hook import AttentionEdit, editing, unobserved

if TYPE_CHECKING:
    from transformers import PreTrainedConfig

    from tasks.model.adapters.decomposition import Decomposable, LayerParts, PostNormLayout

Head = Callable[[nn.Module, torch.Tensor], torch.Tensor]
"""``head(model, final_hidden_at_c [N, D]) -> logits [N, C]``: the family's classification head."""
Embed = Callable[[nn.Module, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None], torch.Tensor]
"""``embed(base, input_ids, inputs_embeds, token_type_ids) -> hidden_states[0]``: the embedding layer."""
NormInputs = Callable[[nn.Module, nn.Module, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``norm_inputs(layer, attention, hidden [N, W, D]) -> (values [N, W, H, d], W_O [D, H, d])``."""
LastLayer = Callable[[nn.Module, torch.Tensor, torch.Tensor | None, torch.Tensor], torch.Tensor]
"""``last(layer, hidden [N, W, D], mask, positions [N]) -> [N, 1, D]``: a layer's output at one query each."""


def attribute(root: object, dotted: str) -> Any:
    """``root.a.b.c`` for ``dotted == "a.b.c"``."""
    value = root
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def inner_layer(module: nn.Module) -> nn.Module:
    """The transformer layer a depth runs: the module itself, or the last layer of an ALBERT layer group.

    ALBERT's groups hold one inner layer each (checked when the model is loaded).
    """
    return module.albert_layers[-1] if hasattr(module, "albert_layers") else module  # type: ignore[index]


# --- value and output projections (norm-based attention) ------------------------------------------


def split_heads(weight_out_in: torch.Tensor, heads: int) -> torch.Tensor:
    """An output projection's weight ``[D_out, H·d]`` split by head: ``[D_out, H, d]``."""
    return weight_out_in.view(weight_out_in.shape[0], heads, -1)


def linear_norm_inputs(value: str, output: str, heads: str, input_norm: str | None = None) -> NormInputs:
    """``f_h``'s parts for separate value and output ``nn.Linear`` projections (encoders and Llama-style).

    ``input_norm`` names the pre-norm that a pre-LN layer applies to its input before the attention
    (the value projection reads the normed state). Grouped-query attention shares each value head
    among ``H / H_kv`` query heads, so value heads are repeated to one per query head.
    """

    def norm_inputs(layer: nn.Module, attention: nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = hidden if input_norm is None else attribute(layer, input_norm)(hidden)
        query_heads = int(attribute(attention, heads))
        projection = attribute(layer, value)
        head_size = split_heads(attribute(layer, output).weight, query_heads).shape[-1]
        values = projection(x).view(*x.shape[:2], -1, head_size)  # [N, W, H_kv, d]
        values = values.repeat_interleave(query_heads // values.shape[2], dim=2)
        return values, split_heads(attribute(layer, output).weight, query_heads)

    return norm_inputs


# --- a pre-norm attention block (ALTI for decoders) ---------------------------------------------------


@dataclass(frozen=True)
class PreNormBlock:
    """Where a pre-norm layer keeps what decomposes its attention block: ``x + Attn(LN(x)) W_O + b_O``.

    The block's output is the residual stream ``y = x + Σ_h A_h (LN(x) W_V^h + b_V^h) W_O^h + b_O``, with
    no norm after it (Ferrando et al. 2023). The value vectors ``LN(x_j) W_V^h + b_V^h`` are the adapter's
    ``norm_inputs``, which apply the pre-norm (LayerNorm or RMSNorm); only ``b_O`` is read from here.

    Attributes:
        output: The attention output projection (``nn.Linear``, GPT-2's ``Conv1D``), whose bias, where it
            has one, is ``b_O``.
    """

    output: str


def projection_bias(projection: nn.Module, size: int) -> torch.Tensor:
    """A projection's bias ``[size]``, zeros where it has none (Llama's ``o_proj``)."""
    bias = getattr(projection, "bias", None)
    return bias if bias is not None else projection.weight.new_zeros(size)  # type: ignore[operator]


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
        post_norm: Where a post-LN encoder keeps each layer's modules and its head's stages, for every
            decomposition (ALTI, GlobEnc, DecompX); None where there is none to decompose
            (``tasks.model.adapters.decomposition.not_decomposable`` says why).
        pre_norm: Where a pre-norm layer keeps its attention output projection (ALTI for decoders);
            None where the layers are not pre-norm.
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
    post_norm: PostNormLayout | None = None
    pre_norm: PreNormBlock | None = None

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

    def layer_parts(self, model: nn.Module, layer: int) -> LayerParts:
        """The modules of layer ``layer`` that the decompositions read (ALBERT: of the group's last layer).

        Raises:
            AuditError: The family's layers are not decomposable (with the reason).
        """
        return self._layout().parts(inner_layer(self.layer_modules(model)[layer]))

    def decomposable(self, model: nn.Module) -> Decomposable:
        """The modules DecompX propagates through: every depth's parts, then the head's stages.

        Raises:
            AuditError: DecompX cannot be carried to this family's logits (with the reason).
        """
        from tasks.model.adapters.decomposition import Decomposable, not_decomposable

        if reason := not_decomposable(self, to_logits=True):
            raise AuditError(f"DecompX is not applicable to {reason}", "leave it out with --methods")
        layout = self._layout()
        layers = tuple(layout.parts(inner_layer(module)) for module in self.layer_modules(model))
        return Decomposable(layers=layers, head=layout.head_stages(model))

    def output_bias(self, model: nn.Module, layer: int) -> torch.Tensor:
        """``b_O`` of a pre-norm layer's attention block ``[D]`` (zeros where its projection has no bias).

        Raises:
            AuditError: The family's adapter describes no pre-norm block.
        """
        if self.pre_norm is None:
            raise AuditError(
                f"decomposing a pre-norm attention block is not applicable to {self.family} models: "
                "its adapter describes no pre-norm layer",
                "leave out alti with --methods",
            )
        output = attribute(self.layer_modules(model)[layer], self.pre_norm.output)
        return projection_bias(output, int(model.config.hidden_size))  # type: ignore[union-attr]

    def _layout(self) -> PostNormLayout:
        from tasks.model.adapters.decomposition import not_decomposable

        if self.post_norm is None:
            raise AuditError(
                f"decomposing the layers is not applicable to {not_decomposable(self)}",
                "leave out alti, globenc and decompx with --methods",
            )
        return self.post_norm

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
        return attribute(model, self.base)

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
        modules = list(attribute(self.base_model(model), self.layers))
        depth = int(model.config.num_hidden_layers)  # type: ignore[union-attr]
        if len(modules) == depth:
            return modules
        return [modules[int(i / (depth / len(modules)))] for i in range(depth)]  # ALBERT's group index

    def attention_module(self, layer: nn.Module) -> nn.Module:
        """A layer's self-attention module (ALBERT: that of the group's last layer)."""
        return attribute(inner_layer(layer), self.attention)

    def norm_vectors(self, model: nn.Module, layer: int, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values [N, W, H, d], W_O [D, H, d])`` of layer ``layer`` for ``hidden`` entering it."""
        module = self.layer_modules(model)[layer]
        return self.norm_inputs(inner_layer(module), self.attention_module(module), hidden)

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
        edit: AttentionEdit | None = None,
    ) -> torch.Tensor:
        """Logits from the hidden states entering layer ``start``: layers ``start .. L-1``, then the head.

        ``hidden`` is ``hidden_states[start]`` of a full forward pass. The mask is built by transformers'
        own function for the family, so the result equals the full forward pass. ``edit`` replaces
        the attention probabilities of the layers run (``tasks.model.attention_hook.editing``); without an
        edit no probability is read, so the layers' attention runs fused (``attention_hook.unobserved``). Where
        the adapter can, the last layer is computed at ``c`` only (all the head reads).
        """
        self.require("running layers from cached hidden states")
        base = self.base_model(model)
        mask = self._mask(model, hidden, attention_mask)
        extra = self._layer_inputs(base, hidden)
        positions = self.classification_positions(attention_mask)
        remaining = self.layer_modules(model)[start:]
        fast = self.last_layer is not None and remaining
        with editing(edit, first_layer=start) if edit is not None else unobserved():
            for layer in remaining[:-1] if fast else remaining:
                hidden = layer(hidden, attention_mask=mask, **extra)
            if fast:
                at_c = self.last_layer(remaining[-1], hidden, mask, positions)[:, 0]  # type: ignore[misc]
                return self.head(model, at_c)
        if self.final_norm is not None:
            hidden = attribute(base, self.final_norm)(hidden)
        return self.head_logits(model, hidden, positions)

    def patched_layer_outputs(
        self,
        model: nn.Module,
        inputs: Sequence[torch.Tensor],
        attention_mask: torch.Tensor,
        edit: AttentionEdit | None = None,
    ) -> list[torch.Tensor]:
        """Every layer's output, each layer run on its own cached clean input (value zeroing).

        Layer ``l`` reads ``inputs[l]`` (``hidden_states[l]`` of the clean forward pass, ``[N, W, D]``),
        not the output of the layer below, so an ``edit`` active in every layer changes each layer's
        output only through that layer's own attention: one forward's work gives ``L`` one-layer
        interventions (Mohebbi et al. 2023). Returns ``L`` tensors ``[N, W, D]``, before any final norm.
        """
        self.require("running layers from cached hidden states")
        base = self.base_model(model)
        mask = self._mask(model, inputs[0], attention_mask)
        extra = self._layer_inputs(base, inputs[0])
        layers = self.layer_modules(model)
        with editing(edit, first_layer=0) if edit is not None else nullcontext():
            return [layer(hidden, attention_mask=mask, **extra) for layer, hidden in zip(layers, inputs, strict=True)]

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

        config = cast("PreTrainedConfig", model.config)  # every transformers model has its configuration
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
        return {"position_embeddings": attribute(base, self.rotary)(hidden, position_ids=positions)}
