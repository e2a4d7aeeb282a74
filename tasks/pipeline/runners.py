"""Where batches run: threads of this process, worker processes on this machine, or a Dask cluster (prefect-dask).

With worker processes or Dask, every worker loads the model once (``tasks.model.loading.load_model`` is cached
per process) and returns its batches' results to the flow, which alone writes DuckDB. Workers report their
task runs to the Prefect API, so such a run needs a Prefect server (``PREFECT_API_URL``): with Prefect's
ephemeral mode each worker process would start a server of its own. The command line's temporary server
(``flows.server``) exports its address to the processes it starts, so a local pool or cluster needs nothing more.

Why processes on one machine: for short inputs a forward pass is a chain of small matrix products (tens
of rows of 384 columns), and two torch threads on one product spend part of it waiting on each other;
two single-threaded worker processes each run their own batch without that wait (0.81-0.85x the batches'
time on 256 default examples on 2 cores, 0.84-0.90x on 512, 0.95x on news articles of 256 tokens: README,
"Past one process"). A worker's start (imports and the model, about 4 s here) is paid once per run. So
``auto``, the default, runs worker processes for a run with enough batches (``chosen_execution``).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from tasks.config import AuditConfig, ExecutionSettings
from tasks.errors import AuditError
from tasks.pipeline.interrupts import interrupted, stop_if_interrupted

MIN_BATCHES_PER_WORKER = 4
"""``auto`` runs worker processes only for at least this many batches per worker: a worker computes one
batch on one core where threads would share two, so with few batches the last ones leave cores idle,
and each worker's start (about 4 s) is paid once."""


