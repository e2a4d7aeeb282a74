"""Past one machine, with a real Prefect server on 127.0.0.1: a Dask cluster, and the prefect.yaml deployment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tasks import store
from tasks.config import AuditConfig
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
SAMPLE = ROOT / "data" / "samples" / "handmade-reviews.csv"


def config_for(model: Path, folder: Path, **execution) -> dict:
    return {
        "model": {"name_or_path": str(model)},
        "data": {"dataset": str(SAMPLE), "id_column": "id", "label_column": None},
        "methods": {"methods": ["attention_last", "rollout", "saliency", "leave_one_out", "random"],
                    "random_draws": 2},
        "interventions": {"interventions": ["uniform", "head_masking"]},
        "execution": {"batch_size": 3, "cache_batches": False, **execution},
        "output": {"db": str(folder / "audit.duckdb"), "out_dir": str(folder), "pdf": False},
    }  # fmt: skip


def result_hash(db: Path) -> str:
    with store.connect(db, read_only=True) as connection:
        return store.content_hash(connection, store.read_run(connection)["run_id"])


def test_a_dask_cluster_of_worker_processes_gives_the_local_results(
    prefect_server, tiny_model_dir, tmp_path, monkeypatch
):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.audit_flow import audit

    monkeypatch.setenv("PREFECT_API_URL", prefect_server["PREFECT_API_URL"])  # the Dask workers inherit it
    # One torch thread on both sides: the sums of a matrix product then run in the same order, so the
    # results can be compared bit for bit (Dask's workers run single-threaded numerics by default).
    with temporary_settings(updates={PREFECT_API_URL: prefect_server["PREFECT_API_URL"]}):
        local = audit(AuditConfig.model_validate(config_for(tiny_model_dir, tmp_path / "local", threads=1)))
        dask = audit(
            AuditConfig.model_validate(
                config_for(
                    tiny_model_dir, tmp_path / "dask", task_runner="dask", dask_workers=3, concurrency=3, threads=1
                )
            )
        )
    assert (local.computed, dask.computed) == (12, 12)
    assert result_hash(local.db) == result_hash(dask.db)


def test_the_prefect_yaml_deployment_runs_on_a_process_worker(prefect_server, tiny_model_dir, tmp_path):
    env = {**prefect_server, "ATTENTION_AUDIT_HOME": str(ROOT), "HF_HUB_OFFLINE": "1"}
    prefect = [sys.executable, "-m", "prefect"]

    def run(*arguments: str, timeout: int = 300) -> subprocess.CompletedProcess:
        done = subprocess.run([*prefect, *arguments], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    run("work-pool", "create", "attention-audit", "--type", "process")
    run("--no-prompt", "deploy", "--all")
    worker = subprocess.Popen([*prefect, "worker", "start", "--pool", "attention-audit"], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        parameters = json.dumps({"config": config_for(tiny_model_dir, tmp_path)})
        done = run("deployment", "run", "audit/default-audit", "--params", parameters, "--watch",
                   "--watch-timeout", "400", timeout=500)  # fmt: skip
        assert "Completed" in done.stdout + done.stderr
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
    with store.connect(tmp_path / "audit.duckdb", read_only=True) as connection:
        run_id = store.read_run(connection)["run_id"]
        assert len(store.finished_example_ids(connection, run_id)) == 12
        assert store.read_run(connection)["status"] == "finished"
    assert (tmp_path / f"report-{run_id}.html").exists()
