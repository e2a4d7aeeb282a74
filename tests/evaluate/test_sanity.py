"""The cascade sanity check (Adebayo et al. 2018): explanations must change when the model is randomised."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tasks.config import MethodOptions
from tasks.evaluate.sanity import compared, randomised_models, sample, sanity_rows, stage_model, stage_scores, stages
from tasks.explain import registry as method_registry
from tasks.explain.registry import METHODS, MethodSpec
from tasks.records import MethodFamily
from tests.conftest import TEXTS, encode


def position_scores(context, options):
    """An 'explanation' that ignores the model: later tokens score higher."""
    return context.records("position", [np.arange(e.length, dtype=float) * e.content_mask for e in context.examples])


@pytest.fixture
def with_position_method(monkeypatch):
    spec = MethodSpec("position", MethodFamily.ATTENTION, position_scores, False, "Token position", "-", "-")
    monkeypatch.setitem(METHODS, "position", spec)
    monkeypatch.setattr(method_registry, "METHODS", METHODS)
    return spec


# --- sanity checks -------------------------------------------------------------------------------


def test_the_cascade_randomises_the_head_then_each_layer_from_the_top(tiny_bundle):
    stages = [(stage, label) for stage, label, _ in randomised_models(tiny_bundle, seed=0)]
    assert stages == [(0, "classification head"), (1, "head + top 1 layer"), (2, "head + top 2 layers")]
    original = tiny_bundle.model.bert.encoder.layer[0].attention.self.query.weight.clone()
    *_, (_, _, deepest) = randomised_models(tiny_bundle, seed=0)
    assert torch.equal(tiny_bundle.model.bert.encoder.layer[0].attention.self.query.weight, original)
    assert not torch.equal(deepest.model.bert.encoder.layer[0].attention.self.query.weight, original)


def test_an_explanation_that_ignores_the_model_fails_and_a_gradient_changes(tiny_bundle, with_position_method):
    examples = encode(tiny_bundle, TEXTS)
    rows = sanity_rows(tiny_bundle, examples, ("position", "saliency", "random"), MethodOptions(), 0, 4096)
    last = rows[rows["stage"] == rows["stage"].max()].groupby("method")["spearman_absolute"].mean()
    assert last["position"] == pytest.approx(1.0) and last["random"] == pytest.approx(1.0)
    assert last["saliency"] < 0.9
    head_only = rows[(rows["stage"] == 0) & (rows["method"] == "position")]["spearman"]
    assert (head_only == 1.0).all()
    assert set(rows["stage"]) == {0, 1, 2} and len(rows) == 3 * 3 * len(examples)


def test_sanity_copies_do_not_share_parameters_with_the_audited_model(tiny_bundle):
    audited = {p.data_ptr() for p in tiny_bundle.model.parameters()}
    for _, label, randomised in randomised_models(tiny_bundle, seed=3):
        shared = audited & {p.data_ptr() for p in randomised.model.parameters()}
        assert not shared, f"the {label} copy shares {len(shared)} tensors with the audited model"


# --- the sample, sized by tokens --------------------------------------------------------------------


@pytest.mark.parametrize("budget", [1, 20, 40, 10_000])
def test_the_sample_takes_the_seeded_order_until_its_tokens_reach_the_budget(tiny_bundle, budget):
    examples = encode(tiny_bundle, TEXTS)
    order = sample(examples, None, 7)
    chosen = sample(examples, None, 7, tokens=budget)
    assert chosen == order[: len(chosen)]  # a prefix of the seeded order: a larger budget keeps these
    lengths = [example.length for example in chosen]
    if len(chosen) < len(examples):
        assert sum(lengths[:-1]) < budget <= sum(lengths)  # the example that reaches the budget is taken
    else:
        assert sum(lengths[:-1]) < budget
    assert sample(examples, 2, 7, tokens=budget) == chosen[:2]  # the example cap still holds


def test_a_batched_cascade_gives_the_rows_of_one_batch_and_reports_every_step(tiny_bundle):
    examples = encode(tiny_bundle, TEXTS)
    methods = ("saliency", "leave_one_out")
    whole = sanity_rows(tiny_bundle, examples, methods, MethodOptions(), 0, 4096)
    told: list[tuple[int, int]] = []
    batched = sanity_rows(
        tiny_bundle, examples, methods, MethodOptions(), 0, 4096, batch_size=2,
        progress=lambda done, total, what: told.append((done, total)),
    )  # fmt: skip
    key = ["example_id", "method", "stage"]
    pd.testing.assert_frame_equal(
        batched.sort_values(key).reset_index(drop=True), whole.sort_values(key).reset_index(drop=True), atol=1e-6
    )
    steps = 3 * 4  # 3 batches of at most 2 examples; the original model, the head and each of the 2 layers
    assert told == [(done, steps) for done in range(1, steps + 1)]


def test_a_stage_rebuilt_on_its_own_has_the_weights_of_the_cascade_at_that_stage(tiny_bundle):
    """So the stages can run in any order, each in whichever worker takes it."""
    cascade = [
        (stage, label, {name: tensor.clone() for name, tensor in randomised.model.state_dict().items()})
        for stage, label, randomised in randomised_models(tiny_bundle, seed=5)
    ]
    for stage, label, weights in reversed(cascade):
        alone_label, alone = stage_model(tiny_bundle, 5, stage)
        assert alone_label == label
        assert all(torch.equal(alone.model.state_dict()[name], tensor) for name, tensor in weights.items())


def test_the_stages_computed_apart_and_in_any_order_give_the_rows_of_the_whole_check(tiny_bundle):
    examples = encode(tiny_bundle, TEXTS)
    methods = ("saliency", "attention_last", "random")
    apart = {
        stage: stage_scores(tiny_bundle, examples, methods, MethodOptions(), 0, stage, 4096, batch_size=2)
        for stage in reversed(stages(tiny_bundle))
    }
    whole = sanity_rows(tiny_bundle, examples, methods, MethodOptions(), 0, 4096)
    assert stages(tiny_bundle) == [None, 0, 1, 2]
    assert apart[None][0] == "original model" and apart[2][0] == "head + top 2 layers"
    key = ["stage", "method", "example_id"]
    pd.testing.assert_frame_equal(
        compared(apart).sort_values(key).reset_index(drop=True),
        whole.sort_values(key).reset_index(drop=True),
        atol=1e-6,
    )
