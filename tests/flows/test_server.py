"""The command's Prefect API: a configured server is used as it is; otherwise the temporary server the
command starts ends with the command, however it ends (a normal exit, or SIGKILL in the middle of a run).

Kill points are read from what the run prints, never from the clock; every process a test starts is
stopped at its end whatever happens (``tests.processes``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from flows.server import PrefectAPI
from tasks.pipeline.runners import PARENT_POLL
from tests.conftest import SAMPLES
from tests.processes import KILL_WAIT, process_family, stop_process_group

WORKER_PROCESSES = ("--task-runner", "processes", "--concurrency", "2")
"""Options of a run whose batches compute in worker processes (a short run's default keeps threads)."""

SERVER_EXIT_WAIT = 60.0
"""Seconds the orphaned server may take to receive SIGTERM and shut down (a bound for a failure, not a speed)."""


def without_prefect_api(prefect_home: Path) -> dict[str, str]:
    """The environment of a command that must start its own server: no API URL, a fresh Prefect home."""
    environment = {name: value for name, value in os.environ.items() if name != "PREFECT_API_URL"}
    return {**environment, "PREFECT_HOME": str(prefect_home), "HF_HUB_OFFLINE": "1"}


def small_run(model: Path, folder: Path, *options: str) -> list[str]:
    """The command line of a short run of the tiny model on 12 handmade reviews, in batches of 3."""
    return [
        sys.executable, "-m", "flows.cli", "run", "--model", str(model),
        "--dataset", str(SAMPLES / "handmade-reviews.csv"), "--id-column", "id", "--no-labels",
        "--methods", "attention_last,random", "--interventions", "none", "--no-sanity", "--no-pdf",
        "--batch-size", "3", "--db", str(folder / "audit.duckdb"), "--out", str(folder), *options,
    ]  # fmt: skip


def test_a_configured_prefect_api_is_used_and_no_server_is_started(prefect_harness):
    from prefect.settings import PREFECT_API_URL

    configured = PREFECT_API_URL.value()
    with PrefectAPI() as api, api.connected():
        assert api.process is None
        assert PREFECT_API_URL.value() == configured


@pytest.mark.slow
def test_the_temporary_server_serves_the_flows_and_stops_when_the_command_ends(tmp_path):
    script = (
        "from flows.server import PrefectAPI\n"
        "from prefect import flow\n"
        "@flow\n"
        "def answer():\n"
        "    return 41 + 1\n"
        "import os\n"
        "with PrefectAPI() as api, api.connected():\n"
        "    print('server', api.process.pid, flush=True)\n"
        "    print('flow', answer(), flush=True)\n"
        "    print('inherited', os.environ['PREFECT_API_URL'] == api.url, flush=True)\n"
        "print('after', os.environ.get('PREFECT_API_URL'), flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=without_prefect_api(tmp_path), capture_output=True, text=True, timeout=600
    )

    assert done.returncode == 0, done.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["flow"] == "42"
    assert lines["inherited"] == "True", "processes started in the run (Dask's workers) must find the server"
    assert lines["after"] == "None"
    assert not psutil.pid_exists(int(lines["server"])), "the server outlived the command"


@pytest.mark.slow
def test_a_run_killed_with_sigkill_takes_its_prefect_server_with_it(tiny_model_dir, tmp_path):
    run = subprocess.Popen(
        small_run(tiny_model_dir, tmp_path),
        env=without_prefect_api(tmp_path / "prefect"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        seen = []
        assert run.stdout is not None
        for line in run.stdout:  # the first stored batch: the flow is running against the server
            seen.append(line)
            if "3/12 examples stored" in line:
                break
        servers = [
            child for child in psutil.Process(run.pid).children(recursive=True) if "flows.server" in child.cmdline()
        ]
        assert len(servers) == 1, "".join(seen)[-3000:]

        run.send_signal(signal.SIGKILL)  # the command alone: its server is not signalled by anyone
        assert run.wait(timeout=KILL_WAIT) == -signal.SIGKILL

        _, left = psutil.wait_procs(servers, timeout=SERVER_EXIT_WAIT)
        assert not left, f"the killed run left its Prefect server running: {[p.pid for p in left]}"
    finally:
        stop_process_group(run, grace=0)


@pytest.mark.slow
@pytest.mark.parametrize("runner", [(), WORKER_PROCESSES], ids=["default", "worker-processes"])
def test_a_ctrl_c_in_the_terminal_ends_the_run_at_once_and_its_server_with_it(tiny_model_dir, tmp_path, runner):
    """SIGINT to the command's whole process group, as a terminal sends it, while a batch computes: the
    command reports its end to its server and stops it, with status 130 (a server stopped by the same
    Ctrl-C would leave the command retrying its API calls for minutes), and its worker processes end too."""
    command = small_run(tiny_model_dir, tmp_path, "--no-cache", *runner)
    environment = {**without_prefect_api(tmp_path / "prefect"), "ATTENTION_AUDIT_INTERRUPT_AT": "batch-computing:2"}
    log = tmp_path / "run.log"
    with log.open("w") as output:
        run = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT,
                               start_new_session=True)  # fmt: skip
    try:
        servers = []
        while run.poll() is None and not servers:
            servers = [
                child for child in psutil.Process(run.pid).children() if "flows.server" in child.cmdline()
            ]  # fmt: skip
        try:
            status = run.wait(timeout=SERVER_EXIT_WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the interrupted run did not end; its log:\n{log.read_text()[-3000:]}")
        assert status == 130, log.read_text()[-3000:]
        _, left = psutil.wait_procs(servers, timeout=SERVER_EXIT_WAIT)
        assert not left, "the interrupted run left its Prefect server running"
        _, workers = psutil.wait_procs(process_family(run.pid), timeout=KILL_WAIT + PARENT_POLL)
        assert not workers, "the interrupted run left worker processes running"
        assert "interrupted: finished batches are stored" in log.read_text()
    finally:
        stop_process_group(run, grace=0)
