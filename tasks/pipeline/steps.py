"""The Prefect tasks: thin wrappers over the pure modules, and the only ``@task`` definitions.

Tasks receive references (the model spec, the database path), never live models or connections, so
the same flow can run on threads, processes or a cluster. The model is loaded once per worker by the
cached ``load_model``. Retries are declared for I/O (database writes, report files), not for the
deterministic numerics, which would fail the same way again, and none is made after a Ctrl-C
(``interrupts.unless_interrupted``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pandas as pd
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.utilities.annotations import quote

from tasks import faults, store
from tasks.config import (
    AuditConfig,
    ExecutionSettings,
    InterventionOptions,
    MethodOptions,
    ModelSpec,
    SanityOptions,
    VerdictOptions,
)
from tasks.evaluate import costs, sanity, seeds
from tasks.evaluate.sanity import Stage
from tasks.model.loading import load_model
from tasks.model.seeds import load_seed_models, seed_model_specs
from tasks.pipeline.batch import audit_batch
from tasks.pipeline.interrupts import unless_interrupted
from tasks.pipeline.plan import RunPlan, plan_run
from tasks.pipeline.progress import reported, run_logger
from tasks.records import BatchResult, EncodedExample
from tasks.verdict import gate
from tasks.verdict.evidence import example_evidence, example_verdicts
from tasks.verdict.slices import agreement_matrix, head_verdicts, slice_verdicts

if TYPE_CHECKING:  # the report's libraries (matplotlib, Jinja2, WeasyPrint) load in the report's tasks
    from tasks.report import ReportContext

T = TypeVar("T")


def as_is(value: T) -> T:
    """``value`` as a task argument that Prefect passes on untouched (``quote``).

    Prefect otherwise walks every field of every argument for futures to wait on: for a batch's results or
    the report's context, thousands of records and tenths of a second per call, and none of them is a future.
    """
    return cast(T, quote(value))


@task(name="plan-run", cache_policy=NO_CACHE)
def plan_run_task(config: AuditConfig) -> RunPlan:
    """Load the model and corpus, encode it, and derive the run id."""
    return plan_run(config)


@task(
    name="register-run", retries=2, retry_delay_seconds=2, retry_condition_fn=unless_interrupted, cache_policy=NO_CACHE
)
def register_run_task(db: Path, plan: RunPlan, config: AuditConfig) -> set[str]:
    """Record the run in the database; return the ids of examples already stored for it."""
    with store.connect(db) as connection:
        store.register_run(connection, plan.run_id, config.model_dump(mode="json"), plan.manifest)
        store.write_not_applicable(connection, plan.run_id, plan.not_applicable)
        return store.finished_example_ids(connection, plan.run_id)


@task(
    name="record-manifest",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=unless_interrupted,
    cache_policy=NO_CACHE,
)
def record_manifest_task(db: Path, run_id: str, key: str, value: object) -> None:
    """Set one entry of the run's manifest (``store.record_manifest``)."""
    with store.connect(db) as connection:
        store.record_manifest(connection, run_id, key, value)


@task(name="measure-throughput", cache_policy=NO_CACHE)
def measure_throughput_task(
    db: Path, run_id: str, model: ModelSpec, length: int, computed: bool
) -> costs.Throughput | None:
    """Measure the model's batched throughput at the run's median length and keep it with the run.

    Measured after the batches, on the model they warmed up: when this process ``computed`` some, or
    when the run has no throughput yet (killed after its last batch); otherwise the stored one stays.
    """
    if not computed:
        with store.connect(db, read_only=True) as connection:
            if "throughput" in store.read_run(connection, run_id)["manifest"]:
                return None
    throughput = costs.measure_throughput(load_model(model), length)
    with store.connect(db) as connection:
        store.record_manifest(connection, run_id, "throughput", dataclasses.asdict(throughput))
    return throughput


