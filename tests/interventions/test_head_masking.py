"""Head masking (Michel et al. 2019): masking a head removes exactly its contribution."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from tasks.explain.passes import BatchContext
from tasks.interventions.head_masking import head_mask_edit, head_masking
from tasks.interventions.mechanism import tvd
from tests.interventions.shared import OPTIONS, original_probabilities


def test_masking_a_head_equals_removing_its_value_projection(tiny_bundle, examples):
    layer, head = 1, 2
    context = BatchContext(tiny_bundle, examples, need_gradients=False)
    values = head_masking(context, OPTIONS)
    ours = {v.example_id: v.value for v in values if v.layer == layer and v.head == head and v.statistic == "tvd"}
    model = copy.deepcopy(tiny_bundle.model)
    value_projection = model.bert.encoder.layer[layer].attention.self.value
    size = value_projection.weight.shape[0] // tiny_bundle.num_heads
    with torch.no_grad():
        value_projection.weight[head * size : (head + 1) * size] = 0
        value_projection.bias[head * size : (head + 1) * size] = 0
        logits = model(input_ids=context.input_ids, attention_mask=context.attention_mask).logits
    expected = tvd(original_probabilities(context), torch.softmax(logits.double(), dim=-1)).numpy()
    for row, example in enumerate(examples):
        assert ours[example.example_id] == pytest.approx(expected[row], abs=1e-6)
    assert len(values) == 2 * len(examples) * tiny_bundle.num_layers * tiny_bundle.num_heads


def test_on_a_post_ln_encoder_the_masked_layer_from_its_clean_block_equals_running_it_with_the_head_zeroed(
    tiny_bundle, examples
):
    context = BatchContext(tiny_bundle, examples, need_gradients=False)
    values = head_masking(context, OPTIONS)
    heads = tiny_bundle.num_heads
    rows = np.repeat(np.arange(len(examples)), heads)
    masked = torch.as_tensor(np.tile(np.arange(heads), len(examples)))
    for layer in range(tiny_bundle.num_layers):  # the last layer is computed at c alone
        edited = context.intervened_probabilities(
            rows, layer, lambda members, layer=layer: head_mask_edit(layer, masked[torch.as_tensor(members)])
        )
        expected = tvd(original_probabilities(context)[torch.as_tensor(rows)], edited).numpy()
        ours = {(v.example_id, v.head): v.value for v in values if v.layer == layer and v.statistic == "tvd"}
        for run, (row, head) in enumerate(zip(rows.tolist(), masked.tolist(), strict=True)):
            assert ours[examples[row].example_id, head] == pytest.approx(expected[run], abs=1e-6)
        assert expected.max() > 1e-4  # masking a head moves the output: the comparison is not vacuous
