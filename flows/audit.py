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
    register_run_task,
    store_batch_task,
)


class AuditOutcome(BaseModel):
    """What an audit produced and where it is."""

    run_id: str
    db: Path
    examples: int
    computed: int
    reused: int
    report: ReportPaths | None


@flow(name="audit")
def audit(config: AuditConfig | None = None, render_report: bool = True) -> AuditOutcome:
    """Audit the configured model on the configured corpus and write the results and the report.

    Batches already stored for this run are reused, so a re-run of the same configuration (or of a
    killed run) computes only what is missing. At most ``concurrency`` batches are in flight: each is
    written to DuckDB as soon as it is done, so memory does not grow with the corpus.
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
    started, finished = time.perf_counter(), 0
    in_flight: deque[PrefectFuture[BatchResult]] = deque()

    def store_oldest() -> None:
        nonlocal finished
        result = in_flight.popleft().result()
        store_batch_task(db, plan.run_id, result, plan.labels)
        finished += len(result.examples)
        elapsed = time.perf_counter() - started
        logger.info("%d/%d examples stored (%.2f examples/s)", finished, pending, finished / elapsed)

    for index, batch in enumerate(batches):
        in_flight.append(
            audit_batch_task.submit(index, config.model, batch, config.methods, config.interventions, config.execution)
        )
        if len(in_flight) >= config.execution.concurrency:
            store_oldest()
    while in_flight:
        store_oldest()
    judge_run_task(db, plan.run_id, config.methods.methods, config.verdict)
    finish_run_task(db, plan.run_id)
    paths = report(db, plan.run_id, config.output.out_dir, config.output.pdf) if render_report else None
    return AuditOutcome(
        run_id=plan.run_id,
        db=db,
        examples=len(plan.examples),
        computed=pending,
        reused=len(plan.examples) - pending,
        report=paths,
    )