def chosen_execution(config: AuditConfig, batches: int, *, cores: int, server: bool) -> ExecutionSettings:
    """The execution settings ``batches`` batches run with: ``auto`` decided, ``concurrency`` set.

    ``auto`` gives worker processes, ``w = concurrency`` of them or one per core, when all of these hold,
    and threads of this process (``concurrency`` of them, or one) otherwise:

    - at least two cores and ``w >= 2``, and the model on the CPU (a GPU is shared by threads of one process);
    - a Prefect server (``server``): without one, every worker would start its own;
    - at least ``MIN_BATCHES_PER_WORKER · w`` batches.

    On 2 cores, batches of default examples took 0.83x as long in 2 single-threaded worker processes as in
    one process on 2 threads at the threshold (256 examples, 8 batches), 0.84-0.90x at 512 (README, "Past one
    process"). The numbers differ by float32 rounding only.
    An unset ``concurrency`` is one per core with ``processes``, the local cluster's workers with ``dask``;
    unset ``threads`` are, in each worker process of either, its equal share of the cores.
    """
    execution = config.execution
    runner = execution.task_runner
    if runner == "auto":
        workers = execution.concurrency or cores
        parallel = cores >= 2 and workers >= 2 and config.model.device == "cpu" and server
        runner = "processes" if parallel and batches >= MIN_BATCHES_PER_WORKER * workers else "threads"
    local_dask = runner == "dask" and not execution.dask_address
    if execution.concurrency is not None:
        workers = execution.concurrency
    elif runner == "processes":
        workers = cores
    elif local_dask:
        workers = execution.dask_workers
    else:
        workers = 1
    threads = execution.threads
    if threads is None and (runner == "processes" or local_dask):  # each worker process its share of the cores
        threads = max(1, cores // (workers if runner == "processes" else execution.dask_workers))
    return execution.model_copy(update={"task_runner": runner, "concurrency": workers, "threads": threads})


def execution_record(execution: ExecutionSettings) -> dict[str, Any]:
    """What a run's batches ran on, for its manifest.

    The runner, the batches at once, the torch threads per batch (None: torch's default, in the workers of an
    existing Dask cluster), and all of it in words. The thread count changes float32 rounding (the order of a
    product's partial sums), so it is recorded.
    """
    import torch

    workers = execution.concurrency or 1
    threads = execution.threads
    if execution.task_runner == "processes":
        threads = threads or 1
        summary = f"{_count(workers, 'worker process', 'es')} of {_count(threads, 'torch thread')} each"
    elif execution.task_runner == "threads":
        threads = threads or torch.get_num_threads()
        summary = f"{_count(workers, 'batch', 'es')} at once in this process, {_count(threads, 'torch thread')} each"
    else:
        cluster = execution.dask_address or f"a local cluster of {execution.dask_workers} workers"
        each = f", {_count(threads, 'torch thread')} each" if threads else ""
        summary = f"Dask ({cluster}), {_count(workers, 'batch', 'es')} at once{each}"
    return {"task_runner": execution.task_runner, "concurrency": workers, "threads": threads, "summary": summary}


def _count(number: int, noun: str, plural: str = "s") -> str:
    return f"{number} {noun}{plural * (number != 1)}"


def available_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def has_server() -> bool:
    """Whether a Prefect server is configured for the processes this one starts (``PREFECT_API_URL``)."""
    return bool(os.environ.get("PREFECT_API_URL"))


def check_execution(execution: ExecutionSettings) -> None:
    """Pre-flight: what the asked-for task runner needs is there (``auto`` needs nothing).

    Raises:
        AuditError: Dask was asked for without ``prefect-dask`` installed, or worker processes or Dask
            without a Prefect server.
    """
    if execution.task_runner == "processes":
        _require_server("--task-runner processes", "every worker process")
    if execution.task_runner == "dask":
        try:
            import prefect_dask  # noqa: F401
        except ImportError as error:
            raise AuditError(
                "--task-runner dask needs the prefect-dask package, which is not installed",
                "pip install prefect-dask (it brings dask.distributed)",
            ) from error
        _require_server("--task-runner dask", "every Dask worker")


def task_runner_for(execution: ExecutionSettings) -> Any:
    """The Prefect task runner of ``execution`` as ``chosen_execution`` returns it (a runner and a concurrency).

    Raises:
        AuditError: As ``check_execution``.
    """
    assert execution.task_runner != "auto" and execution.concurrency, "chosen_execution decides these first"
    check_execution(execution)
    if execution.task_runner == "threads":
        return _interruptible_threads(execution.concurrency)
    if execution.task_runner == "processes":
        return _interruptible_processes(execution.concurrency, execution.threads or 1)
    from prefect_dask.task_runners import DaskTaskRunner

    if execution.dask_address:
        return DaskTaskRunner(address=execution.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": execution.dask_workers, "threads_per_worker": 1, "processes": True}
    )


def _interruptible_threads(workers: int) -> Any:
    """Prefect's ``ThreadPoolTaskRunner`` that lets an interrupt (Ctrl-C) through at once.

    Prefect's runner waits, on leaving the flow, for the batches still computing in its threads: a Ctrl-C
    during a batch of long documents would then wait minutes for a result that is never stored. On an
    interrupt this one cancels what has not started and leaves the running batch behind (the command line
    ends the process without waiting for it); on a normal exit or an error it waits as Prefect's does.
    """
    from prefect.task_runners import ThreadPoolTaskRunner

    class InterruptibleThreadPoolTaskRunner(ThreadPoolTaskRunner):
        def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
            _abandon_on_interrupt(self, exc_type)
            super().__exit__(exc_type, exc_value, traceback)

    return InterruptibleThreadPoolTaskRunner(max_workers=workers)


def _interruptible_processes(workers: int, threads: int) -> Any:
    """Prefect's ``ProcessPoolTaskRunner`` of ``workers`` processes (``start_worker``), interruptible at once.

    As for threads: on an interrupt the pool is shut down without waiting for the batches still computing (a
    Ctrl-C reaches the workers too, in the terminal's process group; one signalled alone ends with the flow
    process, ``start_worker``); on a normal exit or an error it waits as Prefect's does.
    """
    from prefect.task_runners import ProcessPoolTaskRunner

    class InterruptibleProcessPoolTaskRunner(ProcessPoolTaskRunner):
        def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
            _abandon_on_interrupt(self, exc_type)
            super().__exit__(exc_type, exc_value, traceback)

    return InterruptibleProcessPoolTaskRunner(
        max_workers=workers, initializer=start_worker, initargs=(os.getpid(), threads)
    )


def _abandon_on_interrupt(runner: Any, exc_type: type[BaseException] | None) -> None:
    """On an interrupt, shut ``runner``'s executor down without waiting for the batches still computing.

    An interrupt is a ``KeyboardInterrupt``, or any exception once SIGINT has come (``interrupts``: it can
    surface as a library's own error). The executor is dropped, so Prefect's own exit then only sets the
    cancel events, joining nothing.
    """
    interrupt = exc_type is not None and (issubclass(exc_type, KeyboardInterrupt) or interrupted())
    if interrupt and runner._executor is not None:
        runner._executor.shutdown(wait=False, cancel_futures=True)
        runner._executor = None


INTERRUPT_POLL = 0.5
"""Seconds between a waiting flow's checks for a Ctrl-C that a library swallowed (``interrupts``)."""


class Finishing(Protocol):
    """A future: a Prefect task run's, or any that calls back when done."""

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        """Call ``fn`` with the future once it is done (at once if it is)."""
        ...


F = TypeVar("F", bound=Finishing)
T = TypeVar("T")


class InFlight(Generic[F, T]):
    """Submitted task runs, each with what it carries (a batch's example ids), handed back as they finish.

    The wait for the next one checks every ``INTERRUPT_POLL`` seconds whether a Ctrl-C came
    (``stop_if_interrupted``): it raises ``KeyboardInterrupt`` even where a library on the main thread swallowed
    the one Python raised, rather than wait for ever on a batch that the same Ctrl-C stopped in a worker.
    """

    def __init__(self) -> None:
        self._carried: dict[F, T] = {}
        self._finished: queue.SimpleQueue[F] = queue.SimpleQueue()

    def add(self, future: F, carried: T) -> None:
        """Watch ``future``; ``carried`` comes back with it."""
        self._carried[future] = carried
        future.add_done_callback(self._finished.put)

    def __len__(self) -> int:
        return len(self._carried)

    def next_finished(self) -> tuple[F, T]:
        """The first of the watched futures to finish (not yet handed back), and what it carries.

        Raises:
            KeyboardInterrupt: SIGINT came before or while waiting.
        """
        while True:
            stop_if_interrupted()
            try:
                future = self._finished.get(timeout=INTERRUPT_POLL)
            except queue.Empty:
                continue
            return future, self._carried.pop(future)


PARENT_POLL = 0.5
"""Seconds between a worker process's checks that the process that started it is still running."""


def start_worker(parent: int, threads: int) -> None:
    """Prepare a worker process, before its first batch: ``threads`` torch threads, and an end with ``parent``.

    A process pool's workers wait for work on a queue whose ends they hold themselves, so a flow process
    killed with SIGKILL would leave them waiting for ever; each worker instead exits as soon as it is no
    longer ``parent``'s child (checked every ``PARENT_POLL`` seconds), computing or not.
    """
    import torch

    torch.set_num_threads(threads)
    threading.Thread(target=_exit_with, args=(parent,), name="exit-with-parent", daemon=True).start()


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(1)


def _require_server(option: str, starters: str) -> None:
    """Raise unless a Prefect server is configured: without one, ``starters`` would each start their own."""
    if not has_server():
        raise AuditError(
            f"{option} needs a Prefect server: without one, {starters} would start its own",
            "start one (prefect server start) and set PREFECT_API_URL=http://127.0.0.1:4200/api",
        )
