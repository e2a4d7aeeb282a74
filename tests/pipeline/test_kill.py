"""Killed runs: SIGKILL at any point, then the same command, ends with exactly the uninterrupted results.

Each run is the real command line in its own process group. Kill points are either read from the
progress the run reports (an outside SIGKILL after the second stored batch) or named fault points inside
a batch's database transaction, inside the verdicts' transaction and while rendering the report
(``tasks.faults``; ``batch-written`` and ``report-html`` work the same way and are left out for time).
After every kill the same command resumes; the result tables must then hash to the same value as an
uninterrupted run's, the verdicts must be equal, and the report files must be whole.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest

from tasks import store
from tests.conftest import SAMPLES

pytestmark = pytest.mark.slow
SAMPLE = SAMPLES / "handmade-reviews.csv"
KILLED = -signal.SIGKILL
INTERRUPTED = 130


@pytest.fixture(scope="module")
def environment(prefect_server) -> dict[str, str]:
    """Runs report to one real Prefect server, so that no run starts (or, killed, leaks) a server of its own."""
    return {**prefect_server, "HF_HUB_OFFLINE": "1"}


def command(model: Path, folder: Path) -> list[str]:
    """The run every test here repeats: 4 batches and a sanity check of 4 stages, on threads of the command.

    Threads named: a fault point counts arrivals in its own process, so in worker processes (``auto``'s
    choice for these 8 tasks on 2 cores) the third batch computed is no process's third arrival. A killed
    run with worker processes is tested in ``tests/flows/test_distributed.py``, Ctrl-C in ``test_server.py``.
    """
    return [
        sys.executable, "-m", "flows.cli", "run", "--model", str(model), "--dataset", str(SAMPLE),
        "--id-column", "id", "--no-labels", "--methods",
        "attention_last,rollout,saliency,integrated_gradients,leave_one_out,random", "--ig-steps", "10",
        "--random-draws", "2", "--interventions", "uniform,top_vs_random_erasure", "--erasure-draws", "3",
        "--batch-size", "3", "--task-runner", "threads", "--db", str(folder / "audit.duckdb"), "--out", str(folder),
    ]  # fmt: skip


def run(arguments: list[str], env: dict[str, str], kill_after_line: str | None = None) -> int:
    """Run in a new process group; kill the group when ``kill_after_line`` is printed; clean up after."""
    process = subprocess.Popen(
        arguments, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    seen = []

    def watch() -> None:
        for line in process.stdout:
            seen.append(line)
            if kill_after_line and kill_after_line in line:
                os.killpg(process.pid, signal.SIGKILL)
                return

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    code = process.wait(timeout=600)
    reader.join(timeout=10)
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the ephemeral Prefect server a killed run leaves behind
    except ProcessLookupError:
        pass
    if code not in (0, KILLED, INTERRUPTED):
        raise AssertionError("".join(seen)[-3000:])
    return code


def state(folder: Path) -> tuple[str, list, list]:
    """The run's result hash and its verdict tables."""
    with store.connect(folder / "audit.duckdb", read_only=True) as connection:
        run_id = store.read_run(connection)["run_id"]
        verdicts = [
            sorted(
                connection.execute(f"SELECT * EXCLUDE (run_id) FROM {table} WHERE run_id = ?", [run_id]).fetchall(),
                key=str,
            )
            for table in store.VERDICT_TABLES
        ]
        return store.content_hash(connection, run_id), verdicts[0], verdicts[1]


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, tmp_path_factory, environment) -> tuple[str, list, list]:
    folder = tmp_path_factory.mktemp("uninterrupted")
    assert run(command(tiny_model_dir, folder), environment) == 0
    return state(folder)


def test_two_runs_of_the_same_configuration_store_identical_results(
    uninterrupted, tiny_model_dir, tmp_path, environment
):
    assert run(command(tiny_model_dir, tmp_path), environment) == 0
    assert state(tmp_path) == uninterrupted


@pytest.mark.parametrize(
    "point",
    ["progress", "batch-writing:2", "verdicts-writing", "report-pdf"],
)
def test_a_killed_run_resumes_to_exactly_the_uninterrupted_results(
    point, uninterrupted, tiny_model_dir, tmp_path, environment
):
    arguments = command(tiny_model_dir, tmp_path)
    if point == "progress":
        code = run(arguments, environment, kill_after_line="6/12 examples stored")
    else:
        code = run(arguments, {**environment, "ATTENTION_AUDIT_KILL_AT": point})
    assert code == KILLED, f"the run was not killed at {point}"
    with duckdb.connect(str(tmp_path / "audit.duckdb"), read_only=True) as connection:  # opens after the kill
        connection.execute("SELECT count(*) FROM examples").fetchone()

    assert run(arguments, environment) == 0
    assert state(tmp_path) == uninterrupted
    reports = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("report-", "summary-")))
    assert [name.split(".")[-1] for name in reports] == ["html", "pdf", "json"]
    assert not list(tmp_path.glob(".*.partial")), "a half-written report file was left behind"
    text = subprocess.run(
        ["pdftotext", str(next(tmp_path.glob("report-*.pdf"))), "-"], capture_output=True, text=True
    ).stdout
    assert "Reproducing this audit" in text, "the PDF is not whole"


def test_an_interrupted_run_ends_at_once_and_resumes_to_exactly_the_uninterrupted_results(
    uninterrupted, tiny_model_dir, tmp_path, environment
):
    """Ctrl-C while a batch computes (here one that never finishes) ends the command with status 130 without
    waiting for that batch; the batches finished before are stored, and the same command completes the rest."""
    arguments = [*command(tiny_model_dir, tmp_path), "--no-cache"]  # batches computed, not read from the cache
    code = run(arguments, {**environment, "ATTENTION_AUDIT_INTERRUPT_AT": "batch-computing:3"})
    assert code == INTERRUPTED
    with duckdb.connect(str(tmp_path / "audit.duckdb"), read_only=True) as connection:
        stored = connection.execute("SELECT count(*) FROM examples").fetchone()[0]
    assert 0 < stored < 12  # some batches finished before the interrupt, not all

    assert run(arguments, environment) == 0
    assert state(tmp_path) == uninterrupted
