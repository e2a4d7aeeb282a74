"""Run identity and the checks made before any work."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tasks.config import AuditConfig
from tasks.errors import AuditError
from tasks.model.adapters import adapter_for
from tasks.model.machine import cpu_description
from tasks.pipeline import plan
from tasks.pipeline.plan import check_layers, not_applicable, plan_run, without
from tasks.verdict.resolve import resolve
from tests.conftest import SAMPLES

SAMPLE = SAMPLES / "handmade-reviews.csv"


def config_for(model_dir: Path, **sections) -> AuditConfig:
    """A resolved configuration, as ``plan_run`` hands it to its steps."""
    return resolve(
        AuditConfig.model_validate(
            {
                "model": {"name_or_path": str(model_dir)},
                "data": {"dataset": str(SAMPLE), "id_column": "id", "label_column": None},
                **sections,
            }
        )
    )


def test_the_run_id_depends_on_what_decides_the_numbers_only(tiny_model_dir):
    base = plan_run(config_for(tiny_model_dir))
    assert plan_run(config_for(tiny_model_dir, execution={"batch_size": 3})).run_id == base.run_id
    assert (
        plan_run(config_for(tiny_model_dir, methods={"ig_steps": 9, "ig_rule": "gausslegendre"})).run_id != base.run_id
    )
    assert plan_run(config_for(tiny_model_dir, interventions={"permutation_draws": 9})).run_id != base.run_id
    assert base.manifest["model"]["fingerprint"] and base.manifest["data"]["fingerprint"]
    assert base.manifest["platform"].endswith(cpu_description())  # a fact of the run, not of its identity
    assert [e.example_id for e in base.examples] == [f"h{i:02d}" for i in range(1, 13)]


def test_the_run_id_changes_with_the_code_that_computes_the_numbers(tiny_model_dir, monkeypatch):
    base = plan_run(config_for(tiny_model_dir))
    assert plan_run(config_for(tiny_model_dir)).run_id == base.run_id
    assert base.manifest["versions"]["attention-audit"].endswith(f"(source {plan.source_fingerprint()})")
    monkeypatch.setattr(plan, "source_fingerprint", lambda: "edited")
    assert plan_run(config_for(tiny_model_dir)).run_id != base.run_id


def test_the_source_fingerprint_covers_every_python_file_by_path_and_content(tmp_path):
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "method.py").write_text("SCALE = 1\n")
    (tmp_path / "notes.txt").write_text("not code")
    first = plan.source_fingerprint(tmp_path)
    (tmp_path / "notes.txt").write_text("edited, still not code")
    assert plan.source_fingerprint(tmp_path) == first
    (tmp_path / "stage" / "method.py").write_text("SCALE = 2\n")
    edited = plan.source_fingerprint(tmp_path)
    assert edited != first
    (tmp_path / "stage" / "method.py").rename(tmp_path / "stage" / "renamed.py")
    assert plan.source_fingerprint(tmp_path) not in (first, edited)
    assert plan.source_fingerprint() == plan.source_fingerprint(Path(plan.__file__).parents[1])


def test_batches_cover_only_the_examples_not_stored_yet(tiny_model_dir):
    plan = plan_run(config_for(tiny_model_dir))
    batches = plan.batches({"h01", "h02"}, batch_size=4, token_budget=8192)
    remaining = sorted(e.example_id for batch in batches for e in batch)
    assert remaining == [f"h{i:02d}" for i in range(3, 13)]
    assert all(len(batch) <= 4 for batch in batches)


def test_batches_come_longest_first_so_that_the_last_ones_a_worker_takes_are_the_shortest(tiny_model_dir):
    plan = plan_run(config_for(tiny_model_dir))
    batches = plan.batches(set(), batch_size=2, token_budget=8192)
    longest = [max(example.length for example in batch) for batch in batches]
    assert len(batches) == 6
    assert longest == sorted(longest, reverse=True)
    assert min(e.length for e in batches[0]) >= max(e.length for e in batches[1])  # whole batches, sorted


def test_interventions_a_family_cannot_support_are_recorded_and_left_out(tiny_bundle, tiny_model_dir):
    bundle = replace(tiny_bundle, adapter=adapter_for("deberta-v2"))
    config = config_for(
        tiny_model_dir,
        methods={"methods": ["rollout", "leave_one_out"]},  # methods DeBERTa supports: the interventions alone
        interventions={"interventions": ["uniform", "head_masking"]},
    )
    skipped = not_applicable(config, bundle)
    assert [(item.kind, item.name) for item in skipped] == [
        ("intervention", "uniform"),
        ("intervention", "head_masking"),
    ]
    assert all("disentangled attention" in item.reason for item in skipped)
    effective = without(config, skipped)
    assert effective.interventions.interventions == ()
    assert AuditConfig.model_validate(effective.model_dump(mode="json")).interventions.interventions == ()
    assert effective.methods.methods == config.methods.methods
    assert not_applicable(config, tiny_bundle) == ()


def test_value_zeroing_on_a_family_whose_attention_cannot_be_edited_is_a_not_applicable_row(
    tiny_bundle, tiny_model_dir
):
    bundle = replace(tiny_bundle, adapter=adapter_for("deberta-v2"))
    config = config_for(
        tiny_model_dir,
        methods={"methods": ["rollout", "value_zeroing", "leave_one_out"]},
        interventions={"interventions": ["uniform"]},
    )
    skipped = not_applicable(config, bundle)
    assert [(item.kind, item.name) for item in skipped] == [("method", "value_zeroing"), ("intervention", "uniform")]
    assert all("disentangled attention" in item.reason for item in skipped)
    assert without(config, skipped).methods.methods == ("rollout", "leave_one_out")
    assert not_applicable(config, tiny_bundle) == ()


def test_an_intervention_layer_outside_the_model_is_refused(tiny_bundle, tiny_model_dir):
    with pytest.raises(AuditError, match="names layer 7, but the model has 2 layers"):
        check_layers(config_for(tiny_model_dir, interventions={"layers": [7]}), tiny_bundle)
    check_layers(config_for(tiny_model_dir, interventions={"layers": [-2]}), tiny_bundle)


def test_a_target_precision_sizes_the_sample_before_the_run_and_records_it(tiny_model_dir):
    """±0.5 needs (1.96/0.5)² = 15.4 examples under σ ≤ 1, and a judged slice 20 here: the sample is capped
    at 10 by --limit, which the manifest records with the half-width 10 examples allow (1.96/√10 = 0.62)."""
    sized = plan_run(config_for(tiny_model_dir, data={**sample_data(), "target_precision": 0.5, "limit": 10},
                                verdict={"min_examples": 20}))  # fmt: skip
    limited = plan_run(config_for(tiny_model_dir, data={**sample_data(), "limit": 10}))

    assert len(sized.examples) == 10 and sized.config.data.limit == 10
    assert sized.run_id == limited.run_id, "--target-precision decides the numbers only through the limit it sets"
    record = sized.manifest["data"]["sample"]
    assert (record["needed"], record["examples"], record["target_precision"]) == (20, 10, 0.5)
    assert record["half_width_bound"] == pytest.approx(1.96 / 10**0.5)
    assert "sample" not in limited.manifest["data"]
    whole = plan_run(config_for(tiny_model_dir, data={**sample_data(), "target_precision": 0.9}))
    assert len(whole.examples) == 12 and whole.manifest["data"]["sample"]["needed"] == 20


def sample_data() -> dict[str, object]:
    return {"dataset": str(SAMPLE), "id_column": "id", "label_column": None}
