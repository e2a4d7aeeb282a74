"""The ``audit`` flow: plan the run, map the batches over workers, store each batch, render the report."""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture
from pydantic import BaseModel

from flows.report import ReportPaths, report
from tasks.config import AuditConfig
from tasks.records import BatchResult
from tasks.steps import (
    audit_batch_task,
    finish_run_task,
    judge_run_task,
    plan_run_task,
    record_failure_task,
    register_run_task,
    store_batch_task,
)


class AuditOutcome(BaseModel):
    """What an audit produced and where it is."""

    run_id: str
    db: Path
    status: str
    examples: int
    computed: int
    reused: int
    failed: int
    report: ReportPaths | None


@flow(name="audit")
def audit(config: AuditConfig | None = None, render_report: bool = True) -> AuditOutcome:
    """Audit the configured model on the configured corpus and write the results and the report.

    Batches already stored for this run are reused, so a re-run of the same configuration (or of a
    killed run) computes only what is missing. At most ``concurrency`` batches are in flight: each is
    written to DuckDB as soon as it is done, so memory does not grow with the corpus. A batch that still
    fails after ``batch_retries`` retries is recorded per example in the ``failures`` table and the
    others go on; re-running the same configuration tries its examples again.
    """
    config = config or AuditConfig()
    logger = get_run_logger()
    db = config.output.db
    plan = plan_run_task(config)
    done = register_run_task(db, plan, config)
    batches = plan.batches(done, config.execution.batch_size, config.execution.token_budget)
    pending = sum(len(batch) for batch in batches)
    logger.info(
        "run %s: %d examples, %d already stored, %d to compute in %d batches",
        plan.run_id,
        len(plan.examples),
        len(plan.examples) - pending,
        pending,
        len(batches),
    )
    started, finished, failed = time.perf_counter(), 0, 0
    in_flight: deque[tuple[list[str], PrefectFuture[BatchResult]]] = deque()
    compute = audit_batch_task.with_options(retries=config.execution.batch_retries)

    def store_oldest() -> None:
        nonlocal finished, failed
        example_ids, future = in_flight.popleft()
        future.wait()
        if future.state.is_completed():
            result = future.result()
            store_batch_task(db, plan.run_id, result, plan.labels)
            finished += len(result.examples)
        else:
            error = future.state.result(raise_on_failure=False)
            if not isinstance(error, BaseException):
                error = RuntimeError(str(future.state.message))
            record_failure_task(db, plan.run_id, example_ids, error, config.execution.batch_retries + 1)
            failed += len(example_ids)
            logger.error("a batch of %d examples failed: %s: %s", len(example_ids), type(error).__name__, error)
        elapsed = time.perf_counter() - started
        logger.info("%d/%d examples stored, %d failed (%.2f examples/s)", finished, pending, failed, finished / elapsed)

    for index, batch in enumerate(batches):
        future = compute.submit(index, config.model, batch, config.methods, config.interventions, config.execution)
        in_flight.append(([example.example_id for example in batch], future))
        if len(in_flight) >= config.execution.concurrency:
            store_oldest()
    while in_flight:
        store_oldest()
    judge_run_task(db, plan.run_id, config.methods.methods, config.verdict)
    status = finish_run_task(db, plan.run_id)
    paths = report(db, plan.run_id, config.output.out_dir, config.output.pdf) if render_report else None
    return AuditOutcome(
        run_id=plan.run_id,
        db=db,
        status=status,
        examples=len(plan.examples),
        computed=pending - failed,
        reused=len(plan.examples) - pending,
        failed=failed,
        report=paths,
    )
