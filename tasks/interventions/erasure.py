"""Erasing the top key versus a random key (Serrano & Smith 2019): does attention rank importance?

For each chosen layer ``l``, the content key ``t = argmax_j mean_h α_{h,c,j}`` most attended from the
classification row ``c`` (mean over heads) is erased from every head's row ``c``: its weight is set to 0
and the rest renormalised, ``α'_{h,c,j} = α_{h,c,j} [j ≠ t] / Σ_{k ≠ t} α_{h,c,k}``. The same is done
for ``n`` random other content keys. Per example: the TVD and flip of erasing ``t`` (``top_tvd``,
``top_flip``) and their means over the random keys (``random_tvd``, ``random_flip``). Attention ranks
importance faithfully when erasing its top key changes the output more than erasing a random one. An
input with fewer than two content tokens has no other key to compare with: its values are NaN.

Reference:
    Serrano & Smith (2019), "Is Attention Interpretable?", ACL. https://arxiv.org/abs/1906.03731
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
from tasks.records import EncodedExample, InterventionValue

NAME = "top_vs_random_erasure"
STATISTICS = ("top_tvd", "top_flip", "random_tvd", "random_flip")


def erase_key(rows: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Zero key ``keys[n]`` in every head's row of run ``n`` and renormalise: ``[n, H, W] -> [n, H, W]``."""
    kept = rows.clone()
    kept[torch.arange(rows.shape[0]), :, keys] = 0.0
    return kept / kept.sum(dim=-1, keepdim=True)


def erased_rows(keys: torch.Tensor, rows: torch.Tensor, runs: torch.Tensor) -> torch.Tensor:
    """Rows with key ``keys[run]`` erased and the rest renormalised."""
    return erase_key(rows, keys[runs])


def top_vs_random_erasure(context: BatchContext, options: InterventionOptions) -> list[InterventionValue]:
    """Erase the most-attended content key of row ``c`` versus a random other content key."""
    examples = context.examples
    values = []
    for requested in options.layers:
        layer = resolve_layer(requested, context.bundle.num_layers)
        mean_rows = context.model_pass.attentions[layer].mean(dim=1)
        mean_rows = mean_rows[torch.arange(len(examples)), context.classification_positions].cpu().numpy()
        rows, keys, is_top = [], [], []
        for row, example in enumerate(examples):
            content = content_positions(example)
            if content.size < 2:
                values += statistic_values(example.example_id, NAME, dict.fromkeys(STATISTICS, float("nan")), layer)
                continue
            for key, top_flag in _erased_keys(example, content, mean_rows[row], options, layer):
                rows.append(row)
                keys.append(key)
                is_top.append(top_flag)
        if not rows:
            continue
        rows_array = np.array(rows)
        changes, flips = row_edit_changes(context, rows_array, layer, erased_rows, keys)
        top_mask = np.array(is_top)
        for row in np.unique(rows_array):
            top_run = (rows_array == row) & top_mask
            random_runs = (rows_array == row) & ~top_mask
            statistics = {
                "top_tvd": changes[top_run][0],
                "top_flip": flips[top_run][0],
                "random_tvd": changes[random_runs].mean(),
                "random_flip": flips[random_runs].mean(),
            }
            values += statistic_values(examples[row].example_id, NAME, statistics, layer)
    return values


def _erased_keys(
    example: EncodedExample, content: np.ndarray, mean_row: np.ndarray, options: InterventionOptions, layer: int
) -> list[tuple[int, bool]]:
    """The keys to erase for one example: its top content key, then ``erasure_draws`` random other ones."""
    top = int(content[np.argmax(mean_row[content])])
    others = content[content != top]
    rng = example_rng(example, options.seed, layer, 2)
    return [(top, True), *((int(k), False) for k in rng.choice(others, options.erasure_draws))]
