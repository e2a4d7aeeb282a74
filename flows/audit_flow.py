"""The ``audit`` flow: plan the run, map the batches over workers, store each batch, judge, report.

``audit`` orchestrates; the batches are computed by the subflow ``audit-batches``, in the task runner the
configuration and the run's size choose (threads of this process, worker processes on this machine, or a
Dask cluster: ``tasks.pipeline.runners.chosen_execution``). Workers only compute and return
their batch's results; the flow, on one machine, writes each batch to DuckDB as it arrives (DuckDB takes
one writer), so no two processes ever write the file at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.futures import PrefectFuture
from pydantic import BaseModel
from tqdm.auto import tqdm

from flows.report_flow import ReportPaths, report
from tasks.config import AuditConfig
from tasks.evaluate.sanity import Stage, StageScores
from tasks.pipeline.interrupts import unless_interrupted
from tasks.pipeline.plan import RunPlan
from tasks.pipeline.runners import (
    InFlight,
    available_cores,
    chosen_execution,
    execution_record,
    has_server,
    task_runner_for,
)
from tasks.pipeline.steps import (
    as_is,
    audit_batch_task,
    check_gate_task,
    finish_run_task,
    judge_run_task,
    measure_throughput_task,
    plan_run_task,
    plan_sanity_check_task,
    record_failure_task,
    record_manifest_task,
    register_run_task,
    sanity_stage_task,
    seed_baseline_task,
    store_batch_task,
    store_sanity_check_task,
)
from tasks.records import BatchResult
from tasks.verdict.gate import GateFailed
from tasks.verdict.resolve import resolve


class BatchesOutcome(BaseModel):
    """What the batch subflow did."""

    run_id: str
    methods: tuple[str, ...]
    examples: int
    pending: int
    failed: int
    cached: int
    """Examples whose batch's results came from Prefect's result cache (computed by an earlier run)."""


class AuditOutcome(BaseModel):
    """What an audit produced and where it is."""

    run_id: str
    db: Path
    status: str
    examples: int
    computed: int
    cached: int
    """Examples whose results came from Prefect's result cache: computed before for the same run id and code."""
    reused: int
    """Examples already stored in this database for this run."""
    failed: int
    report: ReportPaths | None
    gate_failures: list[str] = []


