"""Permuted attention (Jain & Wallace 2019): does scrambling which token gets which weight move the output?

For each chosen layer ``l`` and each of ``n`` draws, row ``c`` (the classification position) of every head
of ``l`` is permuted over the content keys, ``α'_{h,c,j} = α_{h,c,π(j)}`` with one random permutation
``π`` of the content positions per draw (special tokens and padding keep their weights). Per example:
the median and mean ``TVD(p(α), p(α'))`` over the draws, and the flip rate ``mean(argmax p(α') ≠ ŷ)``.
A small median TVD says the weights do not single out the tokens the decision rests on.

Reference:
    Jain & Wallace (2019), "Attention is not Explanation", NAACL.
    https://arxiv.org/abs/1902.10186
"""

from __future__ import annotations

import numpy as np
import torch

from tasks.config import InterventionOptions
from tasks.explain.passes import BatchContext
from tasks.interventions.mechanism import (
    content_positions,
    example_rng,
    resolve_layer,
    row_edit_changes,
    statistic_values,
)
from tasks.records import InterventionValue


def permuted_rows(index: torch.Tensor, rows: torch.Tensor, runs: torch.Tensor) -> torch.Tensor:
    """Rows whose keys are reordered by ``index[run]`` (``[N, W]``, identity outside the content keys)."""
    return rows.gather(-1, index[runs][:, None, : rows.shape[-1]].expand_as(rows))


def permutation(context: BatchContext, options: InterventionOptions) -> list[InterventionValue]:
    """Permute row ``c`` of every head of each chosen layer over the content keys, ``n`` draws."""
    examples, draws = context.examples, options.permutation_draws
    width = int(context.lengths.max())
    values = []
    for requested in options.layers:
        layer = resolve_layer(requested, context.bundle.num_layers)
        rows = np.repeat(np.arange(len(examples)), draws)
        index = np.tile(np.arange(width), (len(rows), 1))
        for row, example in enumerate(examples):  # runs row * draws ... row * draws + draws - 1
            rng = example_rng(example, options.seed, layer, 1)
            content = content_positions(example)
            for run in range(row * draws, (row + 1) * draws):
                index[run, content] = rng.permutation(content)
        changes, flips = row_edit_changes(context, rows, layer, permuted_rows, index)
        for row, example in enumerate(examples):
            these = slice(row * draws, (row + 1) * draws)
            statistics = {
                "median_tvd": np.median(changes[these]),
                "mean_tvd": np.mean(changes[these]),
                "flip_rate": np.mean(flips[these]),
            }
            values += statistic_values(example.example_id, "permutation", statistics, layer)
    return values
