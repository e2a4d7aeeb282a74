"""Where batches run: threads on this machine, or a Dask cluster (prefect-dask).

With Dask, every worker process loads the model once (``tasks.model.loading.load_model`` is cached per process)
and returns its batches' results to the flow, which alone writes DuckDB. Dask workers report their task
runs to the Prefect API, so a Dask run needs a Prefect server (``PREFECT_API_URL``): with Prefect's
ephemeral mode each worker process would start a server of its own. The command line's temporary server
(``flows.server``) exports its address to the processes it starts, so a local cluster needs nothing more.
"""

from __future__ import annotations

import os
from typing import Any

from tasks.config import ExecutionSettings
from tasks.errors import AuditError


def task_runner_for(execution: ExecutionSettings) -> Any:
    """The Prefect task runner the execution settings ask for.

    Raises:
        AuditError: Dask was asked for without ``prefect-dask`` installed or without a Prefect server.
    """
    if execution.task_runner == "threads":
        return _interruptible_threads(execution.concurrency)
    try:
        from prefect_dask.task_runners import DaskTaskRunner
    except ImportError as error:
        raise AuditError(
            "--task-runner dask needs the prefect-dask package, which is not installed",
            "pip install prefect-dask (it brings dask.distributed)",
        ) from error
    if not os.environ.get("PREFECT_API_URL"):
        raise AuditError(
            "--task-runner dask needs a Prefect server: without one, every Dask worker would start its own",
            "start one (prefect server start) and set PREFECT_API_URL=http://127.0.0.1:4200/api",
        )
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
            if exc_type is not None and issubclass(exc_type, KeyboardInterrupt) and self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None  # Prefect's exit then only sets the cancel events, joining nothing
            super().__exit__(exc_type, exc_value, traceback)

    return InterruptibleThreadPoolTaskRunner(max_workers=workers)
