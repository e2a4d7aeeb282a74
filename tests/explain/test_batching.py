"""Padding and chunking of a batch's rows."""

from __future__ import annotations

import numpy as np
import torch

from tasks.explain.batching import chunks_under_budget, right_pad


def test_chunks_cover_every_row_once_and_stay_under_budget():
    lengths = [3, 3, 4, 5, 9, 9, 20]
    chunks = chunks_under_budget(lengths, 12)
    assert sorted(i for chunk in chunks for i in chunk) == list(range(len(lengths)))
    for chunk in chunks:
        assert len(chunk) == 1 or len(chunk) * max(lengths[i] for i in chunk) <= 12


def test_rows_are_padded_on_the_right_with_the_pad_id_and_masked():
    sequences = [(np.array([5, 6, 7]), np.array([0, 1, 1])), (np.array([8]), np.array([0]))]
    input_ids, types, mask = right_pad(sequences, pad_id=1)
    assert input_ids.tolist() == [[5, 6, 7], [8, 1, 1]]
    assert types.tolist() == [[0, 1, 1], [0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert input_ids.dtype == types.dtype == mask.dtype == torch.long
