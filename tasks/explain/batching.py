"""Padding and chunking of a batch's rows: the plumbing of every chunked model call.

Rows are padded on the right (example ``i`` occupies positions ``0 .. T_i - 1``), and length-sorted rows
are cut into consecutive chunks whose padded size (rows x longest length) stays under a token budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def right_pad(sequences: Sequence[tuple[np.ndarray, np.ndarray]], pad_id: int) -> tuple[torch.Tensor, ...]:
    """``(input_ids, token_type_ids, attention_mask)``, each ``[N, W]``, of ``(ids, types)`` pairs padded on the right.

    ``W`` is the longest sequence; padding is ``pad_id`` in the ids and 0 in the types and the mask.
    """
    width = max(len(ids) for ids, _ in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(sequences), width), dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, (ids, token_types) in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.from_numpy(ids)
        types[row, : len(ids)] = torch.from_numpy(token_types)
        mask[row, : len(ids)] = 1
    return input_ids, types, mask


def chunks_under_budget(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Consecutive index chunks whose rows x longest length stays within ``budget`` (at least one row).

    ``lengths`` should be sorted ascending so that chunks are nearly unpadded.
    """
    chunks: list[list[int]] = []
    current: list[int] = []
    widest = 0
    for index, length in enumerate(lengths):
        wider = max(widest, length)
        if current and (len(current) + 1) * wider > budget:
            chunks.append(current)
            current, wider = [], length
        current.append(index)
        widest = wider
    if current:
        chunks.append(current)
    return chunks