def _code_fingerprint() -> str:
    """SHA-256 of the ``tasks`` package's source: a cached result never outlives a change of the code that made it."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parents[1].rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


CODE_FINGERPRINT = _code_fingerprint()


def batch_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    """``<run id>-<batch id>-<code>``: the run id covers the model and data fingerprints and the options."""
    if not parameters["execution"].cache_batches:
        return None
    batch = store.batch_id([example.example_id for example in parameters["examples"]])
    return f"audit-batch-{parameters['run_id']}-{batch}-{CODE_FINGERPRINT}"


@task(
    name="audit-batch",
    task_run_name="audit-batch-{index}",
    cache_key_fn=batch_cache_key,
    persist_result=True,
)
def audit_batch_task(
    index: int,
    run_id: str,
    model: ModelSpec,
    examples: list[EncodedExample],
    options: MethodOptions,
    interventions: InterventionOptions,
    execution: ExecutionSettings,
    removal_sample: frozenset[str] = frozenset(),
) -> BatchResult:
    """Compute every method, metric and intervention for one batch (the model is loaded once per worker).

    ``removal_sample``: the run's examples the second removal operator recomputes (those of this batch count).

    Cached by ``batch_cache_key`` (unless ``execution.cache_batches`` is off); the timeout and retries
    are set by the flow from the execution settings.
    """
    with torch_threads(execution.threads), reported(f"batch {index}", run_logger(), bar=False, every=10.0) as progress:
        faults.checkpoint("batch-computing")
        bundle = load_model(model)
        return audit_batch(bundle, examples, options, interventions, execution, removal_sample, progress)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Torch's thread count set to ``threads`` (None: left as it is) for the block, and restored after."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@task(
    name="store-batch", retries=2, retry_delay_seconds=2, retry_condition_fn=unless_interrupted, cache_policy=NO_CACHE
)
def store_batch_task(db: Path, run_id: str, result: BatchResult, labels: tuple[str, ...]) -> int:
    """Write one batch's results in one transaction; returns the rows written."""
    with store.connect(db) as connection:
        return store.write_batch(connection, run_id, result, labels)


@task(
    name="record-failure",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=unless_interrupted,
    cache_policy=NO_CACHE,
)
def record_failure_task(db: Path, run_id: str, example_ids: list[str], error: BaseException, attempts: int) -> None:
    """Record the examples of a batch that failed after its retries, with the error."""
    with store.connect(db) as connection:
        store.record_failure(connection, run_id, example_ids, error, attempts)


@task(name="finish-run", retries=2, retry_delay_seconds=2, retry_condition_fn=unless_interrupted, cache_policy=NO_CACHE)
def finish_run_task(db: Path, run_id: str) -> str:
    """Mark the run finished (or finished with failures); returns the status."""
    with store.connect(db) as connection:
        return store.finish_run(connection, run_id)


@task(name="judge-run", retries=2, retry_delay_seconds=2, retry_condition_fn=unless_interrupted, cache_policy=NO_CACHE)
def judge_run_task(db: Path, run_id: str, methods: tuple[str, ...], options: VerdictOptions) -> int:
    """Compute and store the run's verdicts per example and per slice; returns the slice verdicts written."""
    with store.connect(db) as connection, reported("verdicts", run_logger(), bar=False) as progress:
        examples = store.read_table(connection, "examples", run_id)
        metrics = store.read_view(connection, "metrics", run_id)  # no verdict reads the rows at each size k
        interventions = store.read_table(connection, "interventions", run_id)
        heads = store.read_table(connection, "head_agreement", run_id)
        progress(1, 6, f"read {len(metrics)} metric rows of {len(examples)} examples")
        evidence = example_evidence(metrics, interventions, methods, options)
        progress(2, 6, "evidence per example")
        per_example = example_verdicts(evidence, examples, options)
        progress(3, 6, "verdicts per example")
        per_slice = pd.concat(
            [
                slice_verdicts(evidence, examples, options),
                head_verdicts(heads, interventions, options),
            ],
            ignore_index=True,
        )
        progress(4, 6, f"verdicts of {len(per_slice)} slices and heads")
        matrix = agreement_matrix(metrics, examples, options)
        progress(5, 6, "agreement matrix")
        store.write_verdicts(connection, run_id, per_example, per_slice, matrix)
        progress(6, 6, "stored")
        return len(per_slice)


