"""The random ranking: the control every explanation must beat.

Each content token gets an independent ``Uniform(0, 1)`` score (special tokens 0), so the ranking is a
uniformly random permutation. The generator is seeded by ``(seed, draw, example id)``, so an example's
ranking does not depend on the batch it lands in. ``random_draws`` independent rankings are drawn per
example; metrics average over them before comparing with a method.

References:
    DeYoung et al. (2020), "ERASER: A Benchmark to Evaluate Rationalized NLP Models", ACL (random
    baseline rationales). https://arxiv.org/abs/1911.03429
"""

from __future__ import annotations

import hashlib

import numpy as np

from tasks.config import MethodOptions
from tasks.explain.passes import BatchContext
from tasks.records import EncodedExample, TokenScores


def random_scores(example: EncodedExample, seed: int, draw: int) -> np.ndarray:
    """Seeded ``Uniform(0, 1)`` scores on the content tokens, 0 on special tokens."""
    example_key = int.from_bytes(hashlib.sha256(example.example_id.encode()).digest()[:8], "little")
    rng = np.random.default_rng([seed, draw, example_key])
    return np.where(example.content_mask, rng.random(example.length), 0.0)


def random_ranking(context: BatchContext, options: MethodOptions) -> list[TokenScores]:
    """``random_draws`` random rankings per example."""
    return [
        record
        for draw in range(options.random_draws)
        for record in context.records(
            "random", [random_scores(e, options.seed, draw) for e in context.examples], draw=draw
        )
    ]
