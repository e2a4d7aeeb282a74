"""What benchmarks/side_by_side.py measures the same way on both sides: model passes and output differences.

Imported by the audit's process (benchmarks/counted_audit.py), by the peers' process (benchmarks/peers.py,
in the peers' environment) and by side_by_side.py, so it needs nothing but torch (and transformers to
install the counter on every model loaded).

- ``PassCounter`` counts the model's forward rows and token positions with a forward hook on the module
  that embeds the input tokens (``BertEmbeddings`` for BERT). Every pass over the whole network goes
  through it, whether it is a call of the Hugging Face model (Captum, ferret) or the audit's layer-by-layer
  path, and whether it starts from token ids or from embeddings (integrated gradients). A row counts as a
  gradient row when autograd records the pass (the audit, Captum's saliency and integrated gradients);
  its backward pass is then the caller's. Token positions include padding: that is the work done.
  Passes that start above the embeddings (the audit's interventions on the attention) are not counted.
- ``differences`` compares two sets of numbers key by key and gives the largest absolute difference
  per quantity.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class PassCount:
    """Rows (sequences) and token positions (padding included) through the model, by whether autograd recorded them."""

    forward_rows: int = 0
    forward_positions: int = 0
    gradient_rows: int = 0
    gradient_positions: int = 0


class PassCounter:
    """Counts every pass through a model's input embedding module (see the module docstring)."""

    def __init__(self) -> None:
        self.count = PassCount()
        self._lock = threading.Lock()
        self._attached: set[int] = set()

    def attach(self, model: nn.Module) -> None:
        """Count the passes of ``model`` (a Hugging Face model; attaching twice counts once)."""
        module = embedding_module(model)
        if id(module) in self._attached:
            return
        self._attached.add(id(module))
        module.register_forward_hook(self._record)

    def install(self) -> None:
        """Attach to every model ``from_pretrained`` loads from now on in this process."""
        from transformers import PreTrainedModel

        original = PreTrainedModel.from_pretrained.__func__  # type: ignore[attr-defined]

        def from_pretrained(cls: type, *args: Any, **kwargs: Any) -> Any:
            loaded = original(cls, *args, **kwargs)
            self.attach(loaded[0] if isinstance(loaded, tuple) else loaded)
            return loaded

        PreTrainedModel.from_pretrained = classmethod(from_pretrained)  # type: ignore[method-assign, assignment]

    def as_dict(self) -> dict[str, int]:
        """The counts so far."""
        with self._lock:
            return asdict(self.count)

    def _record(self, _module: nn.Module, _inputs: Any, output: Any) -> None:
        hidden = output if isinstance(output, torch.Tensor) else output[0]
        rows, positions = int(hidden.shape[0]), int(hidden.shape[0] * hidden.shape[1])
        with self._lock:
            self.count.forward_rows += rows
            self.count.forward_positions += positions
            if torch.is_grad_enabled():
                self.count.gradient_rows += rows
                self.count.gradient_positions += positions


def embedding_module(model: nn.Module) -> nn.Module:
    """The module whose child is the token-embedding table: every full pass goes through it."""
    table = model.get_input_embeddings()  # type: ignore[operator]
    for module in model.modules():
        if any(child is table for child in module.children()):
            return module
    raise ValueError(f"{type(model).__name__} has no module holding its input embeddings")


@dataclass(frozen=True)
class Difference:
    """How far one quantity's numbers on the two sides are apart.

    Attributes:
        quantity: What was compared (e.g. ``integrated_gradients`` or ``comprehensiveness``).
        compared: Keys present on both sides with a number on each (NaN on both counts as equal).
        largest: The largest absolute difference over them (NaN against a number is infinite).
        only_one_side: Keys present on one side only.
    """

    quantity: str
    compared: int
    largest: float
    only_one_side: int


def differences(
    ours: Mapping[tuple[str, Hashable], float], theirs: Mapping[tuple[str, Hashable], float]
) -> list[Difference]:
    """``max |ours − theirs|`` per quantity over the keys ``(quantity, item)`` both sides have.

    Returns:
        One ``Difference`` per quantity, in order of first appearance (ours first).
    """
    quantities = dict.fromkeys(quantity for quantity, _ in [*ours, *theirs])
    result = []
    for quantity in quantities:
        mine = {item: value for (name, item), value in ours.items() if name == quantity}
        other = {item: value for (name, item), value in theirs.items() if name == quantity}
        shared = mine.keys() & other.keys()
        largest = max((_gap(mine[item], other[item]) for item in shared), default=float("nan"))
        result.append(Difference(quantity, len(shared), largest, len(mine.keys() ^ other.keys())))
    return result


def _gap(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return 0.0 if math.isnan(a) and math.isnan(b) else math.inf
    return abs(a - b)


def flatten(quantity: str, item: Hashable, values: Iterable[float]) -> dict[tuple[str, Hashable], float]:
    """One key ``(quantity, (item, position))`` per value of a vector (token scores)."""
    return {(quantity, (item, position)): float(value) for position, value in enumerate(values)}
