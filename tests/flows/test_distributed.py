"""Past one process, with a real Prefect server on 127.0.0.1: worker processes on this machine, a Dask cluster,
and the prefect.yaml deployment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import suppress
from multiprocessing import resource_tracker
from pathlib import Path

import pandas as pd
import psutil
import pytest

from tasks import store
from tasks.config import AuditConfig
from tasks.pipeline.runners import PARENT_POLL
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


def sanity_check(db: Path) -> pd.DataFrame:
    """The run's sanity-check rows (its stages run in the workers too), in key order."""
    with store.connect(db, read_only=True) as connection:
        rows = store.read_table(connection, "sanity_checks", store.read_run(connection)["run_id"])
    assert not rows.empty
    return rows.drop(columns="run_id").sort_values(["stage", "method", "example_id"]).reset_index(drop=True)


def test_a_dask_cluster_of_worker_processes_gives_the_local_results(
    prefect_server, tiny_model_dir, tmp_path, monkeypatch
):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.audit_flow import audit

    monkeypatch.setenv("PREFECT_API_URL", prefect_server["PREFECT_API_URL"])  # the Dask workers inherit it
    # One torch thread on both sides: the sums of a matrix product then run in the same order, so the
    # results can be compared bit for bit (Dask's workers run single-threaded numerics by default). The
    # local run on threads, named: its 4 batches and 4 sanity stages would make ``auto`` choose worker
    # processes, whose Prefect threads read the global settings (see the next test).
    with temporary_settings(updates={PREFECT_API_URL: prefect_server["PREFECT_API_URL"]}):
        local = audit(
            AuditConfig.model_validate(config_for(tiny_model_dir, tmp_path / "local", task_runner="threads", threads=1))
        )
        dask = audit(
            AuditConfig.model_validate(
                config_for(
                    tiny_model_dir, tmp_path / "dask", task_runner="dask", dask_workers=3, concurrency=3, threads=1
                )
            )
        )
    assert (local.computed, dask.computed) == (12, 12)
    assert result_hash(local.db) == result_hash(dask.db)
    pd.testing.assert_frame_equal(sanity_check(dask.db), sanity_check(local.db))


def test_worker_processes_on_this_machine_give_the_local_results(prefect_server, tiny_model_dir, tmp_path, monkeypatch):
    """``auto`` chooses them for a run of 12 batches with 2 at once (at least 4 per worker), and says so."""
    import prefect.context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.audit_flow import audit

    monkeypatch.setenv("PREFECT_API_URL", prefect_server["PREFECT_API_URL"])  # the workers inherit it
    # As the command line's temporary server does: Prefect's own threads read the global settings.
    monkeypatch.setattr(prefect.context, "GLOBAL_SETTINGS_CONTEXT", prefect.context.root_settings_context())
    # One torch thread in both, as in the Dask comparison: the results can be compared bit for bit.
    with temporary_settings(updates={PREFECT_API_URL: prefect_server["PREFECT_API_URL"]}):
        local = audit(
            AuditConfig.model_validate(
                config_for(tiny_model_dir, tmp_path / "local", task_runner="threads", threads=1, batch_size=1)
            )
        )
        pool = audit(
            AuditConfig.model_validate(
                config_for(tiny_model_dir, tmp_path / "pool", concurrency=2, threads=1, batch_size=1)
            )
        )
    assert (local.computed, pool.computed) == (12, 12)
    assert result_hash(local.db) == result_hash(pool.db)
    pd.testing.assert_frame_equal(sanity_check(pool.db), sanity_check(local.db))
    with store.connect(pool.db, read_only=True) as connection:
        execution = store.read_run(connection)["manifest"]["execution"]
    assert execution["summary"] == "2 worker processes of 1 torch thread each"
    assert "2 worker processes of 1 torch thread each" in pool.report.html.read_text()


def test_a_run_killed_with_sigkill_leaves_no_worker_process_behind(prefect_server, tiny_model_dir, tmp_path):
    """The flow process dies inside the second batch's transaction while its workers compute or wait for
    work; they are no longer its children then, and each must exit by itself."""
    command = [
        sys.executable, "-m", "flows.cli", "run", "--model", str(tiny_model_dir), "--dataset", str(SAMPLE),
        "--id-column", "id", "--no-labels", "--methods", "attention_last,integrated_gradients,leave_one_out",
        "--interventions", "none", "--no-sanity", "--no-pdf", "--no-cache", "--batch-size", "1",
        "--task-runner", "processes", "--concurrency", "2", "--threads", "1",
        "--db", str(tmp_path / "audit.duckdb"), "--out", str(tmp_path),
    ]  # fmt: skip
    environment = {**os.environ, **prefect_server, "HF_HUB_OFFLINE": "1", "ATTENTION_AUDIT_KILL_AT": "batch-writing:2"}
    log = tmp_path / "run.log"  # a file, not a pipe: orphaned workers would hold a pipe open
    with log.open("w") as output:
        run = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT,
                               start_new_session=True)  # fmt: skip
    try:
        assert run.wait(timeout=300) == -signal.SIGKILL, log.read_text()[-3000:]
        orphans = [member for member in process_family(run.pid) if member.pid != run.pid]
        _, left = psutil.wait_procs(orphans, timeout=KILL_WAIT + PARENT_POLL)
        assert not left, f"the killed run left worker processes running: {[p.cmdline()[-3:] for p in left]}"
    finally:
        stop_process_group(run, grace=0)


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
