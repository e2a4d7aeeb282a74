"""Explanations computed elsewhere: imported by token index or character span, exported in the same
schema, audited like attention."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.config import AuditConfig, ExecutionSettings, InterventionOptions, MethodOptions
from tasks.errors import AuditError
from tasks.explain.imported import align, attach, export_rows, read_explanations, write_rows
from tasks.explain.registry import METHODS
from tasks.pipeline.batch import audit_batch
from tasks.store import batch_frames
from tests.conftest import TEXTS

NO_INTERVENTIONS = InterventionOptions(interventions=("none",))


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
