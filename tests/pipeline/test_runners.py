"""Where batches run: the task runner each execution setting asks for, and what it needs."""

from __future__ import annotations

import os

import pytest

from tasks.config import ExecutionSettings
from tasks.errors import AuditError
from tasks.pipeline import runners


def test_threads_run_in_this_process_with_one_thread_per_batch_in_flight():
    runner = runners.task_runner_for(ExecutionSettings(concurrency=3))
    assert type(runner).__name__ == "InterruptibleThreadPoolTaskRunner"
    assert runner._max_workers == 3


def test_worker_processes_need_a_prefect_server(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(AuditError) as raised:
        runners.task_runner_for(ExecutionSettings(task_runner="processes"))
    assert "--task-runner processes needs a Prefect server" in raised.value.problem
    assert "PREFECT_API_URL" in raised.value.fix


def test_worker_processes_are_prepared_with_their_share_of_the_cores_and_this_process_as_parent(monkeypatch):
    from prefect.task_runners import ProcessPoolTaskRunner

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    runner = runners.task_runner_for(ExecutionSettings(task_runner="processes", concurrency=3))
    assert isinstance(runner, ProcessPoolTaskRunner)
    assert runner._max_workers == 3
    assert runner._initializer is runners.start_worker
    assert runner._initargs == (os.getpid(), 2)  # 8 cores // 3 workers
    set_threads = runners.task_runner_for(ExecutionSettings(task_runner="processes", concurrency=3, threads=5))
    assert set_threads._initargs == (os.getpid(), 5)
    assert runner.duplicate()._initargs == runner._initargs  # what Prefect runs a subflow with


@pytest.mark.parametrize(("cores", "workers", "threads"), [(2, 2, 1), (2, 3, 1), (16, 4, 4), (1, 1, 1)])
def test_each_worker_gets_an_equal_share_of_the_cores_and_at_least_one(monkeypatch, cores, workers, threads):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert runners.cores_per_worker(workers) == threads
