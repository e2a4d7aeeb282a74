"""Erasing the top key versus random keys (Serrano & Smith 2019)."""

from __future__ import annotations

import math

import torch

from tasks.explain.passes import BatchContext
from tasks.interventions.erasure import erase_key, top_vs_random_erasure
from tests.conftest import encode
from tests.interventions.shared import OPTIONS


def test_erasure_compares_the_top_key_with_random_keys(context: BatchContext):
    values = top_vs_random_erasure(context, OPTIONS)
    statistics = {v.statistic for v in values}
    assert statistics == {"top_tvd", "top_flip", "random_tvd", "random_flip"}
    assert len(values) == 4 * len(context.examples)
    assert all(v.layer == 1 for v in values)


def test_erasure_is_undefined_without_a_second_content_token(tiny_bundle):
    context = BatchContext(tiny_bundle, encode(tiny_bundle, ["great"]), need_gradients=False)
    assert all(math.isnan(v.value) for v in top_vs_random_erasure(context, OPTIONS))


def test_erasing_a_key_zeroes_it_and_renormalises_the_rest():
    rows = torch.tensor([[[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]])
    erased = erase_key(rows, torch.tensor([2]))
    torch.testing.assert_close(erased, torch.tensor([[[0.625, 0.375, 0.0], [0.5, 0.5, 0.0]]]))