@task(name="plan-sanity-check", cache_policy=NO_CACHE)
def plan_sanity_check_task(db: Path, plan: RunPlan, config: AuditConfig) -> tuple[list[EncodedExample], list[Stage]]:
    """The sanity check's sample and its stages (``sanity.stages``); none when it is off or already stored.

    The check runs once per run and settings: stored with the same ``config.sanity``, it is not run again.
    """
    options = config.sanity
    if not options.enabled:
        return [], []
    with store.connect(db, read_only=True) as connection:
        done = store.read_run(connection, plan.run_id)["manifest"].get("sanity")
        stored = not store.read_table(connection, "sanity_checks", plan.run_id).empty
    if stored and done == options.model_dump(mode="json"):
        return [], []
    chosen = sanity.sample(plan.examples, options.sample_size, options.seed, options.tokens)
    units = sanity.stages(load_model(config.model))
    run_logger().info(
        "sanity check: %d examples (%d tokens), recomputed on the original and %d randomised models",
        len(chosen),
        sum(example.length for example in chosen),
        len(units) - 1,
    )
    return chosen, units


@task(
    name="sanity-stage",
    task_run_name="sanity-stage-{stage}",
    retries=1,
    retry_condition_fn=unless_interrupted,
    cache_policy=NO_CACHE,
)
def sanity_stage_task(
    stage: Stage, examples: list[EncodedExample], config: AuditConfig, execution: ExecutionSettings
) -> sanity.StageScores:
    """One stage of the sanity check (``sanity.stage_scores``), in whichever worker takes it, as a batch runs."""
    with torch_threads(execution.threads):
        return sanity.stage_scores(
            load_model(config.model),
            examples,
            config.methods.methods,
            config.methods,
            config.sanity.seed,
            stage,
            execution.token_budget,
            batch_size=execution.batch_size,
        )


@task(
    name="store-sanity-check",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=unless_interrupted,
    cache_policy=NO_CACHE,
)
def store_sanity_check_task(
    db: Path, run_id: str, options: SanityOptions, scores: dict[Stage, sanity.StageScores]
) -> int:
    """Compare every stage with the original (``sanity.compared``) and store the rows; returns how many."""
    rows = sanity.compared(scores)
    with store.connect(db) as connection:
        store.write_sanity_checks(connection, run_id, rows)
        store.record_manifest(connection, run_id, "sanity", options.model_dump(mode="json"))
    return len(rows)


@task(name="seed-baseline", retries=1, retry_condition_fn=unless_interrupted, cache_policy=NO_CACHE)
def seed_baseline_task(db: Path, run_id: str, config: AuditConfig) -> int:
    """Compare the audited model with its other fine-tunings, once per run, settings and seed models.

    The seed models load through the cached loader from their specs (``tasks.model.seeds``); the manifest's
    ``seeds`` entry records the settings and each seed model's folder, weights fingerprint and training
    seed (when its build manifest has one). Returns the rows written (0 when nothing was asked or it is stored).
    """
    options = config.seeds
    if not options.models:
        return 0
    loaded = load_seed_models(config.model, seed_model_specs(config.model, options.models, progress=print))
    done = {
        "settings": options.model_dump(mode="json"),
        "models": [
            {
                "path": name,
                "fingerprint": bundle.fingerprint,
                "training_seed": bundle.source.get("build_manifest", {}).get("training", {}).get("seed"),
            }
            for name, bundle in loaded
        ],
    }
    with store.connect(db, read_only=True) as connection:
        recorded = store.read_run(connection, run_id)["manifest"].get("seeds")
        stored = not store.read_table(connection, "seed_distances", run_id).empty
    if stored and recorded == done:
        return 0
    plan = plan_run(config)
    chosen = (
        plan.examples
        if options.sample_size is None
        else sanity.sample(plan.examples, options.sample_size, options.seed)
    )
    with reported("seed baseline", run_logger()) as progress:
        distances, agreement = seeds.seed_baseline(
            load_model(config.model),
            loaded,
            chosen,
            plan.configured,
            plan.config.methods,
            plan.config.interventions.layers,
            batch_size=config.execution.batch_size,
            token_budget=config.execution.token_budget,
            progress=progress,
        )
    with store.connect(db) as connection:
        store.write_seed_baseline(connection, run_id, distances, agreement)
        store.record_manifest(connection, run_id, "seeds", done)
    return len(distances) + len(agreement)


