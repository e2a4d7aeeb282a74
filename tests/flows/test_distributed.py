"""Past one machine, with a real Prefect server on 127.0.0.1: a Dask cluster, and the prefect.yaml deployment."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import suppress
from multiprocessing import resource_tracker
from pathlib import Path

import psutil
import pytest

from tasks import store
from tasks.config import AuditConfig
from tests.conftest import ROOT
from tests.processes import KILL_WAIT, process_family, stop_process_group

pytestmark = pytest.mark.slow
SAMPLE = ROOT / "data" / "samples" / "handmade-reviews.csv"


@pytest.fixture(autouse=True)
def no_process_left_behind(prefect_server: dict[str, str]) -> Iterator[None]:
    """Every process a test starts (workers, flow runs, Dask workers) has exited when the test ends.

    The session's Prefect server and its processes are not counted, nor Python's multiprocessing
    resource tracker (one per interpreter, started by the first process pool, by design alive until
    the interpreter exits); a survivor gets ``KILL_WAIT`` seconds to exit, then it is killed and the
    test fails, naming it.
    """
    server = int(prefect_server["ATTENTION_AUDIT_TEST_SERVER_PID"])
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    yield
    ours = before | {member.pid for member in process_family(server)} | {resource_tracker._resource_tracker._pid}
    started = [child for child in psutil.Process().children(recursive=True) if child.pid not in ours]
    _, survivors = psutil.wait_procs(started, timeout=KILL_WAIT)
    names = []
    for survivor in survivors:
        with suppress(psutil.NoSuchProcess):
            names.append(f"{survivor.pid} {' '.join(survivor.cmdline())[:120]}")
            survivor.kill()
    assert not names, f"processes left running by the test: {names}"


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
        stop_process_group(worker, grace=20.0)  # SIGINT, as Prefect documents; then SIGKILL to what remains
    with store.connect(tmp_path / "audit.duckdb", read_only=True) as connection:
        run_id = store.read_run(connection)["run_id"]
        assert len(store.finished_example_ids(connection, run_id)) == 12
        assert store.read_run(connection)["status"] == "finished"
    assert (tmp_path / f"report-{run_id}.html").exists()
