"""Auditing the audit: sanity checks, imported explanations, and the literature beside the numbers.

Reference consistency and the all-pairs matrix are tested with the verdict (tests/verdict)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tasks.config import AuditConfig, ExecutionSettings, InterventionOptions, MethodOptions
from tasks.errors import AuditError
from tasks.evaluate.sanity import randomised_models, sanity_rows
from tasks.explain import registry as method_registry
from tasks.explain.imported import align, attach, export_rows, read_explanations, write_rows
from tasks.explain.registry import METHODS, MethodSpec
from tasks.pipeline.batch import audit_batch
from tasks.records import MethodFamily
from tasks.report.literature import RunNumbers, check_findings, load_findings
from tasks.store import batch_frames
from tests.conftest import TEXTS, encode

NO_INTERVENTIONS = InterventionOptions(interventions=("none",))


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


# --- imported explanations ---------------------------------------------------------------------


@pytest.fixture
def exported(tiny_bundle, examples, tmp_path) -> Path:
    """A run's token scores, exported, with rollout renamed as if it came from another tool."""
    options = MethodOptions(methods=("attention_last", "rollout"))
    result = audit_batch(tiny_bundle, examples, options, NO_INTERVENTIONS, ExecutionSettings())
    frames = batch_frames("run", result, tiny_bundle.labels)
    rows = export_rows(frames["tokens"], frames["token_scores"])
    rows = rows[rows["method"] == "rollout"].assign(method="vendor_rollout")
    return write_rows(rows, tmp_path / "explanations.jsonl")


def test_imported_explanations_round_trip_through_export(exported, tiny_bundle, examples):
    frame = read_explanations(exported)
    imported = attach(examples, align(frame, examples))
    context = __import__("tasks.explain.passes", fromlist=["BatchContext"]).BatchContext(tiny_bundle, examples)
    rollout = METHODS["rollout"].compute(context, MethodOptions())
    for example, record in zip(imported, rollout, strict=True):
        np.testing.assert_allclose(example.imported["vendor_rollout"][example.content_mask], record.content_scores)


def test_character_spans_land_on_every_token_they_overlap(examples):
    example = examples[1]  # "terrible, boring and far too long"
    frame = pd.DataFrame({"example_id": ["1", "1"], "method": ["words", "words"], "score": [2.0, -1.0],
                          "char_start": [0, 10], "char_end": [9, 16]})  # fmt: skip
    scores = align(frame, examples)["1"]["words"]
    by_token = dict(zip(example.tokens, scores, strict=True))
    assert by_token["terrible"] == 2.0 and by_token[","] == 2.0 and by_token["boring"] == -1.0
    assert by_token["long"] == 0.0 and by_token["[CLS]"] == 0.0


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"example_id": ["nope"], "method": ["m"], "score": [1.0], "token_index": [1]}, "not in the audited corpus"),
        (
            {"example_id": ["1"], "method": ["m"], "score": [1.0], "char_start": [0], "char_end": [999]},
            "outside its text",
        ),
        ({"example_id": ["1"], "method": ["m"], "score": [1.0], "token_index": [1]}, "wrong length"),
        ({"example_id": ["1"], "method": ["m"], "score": [1.0], "token_index": [99]}, "token index 99"),
        ({"example_id": ["1"], "method": ["rollout"], "score": [1.0], "token_index": [1]}, "built-in method names"),
        ({"example_id": ["1"], "method": ["m"], "score": [1.0]}, "lacks token_index or char_start"),
        ({"example_id": ["1"], "method": ["m"], "token_index": [1]}, "lacks score"),
    ],
)
def test_misaligned_explanations_are_refused_with_the_documented_errors(rows, message, examples, tmp_path):
    path = write_rows(pd.DataFrame(rows), tmp_path / "bad.parquet")
    with pytest.raises(AuditError, match=message):
        align(read_explanations(path), examples)


