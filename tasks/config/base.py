"""The shared pieces of the configuration: the frozen model base, the named choices, the stable hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel

RemovalOperator = Literal["delete", "mask", "pad"]
Units = Literal["token", "word", "sentence"]
IntegrationRule = Literal["gausslegendre", "patterson", "riemann_right"]
PATTERSON_SIZES = (10, 21, 43, 87)  # the nested Gauss–Kronrod–Patterson rules (tasks.explain.quadrature)
Device = Literal["cpu", "cuda", "auto"]
Precision = Literal["float32", "float16", "bfloat16"]

DEFAULT_K_FRACTIONS = (0.01, 0.05, 0.10, 0.20, 0.50)


class FrozenModel(BaseModel, frozen=True, extra="forbid"):
    """An immutable configuration part that rejects unknown fields.

    Subclasses repeat ``frozen=True`` in their class line: that is how type checkers learn that they are
    immutable and hashable (pydantic adds ``__hash__`` to frozen models; ``load_model`` caches on a ``ModelSpec``).
    """


def stable_hash(payload: Any, length: int = 16) -> str:
    """Hex SHA-256 of a JSON-serialisable payload with sorted keys (stable across processes)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]
