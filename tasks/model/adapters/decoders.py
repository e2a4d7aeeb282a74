"""Decoder-style classifier families: GPT-2 and Llama-style (Llama, Mistral, Qwen2, Qwen3).

Causal attention; the head is a linear ``score`` on the final-normed state of the last non-padding
token, the classification position ``c`` of docs/methodology.md. The layers are pre-norm: the value
vectors read the normed state (``ln_1``, ``input_layernorm``), and the attention block adds its output
to the unnormed residual stream, which is what ALTI decomposes (``PreNormBlock``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from tasks.model.adapters.base import ModelAdapter, PreNormBlock, linear_norm_inputs, split_heads

if TYPE_CHECKING:
    from transformers.models.gpt2.modeling_gpt2 import GPT2Attention


def _score_head(model: nn.Module, at_c: torch.Tensor) -> torch.Tensor:
    """Decoder-style classifiers: a linear ``score`` on the (final-normed) state of the last token."""
    return model.score(at_c)  # type: ignore[operator]


def _gpt2_embed(
    base: nn.Module, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, _types: torch.Tensor | None
) -> torch.Tensor:
    """GPT-2: ``drop(wte(ids) + wpe(positions))`` with learned absolute positions ``0 .. W - 1``."""
    embeds = base.wte(input_ids) if inputs_embeds is None else inputs_embeds  # type: ignore[operator]
    positions = torch.arange(embeds.shape[1], device=embeds.device)[None]
    return base.drop(embeds + base.wpe(positions))  # type: ignore[operator]


def _token_embed(
    base: nn.Module, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, _types: torch.Tensor | None
) -> torch.Tensor:
    """Llama-style decoders: the token embeddings are ``hidden_states[0]`` (positions are rotary)."""
    return base.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # type: ignore[operator]


def _gpt2_norm_inputs(
    layer: nn.Module, attention: nn.Module, hidden: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """GPT-2 fuses Q, K and V in one ``Conv1D`` (``x W + b``, weight ``[D, 3D]``); V is the last third."""
    gpt2 = cast("GPT2Attention", attention)  # the GPT-2 adapter is only given GPT-2 attention modules
    x = layer.ln_1(hidden)  # type: ignore[operator]
    size = gpt2.embed_dim
    values = x @ gpt2.c_attn.weight[:, 2 * size :] + gpt2.c_attn.bias[2 * size :]
    output = gpt2.c_proj.weight.T  # Conv1D stores [in, out]
    return values.view(*x.shape[:2], gpt2.num_heads, -1), split_heads(output, gpt2.num_heads)


DECODERS: tuple[ModelAdapter, ...] = (
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
        pre_norm=PreNormBlock(output="attn.c_proj"),
    ),
    ModelAdapter(
        family="Llama-style decoder",
        model_types=("llama", "mistral", "qwen2", "qwen3"),
        base="model",
        layers="layers",
        attention="self_attn",
        head=_score_head,
        embed=_token_embed,
        norm_inputs=linear_norm_inputs(
            "self_attn.v_proj", "self_attn.o_proj", "config.num_attention_heads", input_norm="input_layernorm"
        ),  # fmt: skip
        causal=True,
        final_norm="norm",
        rotary="rotary_emb",
        pre_norm=PreNormBlock(output="self_attn.o_proj"),
    ),
)
"""The decoder families, in the order ``adapter_for`` searches them (after the encoders)."""
