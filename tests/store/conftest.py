"""Fixtures of the storage tests: one complete batch from the tiny model, a fresh database, helpers."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb
import pytest

from tasks import store
from tasks.config import ExecutionSettings, InterventionOptions, MethodOptions
from tasks.model.bundle import ModelBundle
from tasks.pipeline.batch import audit_batch
from tasks.records import BatchResult
from tests.conftest import TEXTS, encode

RUN = "run-under-test"
METHODS = ("attention_last", "leave_one_out", "random")
"""An attention method, a signed reference and the stochastic baseline: every kind of metric row."""


@pytest.fixture(scope="package")
def result(tiny_bundle: ModelBundle) -> BatchResult:
    """One batch of the standard texts, some with gold labels, with a small but complete set of methods."""
    gold = (0, 2, None, 1, 2)
    examples = [dataclasses.replace(e, label=g) for e, g in zip(encode(tiny_bundle, TEXTS), gold, strict=True)]
    return audit_batch(
        tiny_bundle,
        examples,
        MethodOptions(methods=METHODS, random_draws=2),
        InterventionOptions(interventions=("uniform", "head_masking")),
        ExecutionSettings(),
    )


@pytest.fixture
def labels(tiny_bundle: ModelBundle) -> tuple[str, ...]:
    """The tiny model's class names."""
    return tiny_bundle.labels


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A new, empty attention-audit database."""
    with store.connect(tmp_path / "audit.duckdb") as opened:
        yield opened


def subset(result: BatchResult, example_ids: Sequence[str]) -> BatchResult:
    """The part of a batch result that belongs to some of its examples (as a smaller batch would give)."""
    keep = set(example_ids)
    return BatchResult(
        examples=tuple(e for e in result.examples if e.example_id in keep),
        predictions=tuple(p for p in result.predictions if p.example_id in keep),
        scores=tuple(s for s in result.scores if s.example_id in keep),
        metrics=tuple(m for m in result.metrics if m.example_id in keep),
        costs=result.costs,
        interventions=tuple(v for v in result.interventions if v.example_id in keep),
        head_agreement=tuple(v for v in result.head_agreement if v.example_id in keep),
    )


def row_counts(connection: duckdb.DuckDBPyConnection, run_id: str = RUN) -> dict[str, int]:
    """Rows of each per-example result table and of ``costs`` stored for ``run_id``."""
    return {table: len(store.read_table(connection, table, run_id)) for table in (*store.RESULT_TABLES, "costs")}
