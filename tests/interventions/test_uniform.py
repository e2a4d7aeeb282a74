"""Uniform attention in each layer and in all layers at once (Wiegreffe & Pinter 2019)."""

from __future__ import annotations

import numpy as np

from tasks.explain.passes import BatchContext
from tasks.interventions.uniform import uniform
from tasks.records import EncodedExample
from tests.interventions.shared import OPTIONS


def test_uniform_attention_on_a_one_token_input_changes_nothing(tiny_bundle):
    cls = tiny_bundle.tokenizer.cls_token_id
    single = EncodedExample(
        example_id="cls-only",
        text="",
        label=None,
        input_ids=np.array([cls]),
        token_type_ids=np.array([0]),
        tokens=("[CLS]",),
        offsets=np.zeros((1, 2), dtype=np.int64),
        special_mask=np.array([True]),
        n_original_tokens=1,
    )
    context = BatchContext(tiny_bundle, [single], need_gradients=False)
    values = uniform(context, OPTIONS)
    assert {v.value for v in values if v.statistic == "tvd"} == {0.0}
    assert {v.value for v in values if v.statistic == "flip"} == {0.0}


def test_uniform_covers_each_layer_and_all_layers_at_once(context: BatchContext):
    values = uniform(context, OPTIONS)
    assert {v.layer for v in values} == {0, 1, None}
    assert all(0 <= v.value <= 1 for v in values if v.statistic == "tvd")
    predicted = [v for v in values if v.statistic == "predicted"]
    assert len(predicted) == 3 * len(context.examples)
