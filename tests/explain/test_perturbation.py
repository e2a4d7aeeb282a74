"""Leave-one-out (Jain & Wallace 2019) and the properties it shares with the gradient references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from tasks.config import MethodOptions
from tasks.data.encoding import encode_corpus
from tasks.data.units import sentence_index, to_units, word_index
from tasks.explain.gradients import grad_x_input, integrated_gradients, saliency
from tasks.explain.passes import BatchContext
from tasks.explain.perturbation import leave_one_out, leave_one_out_inputs
from tasks.model.adapters import adapter_for
from tasks.model.bundle import ModelBundle
from tasks.model.presets import encoder_path
from tests.conftest import TEXTS, encode

OPTIONS = MethodOptions()


def probability(bundle: ModelBundle, ids: np.ndarray, target: int) -> float:
    with torch.inference_mode():
        logits = bundle.model(input_ids=torch.from_numpy(ids)[None]).logits
    return float(torch.softmax(logits.double(), dim=-1)[0, target])


def test_one_input_per_content_token_each_missing_exactly_that_token():
    content = np.array([False, True, True, False])
    masks = leave_one_out_inputs(content)
    assert [m.tolist() for m in masks] == [[True, False, True, True], [True, True, False, True]]


def test_one_input_per_content_unit_each_missing_every_token_of_that_unit():
    content = np.array([False, True, True, True, True, False])
    unit = np.array([0, 1, 1, 2, 2, 3])
    masks = leave_one_out_inputs(content, unit)
    assert [m.tolist() for m in masks] == [
        [True, False, False, True, True, True],
        [True, True, True, False, False, True],
    ]


ARTICLE = "Oil prices rallied sharply. Unbelievably, demand keeps growing! Analysts disagree."


@pytest.mark.parametrize(("units", "index"), [("word", word_index), ("sentence", sentence_index)])
def test_unit_leave_one_out_removes_each_unit_once_and_its_tokens_share_the_drop(tiny_bundle, units, index):
    frame = pd.DataFrame({"example_id": ["a"], "text": [ARTICLE], "label": None, "metadata": [{}]})
    [example] = encode_corpus(frame, tiny_bundle.tokenizer, ("a", "b", "c"), 64)
    unit = index(example)
    content_units = sorted(set(unit[example.content_mask].tolist()))
    context = BatchContext(tiny_bundle, [example], need_gradients=False)
    context.predictions()
    before = context.counter.forward_rows
    [record] = leave_one_out(context, MethodOptions(units=units))
    assert context.counter.forward_rows - before == len(content_units)  # n_units inputs, not n_tokens
    target = int(context.targets[0])
    full = probability(tiny_bundle, example.input_ids, target)
    per_unit = to_units(record, unit)
    for u in content_units:
        drop = full - probability(tiny_bundle, example.input_ids[unit != u], target)
        assert per_unit.scores[u] == pytest.approx(drop, abs=1e-5)  # the sum over the unit is its drop
        np.testing.assert_allclose(record.scores[unit == u], drop / np.count_nonzero(unit == u), atol=1e-5)
    assert np.all(record.scores[example.special_mask] == 0)


def test_leave_one_out_is_the_probability_drop_when_the_token_id_is_deleted(context: BatchContext, tiny_bundle):
    records = leave_one_out(context, OPTIONS)
    for row, example in enumerate(context.examples):
        target = int(context.targets[row])
        full = probability(tiny_bundle, example.input_ids, target)
        for position in np.flatnonzero(example.content_mask):
            without = probability(tiny_bundle, np.delete(example.input_ids, position), target)
            assert records[row].scores[position] == pytest.approx(full - without, abs=1e-5)
        assert np.all(records[row].scores[example.special_mask] == 0)


@pytest.mark.parametrize("removal", ["mask", "pad"])
def test_replacement_operators_keep_the_length_and_swap_in_the_token(tiny_bundle, examples, removal):
    context = BatchContext(tiny_bundle, examples, removal=removal, need_gradients=False)
    record = leave_one_out(context, OPTIONS)[0]
    example = examples[0]
    target = int(context.targets[0])
    replacement = tiny_bundle.tokenizer.mask_token_id if removal == "mask" else tiny_bundle.tokenizer.pad_token_id
    position = int(np.flatnonzero(example.content_mask)[0])
    replaced = example.input_ids.copy()
    replaced[position] = replacement
    expected = probability(tiny_bundle, example.input_ids, target) - probability(tiny_bundle, replaced, target)
    assert record.scores[position] == pytest.approx(expected, abs=1e-5)


@pytest.fixture(scope="module")
def cls_only_bundle() -> ModelBundle:
    """A classifier with no transformer layers: its output depends on the [CLS] token alone, so it
    provably ignores every content token."""
    tokenizer = AutoTokenizer.from_pretrained(encoder_path())
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=0,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=64,
        num_labels=2,
    )
    model = BertForSequenceClassification(config).eval()
    return ModelBundle(
        model=model, tokenizer=tokenizer, adapter=adapter_for("bert"), labels=("a", "b"), fingerprint="cls-only"
    )


def test_an_ignored_token_gets_zero_leave_one_out_and_zero_gradient_scores(cls_only_bundle):
    examples = encode(cls_only_bundle, TEXTS)
    context = BatchContext(cls_only_bundle, examples, need_gradients=True)
    for method in (leave_one_out, saliency, grad_x_input, integrated_gradients):
        for record in method(context, OPTIONS):
            np.testing.assert_array_equal(record.content_scores, 0.0)
