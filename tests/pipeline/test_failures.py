"""Faults: a failing batch, a locked database, a full disk. Nothing stored may be lost or duplicated."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tasks import store
from tasks.config import AuditConfig
from tasks.errors import AuditError
from tests.conftest import SAMPLES

SAMPLE = SAMPLES / "handmade-reviews.csv"


def small_config(model_dir: Path, folder: Path, **execution) -> AuditConfig:
    return AuditConfig.model_validate(
        {
            "model": {"name_or_path": str(model_dir)},
            "data": {"dataset": str(SAMPLE), "id_column": "id", "label_column": None},
            "methods": {"methods": ["attention_last", "leave_one_out", "random"], "random_draws": 1},
            "interventions": {"interventions": ["none"]},
            "execution": {"batch_size": 4, **execution},
            "output": {"db": str(folder / "audit.duckdb"), "out_dir": str(folder), "pdf": False},
        }
    )


@pytest.mark.slow
def test_a_failing_batch_is_retried_recorded_per_example_and_the_others_finish(
    prefect_harness, tiny_model_dir, tmp_path, monkeypatch
):
    import tasks.pipeline.steps
    from flows.audit_flow import audit

    original = tasks.pipeline.steps.audit_batch
    attempts = []

    def flaky(bundle, examples, *args):
        if any(example.example_id == "h03" for example in examples):
            attempts.append(len(examples))
            raise RuntimeError("simulated worker crash")
        return original(bundle, examples, *args)

    monkeypatch.setattr(tasks.pipeline.steps, "audit_batch", flaky)
    config = small_config(tiny_model_dir, tmp_path, batch_retries=2)
    outcome = audit(config)
    assert len(attempts) == 3  # the first try and two retries
    assert outcome.failed == 4 and outcome.computed == 8 and outcome.status == "finished with failures"
    with store.connect(config.output.db, read_only=True) as connection:
        failures = store.read_table(connection, "failures", outcome.run_id)
        stored = store.finished_example_ids(connection, outcome.run_id)
    assert len(failures) == 4 and "h03" in set(failures["example_id"])
    assert set(failures["error_type"]) == {"RuntimeError"} and set(failures["attempts"]) == {3}
    assert stored.isdisjoint(failures["example_id"]) and len(stored) == 8
    html = outcome.report.html.read_text(encoding="utf-8")
    assert 'id="failures"' in html and "simulated worker crash" in html

    monkeypatch.setattr(tasks.pipeline.steps, "audit_batch", original)
    again = audit(config)
    assert (again.computed, again.reused, again.failed, again.status) == (4, 8, 0, "finished")
    with store.connect(config.output.db, read_only=True) as connection:
        assert store.read_table(connection, "failures", again.run_id).empty
        assert len(store.finished_example_ids(connection, again.run_id)) == 12


@pytest.mark.slow
def test_a_failing_sanity_stage_fails_the_run_after_every_batch_is_stored(
    prefect_harness, tiny_model_dir, tmp_path, monkeypatch
):
    from flows.audit_flow import audit
    from tasks.evaluate import sanity

    original = sanity.stage_scores

    def failing(bundle, examples, methods, options, seed, stage, *args, **kwargs):
        if stage == 1:
            raise RuntimeError("simulated sanity crash")
        return original(bundle, examples, methods, options, seed, stage, *args, **kwargs)

    monkeypatch.setattr(sanity, "stage_scores", failing)
    config = small_config(tiny_model_dir, tmp_path, concurrency=2)
    with pytest.raises(RuntimeError, match="simulated sanity crash"):
        audit(config)
    with store.connect(config.output.db, read_only=True) as connection:
        run_id = store.read_run(connection)["run_id"]
        assert len(store.finished_example_ids(connection, run_id)) == 12
        assert store.read_table(connection, "sanity_checks", run_id).empty

    monkeypatch.setattr(sanity, "stage_scores", original)
    again = audit(config)
    assert (again.computed, again.reused, again.status) == (0, 12, "finished")
    with store.connect(config.output.db, read_only=True) as connection:
        assert set(store.read_table(connection, "sanity_checks", run_id)["stage"]) == {0, 1, 2}


def test_a_database_locked_by_another_process_is_refused_and_left_intact(tmp_path):
    path = tmp_path / "audit.duckdb"
    with store.connect(path) as connection:
        store.register_run(connection, "run", {"a": 1}, {})
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys, time; c = duckdb.connect({str(path)!r}); print('held'); "
            "sys.stdout.flush(); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(AuditError, match="in use by another process") as refused:
            with store.connect(path):
                pass
        assert "--db" in refused.value.fix
    finally:
        holder.kill()
        holder.wait()
    with store.connect(path, read_only=True) as connection:
        assert store.read_run(connection, "run")["config"] == {"a": 1}


def test_a_full_disk_is_reported_and_no_batch_is_half_written(tmp_path, tiny_bundle, examples):
    """On a 4 MiB file system filled to the brim, writing fails with a clear error; what was stored survives."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root")
    from tasks.config import ExecutionSettings, InterventionOptions, MethodOptions
    from tasks.pipeline.batch import audit_batch

    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("this machine cannot mount a tmpfs")
    try:
        options = MethodOptions(methods=("attention_last", "random"), random_draws=1)
        no_interventions = InterventionOptions(interventions=("none",))
        first = audit_batch(tiny_bundle, examples, options, no_interventions, ExecutionSettings())
        path = mount / "audit.duckdb"
        with store.connect(path) as connection:
            store.register_run(connection, "run", {}, {})
            store.write_batch(connection, "run", first, tiny_bundle.labels)
            before = store.read_table(connection, "token_scores", "run")
        subprocess.run(["dd", "if=/dev/zero", f"of={mount / 'filler'}", "bs=64k"], capture_output=True)
        with pytest.raises(AuditError, match="free disk space") as refused:
            for copy in range(500):  # new batches until a write no longer fits
                renamed = [dataclasses.replace(e, example_id=f"{e.example_id}-{copy}") for e in examples]
                batch = audit_batch(tiny_bundle, renamed, options, no_interventions, ExecutionSettings())
                with store.connect(path) as connection:
                    store.write_batch(connection, "run", batch, tiny_bundle.labels)
        assert "rolled back" in refused.value.problem
        (mount / "filler").unlink()
        with store.connect(path, read_only=True) as connection:
            after = store.read_table(connection, "token_scores", "run")
            stored = store.read_table(connection, "examples", "run")
            tokens = store.read_table(connection, "tokens", "run")
        original = after[after["example_id"].isin(before["example_id"])]
        pd.testing.assert_frame_equal(
            original.sort_values(list(original.columns[:5])).reset_index(drop=True),
            before.sort_values(list(before.columns[:5])).reset_index(drop=True),
        )
        per_example = tokens.groupby("example_id").size()
        assert (per_example.reindex(stored["example_id"]).to_numpy() == stored["n_tokens"].to_numpy()).all()
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