@task(name="check-gate", cache_policy=NO_CACHE)
def check_gate_task(db: Path, run_id: str, checks: tuple[str, ...]) -> list[str]:
    """The gate checks that fail on the stored verdicts (empty when all pass or none are configured)."""
    if not checks:
        return []
    with store.connect(db, read_only=True) as connection:
        return gate.failed_checks(checks, store.read_table(connection, "slice_verdicts", run_id))


@task(name="publish-artifacts", cache_policy=NO_CACHE)
def publish_artifacts_task(context: ReportContext, html: Path, pdf: Path | None, summary: Path) -> None:
    """Show the outcome in the Prefect UI: a table of verdicts and headline metrics, and the report's paths."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    key = f"audit-{context.run_id}"
    create_table_artifact(
        key=key,
        table=[
            {
                "explanation": row.title,
                "verdict": row.verdict,
                "AOPC gain over random": f"{row.comprehensiveness:+.3f}",
                "Kendall τ with references": f"{row.agreement:.2f}",
            }
            for row in context.verdict.overall
        ],
        description=f"Verdicts of audit run {context.run_id}",
    )
    create_markdown_artifact(
        key=f"{key}-summary",
        markdown="\n\n".join(context.summary),
        description=f"Executive summary of audit run {context.run_id}",
    )
    for path in (p for p in (html, pdf, summary) if p is not None):
        create_link_artifact(
            key=f"{key}-{path.suffix.lstrip('.')}",
            link=path.resolve().as_uri(),
            link_text=path.name,
            description=f"The {path.suffix.lstrip('.').upper()} of the audit",
        )


@task(name="build-report-context", cache_policy=NO_CACHE)
def build_report_context_task(db: Path, run_id: str | None, generated_at: datetime, example_rows: int) -> ReportContext:
    """Read the run from the database and compute every number the report shows."""
    from tasks import report

    with store.connect(db, read_only=True) as connection:
        return report.build_context(connection, run_id, generated_at=generated_at, example_rows=example_rows)


@task(name="render-html", retries=1, retry_condition_fn=unless_interrupted, cache_policy=NO_CACHE)
def render_html_task(context: ReportContext, out_dir: Path) -> Path:
    """Write ``report-<run>.html`` (atomically: a killed render leaves the previous file intact)."""
    from tasks import report

    path = out_dir / f"report-{context.run_id}.html"
    _write_atomically(path, report.render_html(context).encode("utf-8"), "report-html")
    return path


@task(name="write-summary-json", retries=1, retry_condition_fn=unless_interrupted, cache_policy=NO_CACHE)
def write_summary_task(context: ReportContext, out_dir: Path) -> Path:
    """Write ``summary-<run>.json``: the verdicts and headline metrics, machine-readable (atomically)."""
    from tasks import report

    path = out_dir / f"summary-{context.run_id}.json"
    _write_atomically(path, json.dumps(report.summary_document(context), indent=2, ensure_ascii=False).encode("utf-8"))
    return path


@task(name="render-pdf", retries=1, retry_condition_fn=unless_interrupted, cache_policy=NO_CACHE)
def render_pdf_task(html_path: Path) -> Path:
    """Render the HTML report to ``report-<run>.pdf`` with WeasyPrint (atomically)."""
    from tasks import report

    path = html_path.with_suffix(".pdf")
    staging = path.with_name(f".{path.name}.partial")
    report.render_pdf(html_path.read_text(encoding="utf-8"), staging)
    faults.checkpoint("report-pdf")
    staging.replace(path)
    return path


def _write_atomically(path: Path, content: bytes, point: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial")
    staging.write_bytes(content)
    if point is not None:
        faults.checkpoint(point)
    staging.replace(path)
