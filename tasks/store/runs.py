"""A run's row in ``runs``: registering it, its manifest, its failed examples, finishing and reading it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import duckdb
import pandas as pd

from tasks.errors import AuditError
from tasks.store.connection import transaction
from tasks.store.frames import batch_id, frame_of

MEASURED_MANIFEST_KEYS = ("throughput", "sanity", "seeds", "execution")
"""Manifest entries recorded during a run (not by planning it): kept when the run is registered again, until
the run records them anew (``execution``: what the latest batches ran on)."""


def _now() -> datetime:
    """The current UTC time, without a time zone (as DuckDB's ``TIMESTAMP`` stores it)."""
    return datetime.now(UTC).replace(tzinfo=None)


def register_run(connection: duckdb.DuckDBPyConnection, run_id: str, config: dict, manifest: dict) -> bool:
    """Record a run (or mark an existing one running again, with the latest configuration).

    The configuration can differ only in what does not decide the numbers (execution, output, verdict
    thresholds, gate). Returns True if the run is new.
    """
    row = connection.execute("SELECT manifest FROM runs WHERE run_id = ?", [run_id]).fetchone()
    exists = row is not None
    with transaction(connection):
        if exists:
            previous = json.loads(row[0])
            kept = {key: previous[key] for key in MEASURED_MANIFEST_KEYS if key in previous}
            connection.execute(
                "UPDATE runs SET status = 'running', updated_at = ?, config = ?, manifest = ? WHERE run_id = ?",
                [_now(), json.dumps(config, default=str), json.dumps({**manifest, **kept}, default=str), run_id],
            )
        else:
            connection.execute(
                "INSERT INTO runs VALUES (?, 'running', ?, ?, ?, ?)",
                [run_id, _now(), _now(), json.dumps(config, default=str), json.dumps(manifest, default=str)],
            )
    return not exists


def record_manifest(connection: duckdb.DuckDBPyConnection, run_id: str, key: str, value: object) -> None:
    """Set one entry of the run's manifest (e.g. the measured throughput, the sanity check's settings)."""
    row = connection.execute("SELECT manifest FROM runs WHERE run_id = ?", [run_id]).fetchone()
    assert row is not None, f"no run {run_id}: register_run records it first"
    manifest = {**json.loads(row[0]), key: value}
    connection.execute("UPDATE runs SET manifest = ? WHERE run_id = ?", [json.dumps(manifest, default=str), run_id])


def record_failure(
    connection: duckdb.DuckDBPyConnection, run_id: str, example_ids: Sequence[str], error: BaseException, attempts: int
) -> None:
    """Record that the batch of ``example_ids`` failed (replacing earlier failure rows of these examples)."""
    frame = frame_of(
        "failures",
        example_ids,
        run_id=run_id,
        example_id=list(example_ids),
        batch_id=batch_id(example_ids),
        error_type=type(error).__name__,
        message=str(error)[:2000] or type(error).__name__,
        attempts=attempts,
        failed_at=_now(),
    )
    with transaction(connection):
        connection.register("failed_rows", frame)
        connection.execute(
            "DELETE FROM failures WHERE run_id = ? AND example_id IN (SELECT example_id FROM failed_rows)", [run_id]
        )
        connection.execute("INSERT INTO failures BY NAME SELECT * FROM failed_rows")
        connection.unregister("failed_rows")


def finish_run(connection: duckdb.DuckDBPyConnection, run_id: str) -> str:
    """Mark a run ``finished``, or ``finished with failures`` when examples failed; returns the status."""
    failed = connection.execute("SELECT count(*) FROM failures WHERE run_id = ?", [run_id]).fetchone()
    status = "finished with failures" if failed and failed[0] else "finished"
    connection.execute("UPDATE runs SET status = ?, updated_at = ? WHERE run_id = ?", [status, _now(), run_id])
    return status


def read_runs(connection: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every run, newest first, with its example count."""
    return connection.execute(
        """
        SELECT r.run_id, r.status, r.created_at, r.updated_at, count(e.example_id) AS examples,
               r.config, r.manifest
        FROM runs r LEFT JOIN examples e USING (run_id)
        GROUP BY ALL ORDER BY r.updated_at DESC
        """
    ).df()


def read_run(connection: duckdb.DuckDBPyConnection, run_id: str | None = None) -> dict[str, Any]:
    """One run's row with parsed config and manifest; the most recently updated run when None.

    Raises:
        AuditError: No such run.
    """
    if run_id is None:
        row = connection.execute(
            "SELECT run_id, status, created_at, updated_at, config, manifest FROM runs ORDER BY updated_at DESC"
        ).fetchone()
    else:
        row = connection.execute(
            "SELECT run_id, status, created_at, updated_at, config, manifest FROM runs WHERE run_id = ?",
            [run_id],
        ).fetchone()
    if row is None:
        known = [r[0] for r in connection.execute("SELECT run_id FROM runs").fetchall()]
        raise AuditError(
            f"the database has no run {run_id!r}" if run_id else "the database has no runs",
            f"use one of: {', '.join(known)}" if known else "run an audit first",
        )
    return {
        "run_id": row[0],
        "status": row[1],
        "created_at": row[2],
        "updated_at": row[3],
        "config": json.loads(row[4]),
        "manifest": json.loads(row[5]),
    }
