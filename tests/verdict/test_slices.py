"""Slices, verdict tables and the all-pairs matrix, with constructed end-to-end cases."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from tasks.config import ExecutionSettings, InterventionOptions, MethodOptions, VerdictOptions
from tasks.data.builtin import BUILTIN_CORPORA
from tasks.data.encoding import encode_corpus
from tasks.explain import registry as method_registry
from tasks.explain.baseline import random_scores
from tasks.explain.perturbation import leave_one_out
from tasks.explain.registry import METHODS, MethodSpec
from tasks.pipeline.batch import audit_batch
from tasks.records import MethodFamily
from tasks.store import batch_frames
from tasks.verdict.evidence import example_evidence, example_verdicts
from tasks.verdict.slices import agreement_matrix, slice_verdicts, slices

OPTIONS = VerdictOptions()
NO_INTERVENTIONS = InterventionOptions(interventions=("none",))


def examples_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "example_id": ["a", "b", "c", "d"],
            "label": [0, 1, 1, None],
            "label_name": ["neg", "pos", "pos", None],
            "predicted": [0, 0, 1, 1],
            "predicted_name": ["neg", "neg", "pos", "pos"],
            "confidence": [0.55, 0.7, 0.99, 0.9],
            "n_content_tokens": [5, 12, 25, 60],
        }
    )


def test_slices_cover_classes_correctness_confidence_and_length():
    found = {key: sorted(members) for key, members in slices(examples_frame(), OPTIONS).items()}
    assert found[("overall", "all examples")] == ["a", "b", "c", "d"]
    assert found[("predicted class", "neg")] == ["a", "b"]
    assert found[("true class", "pos")] == ["b", "c"]
    assert found[("correctness", "misclassified")] == ["b"]
    assert found[("correctness", "correct")] == ["a", "c"]
    assert found[("confidence", "p below 0.6")] == ["a"]
    assert found[("confidence", "p 0.6 to 0.8")] == ["b"]
    assert found[("confidence", "p 0.95 or above")] == ["c"]
    assert found[("length", "fewer than 10 tokens")] == ["a"]
    assert found[("length", "10 to 19 tokens")] == ["b"]
    assert found[("length", "40 tokens or more")] == ["d"]


def test_slice_definitions_are_configurable():
    options = VerdictOptions(confidence_bins=(0.8,), length_bins=(20,))
    found = {key for key in slices(examples_frame(), options)}
    assert ("confidence", "p below 0.8") in found and ("length", "20 tokens or more") in found


def test_the_all_pairs_matrix_holds_the_mean_of_every_pair(tiny_bundle, examples):
    options = MethodOptions(methods=("attention_last", "rollout", "saliency", "leave_one_out"))
    result = audit_batch(tiny_bundle, examples, options, NO_INTERVENTIONS, ExecutionSettings())
    frames = batch_frames("run", result, tiny_bundle.labels)
    matrix = agreement_matrix(frames["metrics"], frames["examples"], VerdictOptions(min_examples=2))
    overall = matrix[(matrix["slice"] == "overall") & (matrix["statistic"] == "kendall_tau")]
    assert len(overall) == 6  # every unordered pair of four methods, once
    metrics = frames["metrics"]
    pair = metrics[(metrics["metric"] == "kendall_tau") & (metrics["method"] == "rollout")
                   & (metrics["reference"] == "saliency")]  # fmt: skip
    row = overall[(overall["method"] == "rollout") & (overall["other"] == "saliency")].iloc[0]
    assert row["mean"] == pytest.approx(pair["value"].mean()) and row["low"] <= row["mean"] <= row["high"]


# --- constructed end to end: an explanation equal to leave-one-out, and a random one ---------------


def copy_of_leave_one_out(context, options):
    return [dataclasses.replace(r, method="loo_copy") for r in leave_one_out(context, options)]


def random_explanation(context, options):
    return context.records("noise", [random_scores(e, 99, 0) for e in context.examples])


@pytest.fixture
def constructed_methods(monkeypatch):
    extra = {
        "loo_copy": MethodSpec("loo_copy", MethodFamily.ATTENTION, copy_of_leave_one_out, True, "LOO copy", "-", "-"),
        "noise": MethodSpec("noise", MethodFamily.ATTENTION, random_explanation, False, "Noise", "-", "-"),
    }
    monkeypatch.setattr(method_registry, "METHODS", {**METHODS, **extra})
    monkeypatch.setitem(METHODS, "loo_copy", extra["loo_copy"])
    monkeypatch.setitem(METHODS, "noise", extra["noise"])
    return ("loo_copy", "noise", "leave_one_out", "random")


def test_an_explanation_equal_to_leave_one_out_is_faithful_and_a_random_one_is_not(tiny_bundle, constructed_methods):
    frame = BUILTIN_CORPORA["movie-snippets"].read("test").head(40)
    frame = frame.assign(label=None)
    examples = encode_corpus(frame, tiny_bundle.tokenizer, tiny_bundle.labels, 64)
    options = MethodOptions.model_construct(**{**MethodOptions().model_dump(), "methods": constructed_methods})
    result = audit_batch(tiny_bundle, examples, options, NO_INTERVENTIONS, ExecutionSettings())
    frames = batch_frames("run", result, tiny_bundle.labels)
    verdict_options = VerdictOptions(references=("leave_one_out",))
    evidence = example_evidence(frames["metrics"], pd.DataFrame(), constructed_methods, verdict_options)
    overall = slice_verdicts(evidence, frames["examples"], verdict_options)
    overall = overall[overall["slice"] == "overall"].set_index("method")
    assert overall.loc["loo_copy", "verdict"] == "faithful"
    assert overall.loc["loo_copy", "agreement_mean"] == pytest.approx(1.0)
    assert overall.loc["noise", "verdict"] == "not faithful"
    per_example = example_verdicts(evidence, frames["examples"], verdict_options)
    assert set(per_example["method"]) == {"loo_copy", "noise"}
    assert np.isclose(per_example.loc[per_example["method"] == "loo_copy", "agreement"], 1.0).all()