def test_an_imported_explanation_is_audited_like_attention(exported, tiny_model_dir):
    from tasks.pipeline.plan import plan_run

    config = AuditConfig.model_validate(
        {
            "model": {"name_or_path": str(tiny_model_dir)},
            "data": {"dataset": "__texts__.jsonl"},
            "methods": {"methods": ["rollout", "leave_one_out", "random"], "explanations": str(exported)},
            "interventions": {"interventions": ["none"]},
        }
    )
    dataset = exported.parent / "__texts__.jsonl"
    dataset.write_text("\n".join(json.dumps({"text": t, "label": 0}) for t in TEXTS))
    config = config.model_copy(update={"data": config.data.model_copy(update={"dataset": str(dataset)})})
    plan = plan_run(config)
    assert plan.methods == ("rollout", "leave_one_out", "random", "vendor_rollout")
    assert plan.manifest["explanations"]["methods"] == ["vendor_rollout"]
    from tasks.model.loading import load_model

    result = audit_batch(load_model(config.model), list(plan.examples), config.methods, config.interventions,
                         config.execution)  # fmt: skip
    vendor = [m for m in result.metrics if m.method == "vendor_rollout"]
    assert {m.metric for m in vendor} >= {"aopc_comprehensiveness", "taucorr_loo", "kendall_tau"}
    tau = [m.value for m in vendor if m.metric == "kendall_tau" and m.reference == "leave_one_out"]
    rollout_tau = [m.value for m in result.metrics if m.method == "rollout" and m.metric == "kendall_tau"
                   and m.reference == "leave_one_out"]  # fmt: skip
    np.testing.assert_allclose(tau, rollout_tau)


# --- the literature ------------------------------------------------------------------------------


def test_every_finding_has_a_source_and_a_known_check():
    findings = load_findings()
    assert len(findings) >= 6
    assert all(f["citation"] and f["statement"] for f in findings)
    outcomes = check_findings(RunNumbers(pd.DataFrame(columns=["metric", "method", "reference", "example_id", "value"]),
                                         pd.DataFrame(), ()))  # fmt: skip
    assert {o.status for o in outcomes} == {"not measured"}, "nothing may be claimed without its measurement"


def test_findings_are_judged_on_the_runs_numbers():
    rows = []
    for example in ("a", "b"):
        rows += [
            {"example_id": example, "method": "attention_last", "reference": "saliency", "metric": "spearman_rho",
             "value": 0.1},
            {"example_id": example, "method": "attention_norm", "reference": "saliency", "metric": "spearman_rho",
             "value": 0.6},
        ]  # fmt: skip
    metrics = pd.DataFrame(rows)
    interventions = pd.DataFrame(
        {"example_id": ["a", "a", "b", "b"], "intervention": "top_vs_random_erasure", "layer": 5, "head": None,
         "statistic": ["top_flip", "random_flip", "top_flip", "random_flip"], "value": [0.0, 0.0, 1.0, 0.0]}
    )  # fmt: skip
    numbers = RunNumbers(metrics, interventions, ("attention_last", "attention_norm", "saliency"))
    findings = {f["id"]: f for f in load_findings()}
    norm = check_findings(numbers, [findings["norm-based-attention-agrees-better"]])[0]
    flips = check_findings(numbers, [findings["erasing-the-top-token-rarely-flips"]])[0]
    weak = check_findings(numbers, [findings["attention-gradient-correlation-is-weak"]])[0]
    assert norm.status == "reproduces" and "attention_norm 0.60" in norm.evidence
    assert flips.status == "does not reproduce" and "50.0 %" in flips.evidence
    assert weak.status == "not measured" and "rollout" in weak.evidence
    assert not math.isnan(numbers.mean_agreement("saliency", "attention_norm", "spearman_rho"))


def test_sanity_copies_do_not_share_parameters_with_the_audited_model(tiny_bundle):
    audited = {p.data_ptr() for p in tiny_bundle.model.parameters()}
    for _, label, randomised in randomised_models(tiny_bundle, seed=3):
        shared = audited & {p.data_ptr() for p in randomised.model.parameters()}
        assert not shared, f"the {label} copy shares {len(shared)} tensors with the audited model"
