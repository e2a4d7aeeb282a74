"""The pass counter and the number-by-number comparison of benchmarks/side_by_side.py."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from benchmarks.likeforlike import PassCounter, differences, flatten
from tasks.model.adapters import adapter_for


@pytest.fixture(scope="module")
def model() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)  # fmt: skip
    config._attn_implementation = "eager"  # the audit's attention, as tasks.model.loading loads it
    return BertForSequenceClassification(config).eval()


def test_a_model_call_counts_its_rows_and_padded_positions_and_whether_autograd_records_it(model) -> None:
    counter = PassCounter()
    counter.attach(model)
    counter.attach(model)  # attaching twice counts once
    ids = torch.randint(5, 50, (3, 7))
    with torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    embeddings = model.get_input_embeddings()(ids[:2]).detach().requires_grad_(True)
    model(inputs_embeds=embeddings).logits.sum().backward()
    assert counter.as_dict() == {
        "forward_rows": 3 + 2,
        "forward_positions": 3 * 7 + 2 * 7,
        "gradient_rows": 2,
        "gradient_positions": 2 * 7,
    }


def test_the_audit_layer_by_layer_path_counts_as_one_pass_like_the_model_call(model) -> None:
    counter = PassCounter()
    counter.attach(model)
    ids = torch.randint(5, 50, (4, 6))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
        logits = adapter_for("bert").forward_logits(model, mask, input_ids=ids, token_type_ids=torch.zeros_like(ids))
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    assert counter.as_dict()["forward_rows"] == 2 * 4
    assert counter.as_dict()["forward_positions"] == 2 * 4 * 6


def test_differences_give_the_largest_gap_per_quantity_over_shared_keys() -> None:
    ours = {**flatten("scores", "a", [0.1, 0.2, 0.3]), ("tau", "a"): 0.5, ("tau", "b"): math.nan, ("only ours", "a"): 1}
    theirs = {**flatten("scores", "a", [0.1, 0.25, 0.3]), ("tau", "a"): 0.4, ("tau", "b"): math.nan, ("tau", "c"): 2}
    result = {d.quantity: d for d in differences(ours, theirs)}
    assert result["scores"].compared == 3 and result["scores"].largest == pytest.approx(0.05)
    assert result["tau"].compared == 2 and result["tau"].largest == pytest.approx(0.1)  # NaN on both sides agrees
    assert result["tau"].only_one_side == 1
    assert result["only ours"].compared == 0 and math.isnan(result["only ours"].largest)


def test_a_number_against_nan_is_infinitely_far() -> None:
    (difference,) = differences({("p", 1): 0.5}, {("p", 1): math.nan})
    assert difference.largest == math.inf
