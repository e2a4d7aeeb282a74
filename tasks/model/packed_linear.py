"""The classifier's linear layers through oneDNN with their weights packed once (CPU, float32).

On CPU, ``nn.Linear`` calls MKL's float32 product. oneDNN, also inside torch, multiplies faster once a
weight has been reordered into its blocked layout (``torch.ops.mkldnn._reorder_linear_weight``, what
``torch.compile``'s CPU backend does with frozen weights): on this project's 2-core AMD EPYC (AVX-512), for
the audit's shapes (``[rows × 384]·[384 × 1536]`` and back, ``[rows × 384]·[384 × 384]``, 8 to 4,096 rows),
1.08-1.26 times as many products per second, and 1.8 times for the 8-row products at ``c``. The products
are the same; only the order of their sums differs, so outputs agree to float32 rounding (logits of the
default model within 7e-6 of 2.8).

``pack_linears(model)`` turns every ``nn.Linear`` of a model into a ``PackedLinear`` (the class only:
parameters, names, shared modules and ``state_dict`` stay as they are), unless their weights exceed
``PACK_LIMIT_BYTES``: the packed copies take as much memory again. Its forward uses the packed
weight for a float32 input on CPU when oneDNN is available (``available``), and ``F.linear`` otherwise.
Gradients flow through ``PackedProduct``: ``∂L/∂x = ∂L/∂y · W``, itself a packed product with ``Wᵀ``;
``∂L/∂W`` and ``∂L/∂b`` only where the weight requires them (the audit never differentiates the weights).

The packed copy of a weight is cached here (not on the module, whose deep copy could not copy it), keyed
by the weight object, its storage and its version counter, so a weight changed in place (the sanity
check's re-initialisation, ``load_state_dict``) or a deep copy is packed afresh; the cache entry goes when
its weight does.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

import torch
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable
from torch.nn import functional

ROWS_HINT = 2048
"""The number of rows the packed layout is chosen for (the default token budget); any count works."""

PACK_LIMIT_BYTES = 2**30
"""The largest linear weights packed (1 GiB: about 270 million float32 parameters). The packed copies add as
much memory again, and the transposed ones of the gradient passes as much once more; a larger model keeps
MKL's product rather than triple its weights' memory."""

_packed: dict[tuple[int, bool], tuple[weakref.ref[torch.Tensor], int, int, torch.Tensor]] = {}


@functools.cache
def available() -> bool:
    """Whether this torch build has oneDNN's packed linear product and it agrees with ``F.linear``."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return False
    generator = torch.Generator().manual_seed(0)
    x, weight = torch.randn(5, 3, 16, generator=generator), torch.randn(8, 16, generator=generator)
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight, ROWS_HINT)
        product = torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
    except RuntimeError:
        return False
    return bool(torch.allclose(product, functional.linear(x, weight), rtol=1e-5, atol=1e-5))


def packed_weight(weight: torch.Tensor, transposed: bool = False) -> torch.Tensor:
    """``weight`` (or ``weightᵀ``) reordered for oneDNN, packed once per version of the weight."""
    key = (id(weight), transposed)
    entry = _packed.get(key)
    if entry is not None and entry[0]() is weight and entry[1:3] == (weight.data_ptr(), weight._version):
        return entry[3]
    source = weight.detach().t().contiguous() if transposed else weight.detach()
    packed = torch.ops.mkldnn._reorder_linear_weight(source, ROWS_HINT)
    reference = weakref.ref(weight, lambda _, key=key: _packed.pop(key, None))
    _packed[key] = (reference, weight.data_ptr(), weight._version, packed)
    return packed


def packed_product(x: torch.Tensor, weight: torch.Tensor, transposed: bool = False) -> torch.Tensor:
    """``x Wᵀ`` (``x W`` when ``transposed``) through oneDNN with ``weight`` packed, no gradient."""
    return torch.ops.mkldnn._linear_pointwise(x, packed_weight(weight, transposed), None, "none", [], "")


def weight_product(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x Wᵀ`` for a linear layer's ``weight``, packed where ``PackedLinear`` would be, without gradient.

    For code that multiplies by a layer's weight itself (DecompX's parts); ``x @ weight.T`` elsewhere.
    """
    return packed_product(x, weight) if packable(x, weight) else x @ weight.T


def packable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``x Wᵀ`` runs packed: both float32 on CPU, and oneDNN's product ``available``."""
    return x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and available()


class PackedProduct(torch.autograd.Function):
    """``y = x Wᵀ + b`` with the packed weight, and its backward with the packed ``Wᵀ``."""

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """``x Wᵀ + b`` through oneDNN."""
        return torch.ops.mkldnn._linear_pointwise(x, packed_weight(weight), bias, "none", [], "")

    @staticmethod
    def setup_context(ctx: FunctionCtx, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        """Keep the weight, and the input only where the weight's gradient may be asked for."""
        x, weight, _ = inputs
        ctx.save_for_backward(weight, *([x] if weight.requires_grad else []))

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # pyright: ignore[reportIncompatibleMethodOverride] - the decorator's wrapper, not the signature
        """``∂L/∂x = ∂L/∂y · W`` (packed ``Wᵀ``); ``∂L/∂W = (∂L/∂y)ᵀ x`` and ``∂L/∂b = Σ ∂L/∂y`` where required."""
        (grad,) = grad_outputs
        weight, *saved = ctx.saved_tensors
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad
        grad_x = packed_product(grad, weight, transposed=True) if needs_x else None
        rows = grad.reshape(-1, grad.shape[-1])
        grad_weight = rows.T @ saved[0].reshape(-1, saved[0].shape[-1]) if needs_weight else None
        grad_bias = rows.sum(dim=0) if needs_bias else None
        return grad_x, grad_weight, grad_bias


class PackedLinear(nn.Linear):
    """``nn.Linear`` whose product runs through oneDNN with the packed weight where it can."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - nn.Linear's own name
        """``x Wᵀ + b``: packed for a float32 input on CPU, ``F.linear`` otherwise."""
        if packable(input, self.weight):
            return PackedProduct.apply(input, self.weight, self.bias)
        return functional.linear(input, self.weight, self.bias)


def pack_linears(model: nn.Module, limit_bytes: int = PACK_LIMIT_BYTES) -> int:
    """Make every ``nn.Linear`` of ``model`` a ``PackedLinear``; returns how many.

    Changes nothing (and returns 0) when oneDNN's product is not ``available`` or the linear layers' weights
    exceed ``limit_bytes``.
    """
    linears = [module for module in model.modules() if type(module) is nn.Linear]
    size = sum(module.weight.numel() * module.weight.element_size() for module in linears)
    if not available() or size > limit_bytes:
        return 0
    for module in linears:
        module.__class__ = PackedLinear
    return len(linears)
