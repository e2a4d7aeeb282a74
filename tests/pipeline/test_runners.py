"""Where batches run: what ``auto`` chooses, the task runner each execution setting gives, and what it needs."""

from __future__ import annotations

import os

import pytest

from tasks.config import AuditConfig, ExecutionSettings, ModelSpec
from tasks.errors import AuditError
from tasks.pipeline import runners


def chosen(batches: int, cores: int = 2, server: bool = True, device: str = "cpu", **execution) -> tuple:
    config = AuditConfig(model=ModelSpec(device=device), execution=ExecutionSettings(**execution))
    settings = runners.chosen_execution(config, batches, cores=cores, server=server)
    return settings.task_runner, settings.concurrency


def test_auto_runs_one_worker_process_per_core_when_there_are_four_batches_per_worker():
    assert chosen(batches=8) == ("processes", 2)
    assert chosen(batches=34) == ("processes", 2)
    assert chosen(batches=16, cores=4) == ("processes", 4)
    assert chosen(batches=12, concurrency=3, cores=16) == ("processes", 3)


@pytest.mark.parametrize(
    ("why", "case"),
    [
        ("too few batches to keep every worker busy", {"batches": 7}),
        ("nothing to compute", {"batches": 0}),
        ("one core", {"batches": 34, "cores": 1}),
        ("one batch at a time asked for", {"batches": 34, "concurrency": 1}),
        ("no Prefect server for the workers", {"batches": 34, "server": False}),
        ("the model on a GPU, which threads of one process share", {"batches": 34, "device": "cuda"}),
    ],
)
def test_auto_runs_threads_of_this_process_otherwise(why, case):
    assert chosen(**case) == ("threads", 1), why


def test_an_asked_for_runner_is_kept_and_an_unset_concurrency_filled_in():
    assert chosen(batches=1, task_runner="processes") == ("processes", 2)  # one per core
    assert chosen(batches=34, task_runner="threads") == ("threads", 1)
    assert chosen(batches=34, task_runner="threads", concurrency=2) == ("threads", 2)
    assert chosen(batches=34, task_runner="dask", dask_workers=3) == ("dask", 3)  # the local cluster's workers
    assert chosen(batches=34, task_runner="dask", dask_address="tcp://scheduler:8786") == ("dask", 1)


def test_the_manifest_records_what_the_batches_ran_on():
    record = runners.execution_record(ExecutionSettings(task_runner="processes", concurrency=2, threads=1))
    assert record == {
        "task_runner": "processes",
        "concurrency": 2,
        "threads": 1,
        "summary": "2 worker processes of 1 torch thread each",
    }
    threads = runners.execution_record(ExecutionSettings(task_runner="threads", concurrency=1, threads=2))
    assert threads["summary"] == "1 batch at once in this process, 2 torch threads each"


def test_threads_run_in_this_process_with_one_thread_per_batch_in_flight():
    runner = runners.task_runner_for(ExecutionSettings(task_runner="threads", concurrency=3))
    assert type(runner).__name__ == "InterruptibleThreadPoolTaskRunner"
    assert runner._max_workers == 3


def test_worker_processes_need_a_prefect_server(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(AuditError) as raised:
        runners.check_execution(ExecutionSettings(task_runner="processes"))
    assert "--task-runner processes needs a Prefect server" in raised.value.problem
    assert "PREFECT_API_URL" in raised.value.fix


def test_worker_processes_are_prepared_with_their_torch_threads_and_this_process_as_parent(monkeypatch):
    from prefect.task_runners import ProcessPoolTaskRunner

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    runner = runners.task_runner_for(ExecutionSettings(task_runner="processes", concurrency=3, threads=2))
    assert isinstance(runner, ProcessPoolTaskRunner)
    assert runner._max_workers == 3
    assert runner._initializer is runners.start_worker
    assert runner._initargs == (os.getpid(), 2)


@pytest.mark.parametrize(("cores", "workers", "threads"), [(2, 2, 1), (2, 3, 1), (16, 4, 4), (1, 1, 1)])
def test_each_worker_process_gets_an_equal_share_of_the_cores_and_at_least_one(cores, workers, threads):
    config = AuditConfig(execution=ExecutionSettings(task_runner="processes", concurrency=workers))
    assert runners.chosen_execution(config, 34, cores=cores, server=True).threads == threads
    local_dask = AuditConfig(execution=ExecutionSettings(task_runner="dask", dask_workers=workers))
    assert runners.chosen_execution(local_dask, 34, cores=cores, server=True).threads == threads


def test_asked_for_threads_are_kept_and_threads_of_this_process_keep_torch_default():
    asked = AuditConfig(execution=ExecutionSettings(task_runner="processes", concurrency=2, threads=3))
    assert runners.chosen_execution(asked, 34, cores=2, server=True).threads == 3
    assert runners.chosen_execution(AuditConfig(), 3, cores=2, server=True).threads is None  # threads of this process
    cluster = AuditConfig(execution=ExecutionSettings(task_runner="dask", dask_address="tcp://scheduler:8786"))
    assert runners.chosen_execution(cluster, 34, cores=2, server=True).threads is None  # its machines' cores unknown
