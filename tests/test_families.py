"""Every family whose structure an adapter describes: BERT (and MiniLM), RoBERTa, DistilBERT.

Tiny random models of each family are built from their configs in code; the methods and interventions
that need the layer structure must give the same numbers as a direct computation on each of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from tasks.config import InterventionOptions, MethodOptions, ModelSpec
from tasks.interventions import head_masking, tvd
from tasks.methods.attention import attention_norm
from tasks.models import ModelBundle, load_model
from tasks.passes import BatchContext
from tasks.presets import encoder_path
from tests.conftest import TEXTS, encode

SIZES = {"hidden": 32, "layers": 2, "heads": 4, "intermediate": 64}


def tiny(family: str, vocabulary: int, pad: int) -> torch.nn.Module:
    torch.manual_seed(0)
    common = {"vocab_size": vocabulary, "num_labels": 2, "initializer_range": 0.2, "pad_token_id": pad}
    if family == "bert":
        return BertForSequenceClassification(
            BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, **common)
        )
    if family == "roberta":
        return RobertaForSequenceClassification(
            RobertaConfig(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=64,
                max_position_embeddings=130,
                **common,
            )
        )
    return DistilBertForSequenceClassification(DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, **common))


@pytest.fixture(scope="module", params=["bert", "roberta", "distilbert"])
def bundle(request, tmp_path_factory) -> ModelBundle:
    tokenizer = AutoTokenizer.from_pretrained(encoder_path())
    folder: Path = tmp_path_factory.mktemp(request.param)
    tiny(request.param, tokenizer.vocab_size, tokenizer.pad_token_id).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return load_model(ModelSpec(name_or_path=str(folder)))


def layer_modules(bundle: ModelBundle):
    return list(bundle.adapter.layer_modules(bundle.model))


def test_the_adapter_matches_the_family(bundle):
    assert bundle.model.config.model_type in bundle.adapter.model_types
    assert bundle.adapter.supports_interventions
    assert len(layer_modules(bundle)) == 2


@pytest.mark.parametrize("start", [0, 1])
def test_running_the_top_layers_from_cached_states_reproduces_the_output(bundle, start):
    context = BatchContext(bundle, encode(bundle, TEXTS), need_gradients=False)
    rows = np.arange(len(context.examples))
    probabilities = context.intervened_probabilities(rows, start, lambda members: lambda layer, p: p)
    original = torch.softmax(context.model_pass.logits.double(), dim=-1)
    np.testing.assert_allclose(probabilities.numpy(), original.numpy(), atol=1e-6)


def test_attention_norm_matches_a_head_by_head_computation(bundle):
    examples = encode(bundle, TEXTS)
    context = BatchContext(bundle, examples, need_gradients=False)
    scores = attention_norm(context, MethodOptions())
    value, output = bundle.adapter.value_output(bundle.model, 1)
    size = SIZES["hidden"] // SIZES["heads"]
    for row, example in enumerate(examples):
        with torch.no_grad():
            out = bundle.model(
                input_ids=torch.from_numpy(example.input_ids)[None], output_attentions=True, output_hidden_states=True
            )
            values = value(out.hidden_states[1][0])
            total = torch.zeros(example.length, SIZES["hidden"])
            for head in range(SIZES["heads"]):
                part = slice(head * size, (head + 1) * size)
                total += out.attentions[1][0, head, 0][:, None] * (values[:, part] @ output.weight[:, part].T)
        np.testing.assert_allclose(scores[row].scores, total.norm(dim=-1).numpy(), rtol=1e-4, atol=1e-6)


def test_masking_a_head_equals_silencing_its_value_projection(bundle):
    import copy

    examples = encode(bundle, TEXTS)
    context = BatchContext(bundle, examples, need_gradients=False)
    values = head_masking(context, InterventionOptions())
    layer, head = 0, 1
    ours = [v.value for v in values if v.layer == layer and v.head == head and v.statistic == "tvd"]
    model = copy.deepcopy(bundle.model)
    projection, _ = bundle.adapter.value_output(model, layer)
    size = SIZES["hidden"] // SIZES["heads"]
    with torch.no_grad():
        projection.weight[head * size : (head + 1) * size] = 0
        projection.bias[head * size : (head + 1) * size] = 0
        logits = model(input_ids=context.input_ids, attention_mask=context.attention_mask).logits
    expected = tvd(torch.softmax(context.model_pass.logits.double(), -1), torch.softmax(logits.double(), -1))
    np.testing.assert_allclose(ours, expected.numpy(), atol=1e-6)


def test_the_gradient_pass_through_input_embeddings_gives_the_same_output(bundle):
    examples = encode(bundle, TEXTS)
    with_gradients = BatchContext(bundle, examples, need_gradients=True).model_pass
    without = BatchContext(bundle, examples, need_gradients=False).model_pass
    torch.testing.assert_close(with_gradients.logits, without.logits, atol=1e-5, rtol=1e-5)


def test_the_layer_by_layer_forward_with_the_last_layer_at_c_only_gives_the_models_logits(bundle):
    context = BatchContext(bundle, encode(bundle, TEXTS), need_gradients=False)
    inputs = {"input_ids": context.input_ids, "attention_mask": context.attention_mask}
    with torch.no_grad():
        expected = bundle.model(**inputs).logits
        ours = bundle.adapter.forward_logits(
            bundle.model,
            context.attention_mask,
            input_ids=context.input_ids,
            token_type_ids=context._token_types().get("token_type_ids"),
        )
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