@flow(name="audit-batches")
def audit_batches(config: AuditConfig) -> BatchesOutcome:
    """Compute and store every example of the run that is not stored yet, and the run's sanity check.

    The batches, then the sanity check's stages (``tasks.evaluate.sanity``: the original model and each
    randomised one, independent of each other), run as ``chosen_execution`` decides from the settings and
    their number (``auto``: worker processes where there are enough, threads otherwise); the manifest records
    it (``execution``). At most ``concurrency`` are in flight, the longest batches first: each batch is
    written to DuckDB as soon as it is done, whichever finishes first, and a new one takes its place, so no
    worker waits for another's batch and memory does not grow with the corpus. A batch that still fails
    after ``batch_retries`` retries is recorded per example in the ``failures`` table and the others go on;
    the sanity check is stored once all its stages are done (a stage that fails fails the run, after the
    batches are stored). The model's batched throughput (for the report's naive pass-count bound) is
    measured after the batches, on the model they warmed up.
    """
    logger = get_run_logger()
    db = config.output.db
    plan = plan_run_task(config)
    config = plan.config  # as given, less the work this model cannot support (recorded as not applicable)
    done = register_run_task(db, plan, config)
    batches = plan.batches(done, config.execution.batch_size, config.execution.token_budget)
    sanity_sample, sanity_stages = plan_sanity_check_task(db, as_is(plan), config)
    work = len(batches) + len(sanity_stages)
    execution = chosen_execution(config, work, cores=available_cores(), server=has_server())
    pending = sum(len(batch) for batch in batches)
    logger.info(
        "run %s: %d examples, %d already stored, %d to compute in %d batches",
        plan.run_id,
        len(plan.examples),
        len(plan.examples) - pending,
        pending,
        len(batches),
    )
    if work:
        record = execution_record(execution)
        record_manifest_task(db, plan.run_id, "execution", record)
        logger.info("batches on %s", record["summary"])
    started, finished, failed, cached = time.perf_counter(), 0, 0, 0
    in_flight: InFlight[PrefectFuture[Any], Callable[[PrefectFuture[Any]], None]] = InFlight()
    compute = audit_batch_task.with_options(
        retries=execution.batch_retries, retry_condition_fn=unless_interrupted, timeout_seconds=execution.batch_timeout
    )
    progress = tqdm(total=pending, desc="audit", unit="example", disable=None)
    sanity_scores: dict[Stage, StageScores] = {}
    sanity_failure: list[BaseException] = []

    def store_batch(example_ids: list[str], future: PrefectFuture[BatchResult]) -> None:
        nonlocal finished, failed, cached
        stored, lost = _store_or_record(db, plan, example_ids, future, execution.batch_retries + 1, logger)
        finished, failed = finished + stored, failed + lost
        cached += stored if from_cache(future.state) else 0
        progress.update(len(example_ids))
        elapsed = time.perf_counter() - started
        logger.info("%d/%d examples stored, %d failed (%.2f examples/s)", finished, pending, failed, finished / elapsed)

    def keep_sanity_stage(stage: Stage, future: PrefectFuture[StageScores]) -> None:
        try:
            sanity_scores[stage] = future.result()
        except Exception as error:  # raised once the batches in flight are stored
            sanity_failure.append(error)
            return
        label = sanity_scores[stage][0]
        logger.info("sanity check: %s (%d/%d stages)", label, len(sanity_scores), len(sanity_stages))

    jobs = [
        (
            compute,
            {
                "index": index,
                "run_id": plan.run_id,
                "model": config.model,
                "examples": batch,
                "options": config.methods,
                "interventions": config.interventions,
                "execution": execution,
                "removal_sample": plan.removal_sample & {example.example_id for example in batch},
            },
            partial(store_batch, [example.example_id for example in batch]),
        )
        for index, batch in enumerate(batches)
    ] + [
        (
            sanity_stage_task,
            {"stage": stage, "examples": sanity_sample, "config": config, "execution": execution},
            partial(keep_sanity_stage, stage),
        )
        for stage in sanity_stages
    ]

    def finish_next() -> None:
        future, finish = in_flight.next_finished()
        finish(future)

    with task_runner_for(execution) as runner:
        for task, parameters, finish in jobs:
            if len(in_flight) >= (execution.concurrency or 1):
                finish_next()
            in_flight.add(runner.submit(task, parameters), finish)
        while in_flight:
            finish_next()
    progress.close()
    if sanity_failure:
        raise sanity_failure[0]
    if sanity_stages:
        store_sanity_check_task(db, plan.run_id, config.sanity, as_is(sanity_scores))
    if plan.examples:
        median = sorted(example.length for example in plan.examples)[len(plan.examples) // 2]
        measure_throughput_task(db, plan.run_id, config.model, median, computed=pending > failed + cached)
    return BatchesOutcome(
        run_id=plan.run_id,
        methods=plan.methods,
        examples=len(plan.examples),
        pending=pending,
        failed=failed,
        cached=cached,
    )


def from_cache(state: State[Any]) -> bool:
    """Whether a task run's final state is Prefect's ``Cached``: its result was read, not computed."""
    return state.is_completed() and state.name == "Cached"


def _store_or_record(
    db: Path,
    plan: RunPlan,
    example_ids: list[str],
    future: PrefectFuture[BatchResult],
    attempts: int,
    logger: logging.Logger | logging.LoggerAdapter,
) -> tuple[int, int]:
    """Wait for one batch; store its results, or record its examples as failed after ``attempts`` tries.

    Returns:
        The examples stored and the examples failed.
    """
    future.wait()
    if future.state.is_completed():
        result = future.result()
        store_batch_task(db, plan.run_id, as_is(result), plan.labels)
        return len(result.examples), 0
    error = future.state.result(raise_on_failure=False)
    if not isinstance(error, BaseException):
        error = RuntimeError(str(future.state.message))
    record_failure_task(db, plan.run_id, example_ids, error, attempts)
    logger.error("a batch of %d examples failed: %s: %s", len(example_ids), type(error).__name__, error)
    return 0, len(example_ids)


@flow(name="audit")
def audit(config: AuditConfig | None = None, render_report: bool = True) -> AuditOutcome:
    """Audit the configured model on the configured corpus and write the results and the report.

    Batches already stored for this run are reused, so a re-run of the same configuration (or of a
    killed run) computes only what is missing, and a batch computed before for the same model, data and
    methods comes from Prefect's cache. With the batches, on the same workers: the sanity check. After
    them: the seed baseline (when asked for), verdicts, the run's status, the report (with Prefect
    artifacts), and the configured gate, which fails the flow run when a required check fails.

    Raises:
        GateFailed: A check of ``config.gate`` failed (after the report was written).
    """
    config = resolve(config or AuditConfig())
    db = config.output.db
    batches = audit_batches(config)
    seed_baseline_task(db, batches.run_id, config)
    judge_run_task(db, batches.run_id, batches.methods, config.verdict)
    status = finish_run_task(db, batches.run_id)
    output = config.output
    paths = report(db, batches.run_id, output.out_dir, output.pdf, output.example_rows) if render_report else None
    outcome = AuditOutcome(
        run_id=batches.run_id,
        db=db,
        status=status,
        examples=batches.examples,
        computed=batches.pending - batches.failed - batches.cached,
        cached=batches.cached,
        reused=batches.examples - batches.pending,
        failed=batches.failed,
        report=paths,
    )
    failures = check_gate_task(db, batches.run_id, config.gate)
    if failures:
        raise GateFailed(failures, outcome.model_dump(mode="json"))
    return outcome
