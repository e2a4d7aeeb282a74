"""Writing results: a batch, a run's verdicts, its sanity checks, seed baseline and not-applicable work.

A batch is written in one transaction that first deletes whatever rows its examples already have, so
a batch is either entirely present or absent, and re-writing it never duplicates rows; a successful
write also removes the examples' ``failures`` rows. Run-wide tables (verdicts, agreement matrix,
sanity checks, seed baseline, not applicable) are replaced as a whole for the run, in one transaction. SQL takes
values as parameters, never formatted into the statement; only table names from
``tasks.store.schema`` are.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pandas as pd

from tasks import faults
from tasks.records import BatchResult, NotApplicable, SeedAgreement, SeedDistance
from tasks.store.connection import transaction
from tasks.store.frames import batch_frames, batch_id, frame_of
from tasks.store.schema import RESULT_TABLES


def write_batch(connection: duckdb.DuckDBPyConnection, run_id: str, result: BatchResult, labels: Sequence[str]) -> int:
    """Write one batch atomically, replacing any rows its examples already had. Returns rows written."""
    frames = batch_frames(run_id, result, labels)
    ids = pd.DataFrame({"example_id": [e.example_id for e in result.examples]})
    written = 0
    with transaction(connection):
        connection.register("batch_example_ids", ids)
        for table in RESULT_TABLES:
            connection.execute(
                f"DELETE FROM {table} WHERE run_id = ? AND example_id IN (SELECT example_id FROM batch_example_ids)",
                [run_id],
            )
        connection.execute(
            "DELETE FROM costs WHERE run_id = ? AND batch_id = ?",
            [run_id, batch_id(ids["example_id"].tolist())],
        )
        for table, frame in frames.items():
            if frame.empty:
                continue
            connection.register("batch_rows", frame)
            connection.execute(f"INSERT INTO {table} BY NAME SELECT * FROM batch_rows")
            connection.unregister("batch_rows")
            written += len(frame)
        connection.execute(
            "DELETE FROM failures WHERE run_id = ? AND example_id IN (SELECT example_id FROM batch_example_ids)",
            [run_id],
        )
        connection.unregister("batch_example_ids")
        faults.checkpoint("batch-writing")
    faults.checkpoint("batch-written")
    return written


def write_verdicts(
    connection: duckdb.DuckDBPyConnection,
    run_id: str,
    examples: pd.DataFrame,
    slices: pd.DataFrame,
    matrix: pd.DataFrame | None = None,
) -> None:
    """Replace a run's verdicts (per example and per slice) and agreement matrix in one transaction.

    A ``matrix`` of None leaves the stored agreement matrix as it is.
    """
    frames = (("example_verdicts", examples), ("slice_verdicts", slices), ("agreement_matrix", matrix))
    with transaction(connection):
        for table, frame in frames:
            if frame is None:
                continue
            connection.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            if frame.empty:
                continue
            connection.register("verdict_rows", frame.assign(run_id=run_id))
            connection.execute(f"INSERT INTO {table} BY NAME SELECT * FROM verdict_rows")
            connection.unregister("verdict_rows")
        faults.checkpoint("verdicts-writing")


def write_not_applicable(connection: duckdb.DuckDBPyConnection, run_id: str, rows: Sequence[NotApplicable]) -> None:
    """Replace the run's record of configured work this model cannot support (``kind``, ``name``, ``reason``)."""
    _replace_run_rows(connection, "not_applicable", run_id, frame_of("not_applicable", rows, run_id=run_id))


def write_sanity_checks(connection: duckdb.DuckDBPyConnection, run_id: str, frame: pd.DataFrame) -> None:
    """Replace a run's sanity-check rows in one transaction."""
    _replace_run_rows(connection, "sanity_checks", run_id, frame)


def write_seed_baseline(
    connection: duckdb.DuckDBPyConnection,
    run_id: str,
    distances: Sequence[SeedDistance],
    agreement: Sequence[SeedAgreement],
) -> None:
    """Replace a run's seed baseline (``seed_distances`` and ``seed_agreement``) in one transaction."""
    with transaction(connection):
        for table, records in (("seed_distances", distances), ("seed_agreement", agreement)):
            _replace_rows(connection, table, run_id, frame_of(table, records, run_id=run_id))


def _replace_run_rows(connection: duckdb.DuckDBPyConnection, table: str, run_id: str, frame: pd.DataFrame) -> None:
    """Replace every row of ``table`` for ``run_id`` by ``frame`` (its ``run_id`` is set), in one transaction."""
    with transaction(connection):
        _replace_rows(connection, table, run_id, frame)


def _replace_rows(connection: duckdb.DuckDBPyConnection, table: str, run_id: str, frame: pd.DataFrame) -> None:
    """Inside a transaction: delete ``table``'s rows of ``run_id`` and insert ``frame`` (its ``run_id`` set)."""
    connection.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
    if not frame.empty:
        connection.register("replacement_rows", frame.assign(run_id=run_id))
        connection.execute(f"INSERT INTO {table} BY NAME SELECT * FROM replacement_rows")
        connection.unregister("replacement_rows")
