"""Scheduled audits: batch caching, artifacts, the gate, and comparing a run with the previous one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tasks import store
from tasks.config import AuditConfig
from tasks.verdict.gate import GateFailed, failed_checks, parse_check
from tests.conftest import SAMPLES

SAMPLE = SAMPLES / "handmade-reviews.csv"


def config_for(model: Path, folder: Path, **sections) -> AuditConfig:
    base = {
        "model": {"name_or_path": str(model)},
        "data": {"dataset": str(SAMPLE), "id_column": "id", "label_column": None},
        "methods": {"methods": ["attention_last", "rollout", "leave_one_out", "integrated_gradients", "random"],
                    "ig_steps": 8, "ig_rule": "gausslegendre", "random_draws": 2},
        "interventions": {"interventions": ["uniform", "top_vs_random_erasure", "permutation"],
                          "permutation_draws": 10, "erasure_draws": 3},
        "execution": {"batch_size": 4},
        "output": {"db": str(folder / "audit.duckdb"), "out_dir": str(folder), "pdf": False},
    }  # fmt: skip
    for section, values in sections.items():
        base[section] = {**base.get(section, {}), **values} if isinstance(values, dict) else values
    return AuditConfig.model_validate(base)


def verdict_rows(**overrides) -> pd.DataFrame:
    row = {"method": "rollout", "slice": "overall", "slice_value": "all examples", "verdict": "faithful",
           "agreement": "supports", "comprehensiveness_mean": 0.1, "comprehensiveness_low": 0.05,
           "comprehensiveness_high": 0.15, "agreement_mean": 0.3}  # fmt: skip
    other = {**row, "method": "attention_last", "verdict": "not faithful", "agreement": "contradicts",
             "comprehensiveness_mean": 0.0, "comprehensiveness_low": -0.01, "comprehensiveness_high": 0.01}  # fmt: skip
    return pd.DataFrame([{**row, **overrides}, other])


@pytest.mark.parametrize(
    ("checks", "failing"),
    [
        (("faithful:rollout",), []),
        (("faithful:any",), []),
        (("faithful:all",), ["faithful:all"]),
        (("beats-random:attention_last",), ["beats-random:attention_last"]),
        (("not-unfaithful:rollout", "agrees:attention_last"), ["agrees:attention_last"]),
        (("faithful:flow",), ["faithful:flow"]),
    ],
)
def test_gate_checks_on_the_overall_verdicts(checks, failing):
    failures = failed_checks(checks, verdict_rows())
    assert [failure.split(":", 2)[0] + ":" + failure.split(":", 2)[1] for failure in failures] == failing


def test_a_failing_check_names_the_numbers_behind_it():
    (failure,) = failed_checks(("faithful:attention_last",), verdict_rows())
    assert "attention_last is not faithful (AOPC gain +0.000 [-0.010, +0.010], τ 0.30)" in failure


def test_malformed_gate_checks_are_refused():
    with pytest.raises(ValueError, match="KIND:METHOD"):
        parse_check("faithfull:rollout")
    with pytest.raises(ValueError, match="KIND:METHOD"):
        parse_check("faithful")


@pytest.mark.slow
def test_a_re_audit_of_an_unchanged_model_and_data_recomputes_nothing(
    prefect_harness, tiny_model_dir, tmp_path, monkeypatch
):
    import tasks.pipeline.steps
    from flows.audit_flow import audit

    calls = []
    original = tasks.pipeline.steps.audit_batch

    def counting(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(tasks.pipeline.steps, "audit_batch", counting)
    first = audit(config_for(tiny_model_dir, tmp_path / "monday"))
    computed = len(calls)
    second = audit(config_for(tiny_model_dir, tmp_path / "tuesday"))  # a new database: only the cache helps
    assert computed == 3 and len(calls) == computed, "a cached batch was computed again"
    assert second.run_id == first.run_id
    assert (first.computed, first.cached) == (12, 0)
    assert (second.computed, second.cached, second.reused) == (0, 12, 0), "the cache's examples counted as computed"
    hashes = []
    for outcome in (first, second):
        with store.connect(outcome.db, read_only=True) as connection:
            hashes.append(store.content_hash(connection, outcome.run_id))
    assert hashes[0] == hashes[1]
    audit(config_for(tiny_model_dir, tmp_path / "wednesday", execution={"cache_batches": False}))
    assert len(calls) == computed + 3


@pytest.mark.slow
def test_the_flow_publishes_its_verdicts_and_report_as_artifacts(prefect_harness, tiny_model_dir, tmp_path):
    import asyncio

    from prefect.client.orchestration import get_client

    from flows.audit_flow import audit

    outcome = audit(config_for(tiny_model_dir, tmp_path))

    async def artifact_keys() -> set[str]:
        async with get_client() as client:
            return {artifact.key for artifact in await client.read_artifacts() if artifact.key}

    keys = asyncio.run(artifact_keys())
    assert {f"audit-{outcome.run_id}", f"audit-{outcome.run_id}-summary", f"audit-{outcome.run_id}-html"} <= keys


@pytest.mark.slow
def test_a_failing_gate_fails_the_run_after_storing_everything(prefect_harness, tiny_model_dir, tmp_path):
    from flows.audit_flow import audit

    config = config_for(tiny_model_dir, tmp_path, gate=["faithful:all"], verdict={"min_examples": 1000})
    with pytest.raises(GateFailed) as failed:
        audit(config)
    assert failed.value.failures[0].startswith("faithful:all: ")
    assert "inconclusive" in failed.value.failures[0]
    assert Path(failed.value.outcome["report"]["html"]).exists()
    with store.connect(config.output.db, read_only=True) as connection:
        assert len(store.finished_example_ids(connection, failed.value.outcome["run_id"])) == 12


@pytest.mark.slow
def test_a_gate_exits_the_command_with_status_4(tiny_model_dir, tmp_path):
    command = [
        sys.executable, "-m", "flows.cli", "run", "--model", str(tiny_model_dir), "--dataset", str(SAMPLE),
        "--id-column", "id", "--no-labels", "--methods", "attention_last,leave_one_out,random",
        "--interventions", "none", "--no-pdf", "--db", str(tmp_path / "a.duckdb"), "--out", str(tmp_path),
        "--require", "faithful:any", "--min-examples", "1000",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env={**__import__("os").environ,
                          "PREFECT_HOME": str(tmp_path / "prefect")}, timeout=600)  # fmt: skip
    assert done.returncode == 4, done.stderr[-2000:]
    assert "gate failed:" in done.stderr and "faithful:any" in done.stderr


@pytest.mark.slow
def test_a_second_audit_shows_what_moved_since_the_first(prefect_harness, tiny_model_dir, tmp_path, capsys):
    from flows.audit_flow import audit
    from flows.cli import main

    first = audit(config_for(tiny_model_dir, tmp_path))
    second = audit(config_for(tiny_model_dir, tmp_path, methods={"ig_steps": 16, "ig_rule": "gausslegendre"}))
    assert first.run_id != second.run_id
    html = second.report.html.read_text(encoding="utf-8")
    assert 'id="over-time"' in html and f"Compared with run {first.run_id}" in html
    assert main(["compare", first.run_id, second.run_id, "--db", str(tmp_path / "audit.duckdb")]) == 0
    printed = capsys.readouterr().out
    assert "paired over 12 shared examples" in printed
    for method in ("attention_last", "rollout"):
        assert f"{method:22} Kendall τ with the references" in printed
