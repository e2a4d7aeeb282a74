"""The verdict: evidence thresholds, the combination rule, slices, and constructed end-to-end cases."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from tasks.config import ExecutionSettings, InterventionOptions, MethodOptions, VerdictOptions
from tasks.data.builtin import BUILTIN_CORPORA
from tasks.data.encoding import encode_corpus
from tasks.evaluate.statistics import Estimate
from tasks.explain import registry as method_registry
from tasks.explain.baseline import random_scores
from tasks.explain.perturbation import leave_one_out
from tasks.explain.registry import METHODS, MethodSpec
from tasks.pipeline.batch import audit_batch
from tasks.records import MethodFamily
from tasks.store import batch_frames
from tasks.verdict.rules import (
    classify_agreement,
    classify_faithfulness,
    classify_interventions,
    example_evidence,
    example_verdicts,
    judge,
    slice_verdicts,
    slices,
)

OPTIONS = VerdictOptions()


def interval(mean: float, low: float, high: float, n: int = 100) -> Estimate:
    return Estimate(mean, low, high, n)


NONE = Estimate(float("nan"), float("nan"), float("nan"), 0)


@pytest.mark.parametrize(
    ("estimate", "evidence"),
    [
        (interval(0.4, 0.3, 0.5), "supports"),
        (interval(0.1, 0.05, 0.15), "contradicts"),
        (interval(0.2, 0.15, 0.25), "unclear"),
        (NONE, "unclear"),
    ],
)
def test_agreement_is_judged_by_where_its_interval_lies(estimate, evidence):
    assert classify_agreement(estimate, OPTIONS) == evidence


@pytest.mark.parametrize(
    ("comprehensiveness", "sufficiency", "evidence"),
    [
        (interval(0.1, 0.08, 0.12), interval(-0.1, -0.12, -0.08), "supports"),
        (interval(0.1, 0.08, 0.12), interval(0.0, -0.02, 0.02), "unclear"),
        (interval(0.005, -0.01, 0.015), interval(-0.1, -0.12, -0.08), "contradicts"),
        (interval(0.03, -0.01, 0.07), interval(-0.1, -0.12, -0.08), "unclear"),
    ],
)
def test_faithfulness_against_random_needs_both_measures_and_a_margin(comprehensiveness, sufficiency, evidence):
    assert classify_faithfulness(comprehensiveness, sufficiency, OPTIONS) == evidence


@pytest.mark.parametrize(
    ("erasure", "sensitivity", "evidence"),
    [
        (interval(0.05, 0.03, 0.07), interval(0.2, 0.15, 0.25), "supports"),
        (interval(-0.01, -0.02, 0.0), interval(0.2, 0.15, 0.25), "contradicts"),
        (interval(0.05, 0.03, 0.07), interval(0.02, 0.01, 0.03), "contradicts"),
        (interval(0.05, -0.01, 0.1), interval(0.2, 0.15, 0.25), "unclear"),
        (NONE, NONE, "unclear"),
    ],
)
def test_interventions_support_only_when_the_output_follows_the_attention(erasure, sensitivity, evidence):
    assert classify_interventions(erasure, sensitivity, OPTIONS) == evidence


SUPPORTING = {
    "agreement": interval(0.5, 0.45, 0.55),
    "comprehensiveness": interval(0.1, 0.08, 0.12),
    "sufficiency": interval(-0.1, -0.12, -0.08),
    "erasure": interval(0.05, 0.03, 0.07),
    "sensitivity": interval(0.2, 0.15, 0.25),
}


def test_all_evidence_in_favour_is_faithful():
    assert judge(SUPPORTING, OPTIONS, n=100).verdict == "faithful"


def test_removal_no_better_than_random_is_not_faithful_whatever_else_says():
    evidence = {**SUPPORTING, "comprehensiveness": interval(0.0, -0.01, 0.01)}
    judgement = judge(evidence, OPTIONS, n=100)
    assert judgement.verdict == "not faithful"
    assert "removal against random" in judgement.reason and "contradicts" in judgement.reason


def test_disagreement_with_references_and_insensitive_output_is_not_faithful():
    evidence = {
        **SUPPORTING,
        "agreement": interval(0.05, 0.0, 0.1),
        "sensitivity": interval(0.01, 0.0, 0.02),
        "comprehensiveness": interval(0.03, 0.0, 0.06),
    }
    assert judge(evidence, OPTIONS, n=100).verdict == "not faithful"


def test_conflicting_evidence_is_inconclusive_and_says_which():
    evidence = {**SUPPORTING, "agreement": interval(0.05, 0.0, 0.1)}
    judgement = judge(evidence, OPTIONS, n=100)
    assert judgement.verdict == "inconclusive"
    assert judgement.agreement == "contradicts" and judgement.faithfulness == "supports"


def test_too_few_examples_is_inconclusive_with_the_reason():
    judgement = judge(SUPPORTING, OPTIONS, n=5)
    assert judgement.verdict == "inconclusive"
    assert judgement.reason.startswith("too few examples (5; at least 20 needed)")


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
    result = audit_batch(
        tiny_bundle, examples, options, InterventionOptions(interventions=("none",)), ExecutionSettings()
    )
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
