"""The whole configuration (``AuditConfig``) and how the work runs and where it goes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from tasks.config.base import (
    FrozenModel,
)
from tasks.config.computation import InterventionOptions, MethodOptions
from tasks.config.inputs import DataSpec, ModelSpec
from tasks.config.judgement import SanityOptions, SeedOptions, VerdictOptions

OPTIONS_ADDED_LATER: dict[str, object] = {"soft_faithfulness": True}
"""``MethodOptions`` fields added after runs were stored, with the default that is what those runs computed."""


class ExecutionSettings(FrozenModel, frozen=True):
    """How the work runs; does not change the numbers beyond floating-point rounding.

    Attributes:
        batch_size: Examples per task (one gradient pass each); the unit of resumption.
        token_budget: Most tokens (rows x padded length) in one forward pass of perturbed inputs:
            bounds memory for long texts. 2048 by default: on two CPU cores a smaller pass keeps its
            activations in cache, and 8192 ran Value Zeroing 1.15x and leave-one-out 1.4x slower at 256
            tokens (``python benchmarks/method_costs.py --preset bbc-news --n 8 --methods
            value_zeroing,leave_one_out --units sentence --token-budget 2048|8192``).
        gradient_token_budget: The same for passes with a backward pass (integrated gradients' steps),
            which keep every layer's activations: smaller, so that memory stays bounded.
        concurrency: Batches computed at once: threads of this process (``threads``), or worker processes
            (``processes``). None: one per core with worker processes (``auto`` or ``processes``), one with
            threads; a local Dask cluster's workers with ``dask``.
        threads: torch intra-op threads per batch; None keeps torch's default in this process's threads, and
            gives each worker process (``processes``, a local Dask cluster's) an equal share of the CPU cores
            (``tasks.pipeline.runners.chosen_execution``).
        batch_retries: How often a failing batch is tried again before its examples are recorded as
            failed (the other batches go on).
        batch_timeout: Seconds a batch may take before it counts as failed (None: no limit).
        cache_batches: Keep each batch's results in Prefect's result storage under a key made of the
            run id (model fingerprint, data fingerprint, method configuration) and the batch's examples,
            so a later audit of the same model and data recomputes nothing, even into a new database.
        task_runner: ``auto`` (the default), ``threads`` of this process, ``processes`` on this machine
            (Prefect's process pool: each worker loads the model once; faster than threads for short
            inputs, whose small matrix products keep two threads waiting on each other), or ``dask``.
            ``auto`` chooses worker processes where they are faster and threads elsewhere
            (``tasks.pipeline.runners.chosen_execution``); the run's manifest records what ran.
        dask_address: Scheduler address of an existing Dask cluster; None starts a local one.
        dask_workers: Worker processes of that local cluster.
    """

    batch_size: int = Field(default=32, ge=1, le=4096, description="examples per task")
    token_budget: int = Field(default=2048, ge=64, description="most tokens per forward pass of perturbed inputs")
    gradient_token_budget: int = Field(default=2048, ge=64, description="most tokens per forward and backward pass")
    concurrency: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="batches computed at once",
        json_schema_extra={"unset": "one per core with worker processes, else 1"},
    )
    threads: int | None = Field(
        default=None, ge=1, description="torch threads", json_schema_extra={"unset": "torch default"}
    )
    batch_retries: int = Field(
        default=1, ge=0, le=10, description="tries again of a failing batch before its examples are recorded as failed"
    )
    batch_timeout: float | None = Field(
        default=None, gt=0, description="seconds a batch may take", json_schema_extra={"unset": "no limit"}
    )
    cache_batches: bool = Field(
        default=True, description="do not cache batch results", json_schema_extra={"flag": "--no-cache"}
    )
    task_runner: Literal["auto", "threads", "processes", "dask"] = Field(
        default="auto",
        description="threads of this process, worker processes on this machine, dask, or auto: processes where faster",
    )
    dask_address: str | None = Field(default=None, description="an existing Dask scheduler")
    dask_workers: int = Field(default=2, ge=1, le=256, description="workers of a local Dask cluster")


class OutputSettings(FrozenModel, frozen=True):
    """Where results go.

    Attributes:
        db: The DuckDB file that holds every run.
        out_dir: Folder for the HTML and PDF report.
        pdf: Also render the PDF (WeasyPrint).
        example_rows: Rows of the report's table of examples at most. A larger run shows its most
            informative examples and a seeded sample (``tasks.report.facts.example_table``), and the
            report gives the SQL that lists every example from the database.
    """

    db: Path = Field(default=Path("audit-output/audit.duckdb"), description="DuckDB file")
    out_dir: Path = Field(
        default=Path("audit-output"), description="report folder", json_schema_extra={"flag": "--out"}
    )
    pdf: bool = Field(default=True, description="render only the HTML report", json_schema_extra={"flag": "--no-pdf"})
    example_rows: int = Field(
        default=2_000,
        ge=1,
        le=1_000_000,
        description="rows of the report's example table at most (the most informative examples and a seeded sample; "
        "the database keeps every one)",
    )


class AuditConfig(FrozenModel, frozen=True):
    """The whole configuration of one audit.

    Attributes:
        gate: Checks ``KIND:METHOD`` the run must pass (``tasks.verdict.gate``; checked by
            ``tasks.verdict.resolve.resolve``).
    """

    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    methods: MethodOptions = Field(default_factory=MethodOptions)
    interventions: InterventionOptions = Field(default_factory=InterventionOptions)
    verdict: VerdictOptions = Field(default_factory=VerdictOptions)
    gate: tuple[str, ...] = Field(
        default=(),
        description="gate checks KIND:METHOD (faithful, not-unfaithful, beats-random, agrees; METHOD, any or all); "
        "a failing check exits with status 4",
        json_schema_extra={"flag": "--require"},
    )
    sanity: SanityOptions = Field(default_factory=SanityOptions)
    seeds: SeedOptions = Field(default_factory=SeedOptions)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)

    @model_validator(mode="after")
    def _top_k_fits(self) -> AuditConfig:
        if self.methods.agreement_top_k >= self.data.max_length:
            raise ValueError("agreement_top_k must be smaller than max_length")
        return self

    def identity(self) -> dict[str, Any]:
        """The parts of the configuration that decide the numbers (JSON-ready).

        ``data.target_precision`` is left out: it decides the numbers only through the ``limit`` it sets when
        the run is planned, so ``--target-precision`` and the ``--limit`` it chose are the same run. So is
        every option of ``OPTIONS_ADDED_LATER`` at its default, the work runs stored before it existed did:
        they keep their ids, and a resumed run goes on where it stopped.
        """
        methods = self.methods.model_dump(mode="json")
        for name, default in OPTIONS_ADDED_LATER.items():
            if methods[name] == default:
                del methods[name]
        return {
            "model": self.model.model_dump(mode="json"),
            "data": self.data.model_dump(mode="json", exclude={"target_precision"}),
            "methods": methods,
            "interventions": self.interventions.model_dump(mode="json"),
        }
