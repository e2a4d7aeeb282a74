"""The DuckDB file: the only module that imports duckdb. Owns the schema, writes and reads.

Schema (version 5), long format, one row per fact, every table keyed by ``run_id``:

``runs``          one row per audit configuration: ``run_id``, ``status`` (running / finished),
                  ``config`` and ``manifest`` (JSON: model and data fingerprints, versions), times.
``examples``      one row per audited example: text, gold and predicted label, probabilities,
                  confidence, token counts, truncation, corpus metadata (JSON), ``batch_id``.
``tokens``        one row per token: id, string, whether it is special, character span in the text, and
                  whether it lies in the human rationale (NULL when the example has none).
``token_scores``  one row per (example, method, draw, position): the method's score.
``metrics``       one row per (example, method, draw, metric[, reference][, k]): the value. ``reference``
                  is set for agreement metrics, ``k`` for per-rationale-size faithfulness.
``interventions`` one row per (example, intervention, layer, head, statistic): the value. ``layer`` is
                  NULL when every layer was changed at once, ``head`` when every head of the layer was.
``head_agreement`` one row per (example, layer, head, reference, statistic): how a head's classification
                  row ranks tokens against a reference.
``example_verdicts`` one row per (example, attention method): the verdict, its reason and the five
                  evidence numbers (see ``tasks.verdict.evidence``).
``slice_verdicts`` one row per (method, slice, slice value): size, verdict, reason, the status of each
                  kind of evidence and each evidence's mean with its 95 % interval. Rows of the
                  method ``attention heads`` judge layers and heads.
``agreement_matrix`` one row per (slice, method pair, statistic): mean Kendall τ or top-k overlap of every
                  method with every other, with its 95 % interval (replaced with the verdicts).
``sanity_checks`` one row per (example, method, stage) of the model-randomisation cascade: Spearman
                  ρ between the explanation on the original and on the randomised model (signed and of
                  absolute values); stage 0 randomises the classification head, stage s also the top s
                  layers.
``failures``      one row per example whose batch failed after its retries: the error and the number of
                  attempts. A later successful write of the example removes its row.
``costs``         one row per (batch, stage): seconds, forward/backward rows and tokens.
``schema_info``   the schema version and the tool version that created the file.

Verdict tables are replaced as a whole each time a run finishes (they derive from the stored numbers and
the verdict settings). Version 1 lacked ``interventions`` and ``head_agreement``, version 2 the verdict
tables and ``tokens.in_rationale``, version 3 ``failures``, version 4 ``agreement_matrix``,
``sanity_checks`` and the reference-consistency columns; opening an older file for writing adds them
(``MIGRATIONS``).

A batch is written in one transaction that first deletes whatever rows its examples already have, so
a batch is either entirely present or absent, and re-writing it never duplicates rows. SQL is written
here only, with values passed as parameters, never formatted into the statement.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from tasks import __version__, faults
from tasks.errors import AuditError
from tasks.records import BatchResult, NotApplicable

SCHEMA_VERSION = 6

DDL = (
    """
    CREATE TABLE IF NOT EXISTS schema_info (
        key VARCHAR PRIMARY KEY,
        value VARCHAR NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS runs (
        run_id VARCHAR PRIMARY KEY,
        status VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        updated_at TIMESTAMP NOT NULL,
        config JSON NOT NULL,
        manifest JSON NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS examples (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        batch_id VARCHAR NOT NULL,
        text VARCHAR NOT NULL,
        label INTEGER,
        label_name VARCHAR,
        predicted INTEGER NOT NULL,
        predicted_name VARCHAR NOT NULL,
        confidence DOUBLE NOT NULL,
        probabilities DOUBLE[] NOT NULL,
        n_tokens INTEGER NOT NULL,
        n_content_tokens INTEGER NOT NULL,
        n_original_tokens INTEGER NOT NULL,
        truncated BOOLEAN NOT NULL,
        metadata JSON NOT NULL,
        text_pair VARCHAR,
        PRIMARY KEY (run_id, example_id)
    )""",
    """
    CREATE TABLE IF NOT EXISTS tokens (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        position INTEGER NOT NULL,
        token_id BIGINT NOT NULL,
        token VARCHAR NOT NULL,
        is_special BOOLEAN NOT NULL,
        char_start INTEGER NOT NULL,
        char_end INTEGER NOT NULL,
        in_rationale BOOLEAN,
        segment INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, example_id, position)
    )""",
    """
    CREATE TABLE IF NOT EXISTS token_scores (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        method VARCHAR NOT NULL,
        draw INTEGER NOT NULL,
        position INTEGER NOT NULL,
        score DOUBLE NOT NULL,
        PRIMARY KEY (run_id, example_id, method, draw, position)
    )""",
    """
    CREATE TABLE IF NOT EXISTS metrics (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        method VARCHAR NOT NULL,
        draw INTEGER NOT NULL,
        metric VARCHAR NOT NULL,
        reference VARCHAR,
        k DOUBLE,
        value DOUBLE
    )""",
    """
    CREATE TABLE IF NOT EXISTS interventions (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        intervention VARCHAR NOT NULL,
        layer INTEGER,
        head INTEGER,
        statistic VARCHAR NOT NULL,
        value DOUBLE
    )""",
    """
    CREATE TABLE IF NOT EXISTS head_agreement (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        layer INTEGER NOT NULL,
        head INTEGER NOT NULL,
        reference VARCHAR NOT NULL,
        statistic VARCHAR NOT NULL,
        value DOUBLE
    )""",
    """
    CREATE TABLE IF NOT EXISTS failures (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        batch_id VARCHAR NOT NULL,
        error_type VARCHAR NOT NULL,
        message VARCHAR NOT NULL,
        attempts INTEGER NOT NULL,
        failed_at TIMESTAMP NOT NULL
    )""",
    """
    CREATE TABLE IF NOT EXISTS costs (
        run_id VARCHAR NOT NULL,
        batch_id VARCHAR NOT NULL,
        stage VARCHAR NOT NULL,
        examples INTEGER NOT NULL,
        seconds DOUBLE NOT NULL,
        forward_rows BIGINT NOT NULL,
        forward_tokens BIGINT NOT NULL,
        backward_rows BIGINT NOT NULL,
        backward_tokens BIGINT NOT NULL,
        PRIMARY KEY (run_id, batch_id, stage)
    )""",
    """
    CREATE TABLE IF NOT EXISTS example_verdicts (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        method VARCHAR NOT NULL,
        verdict VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        agreement DOUBLE,
        comprehensiveness DOUBLE,
        sufficiency DOUBLE,
        erasure DOUBLE,
        sensitivity DOUBLE,
        consistency DOUBLE
    )""",
    """
    CREATE TABLE IF NOT EXISTS slice_verdicts (
        run_id VARCHAR NOT NULL,
        method VARCHAR NOT NULL,
        slice VARCHAR NOT NULL,
        slice_value VARCHAR NOT NULL,
        n INTEGER NOT NULL,
        verdict VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        agreement VARCHAR NOT NULL,
        faithfulness VARCHAR NOT NULL,
        interventions VARCHAR NOT NULL,
        agreement_mean DOUBLE, agreement_low DOUBLE, agreement_high DOUBLE,
        comprehensiveness_mean DOUBLE, comprehensiveness_low DOUBLE, comprehensiveness_high DOUBLE,
        sufficiency_mean DOUBLE, sufficiency_low DOUBLE, sufficiency_high DOUBLE,
        erasure_mean DOUBLE, erasure_low DOUBLE, erasure_high DOUBLE,
        sensitivity_mean DOUBLE, sensitivity_low DOUBLE, sensitivity_high DOUBLE,
        importance_mean DOUBLE, importance_low DOUBLE, importance_high DOUBLE,
        consistency_mean DOUBLE, consistency_low DOUBLE, consistency_high DOUBLE
    )""",
    """
    CREATE TABLE IF NOT EXISTS agreement_matrix (
        run_id VARCHAR NOT NULL,
        slice VARCHAR NOT NULL,
        slice_value VARCHAR NOT NULL,
        method VARCHAR NOT NULL,
        other VARCHAR NOT NULL,
        statistic VARCHAR NOT NULL,
        n INTEGER NOT NULL,
        mean DOUBLE, low DOUBLE, high DOUBLE
    )""",
    """
    CREATE TABLE IF NOT EXISTS sanity_checks (
        run_id VARCHAR NOT NULL,
        example_id VARCHAR NOT NULL,
        method VARCHAR NOT NULL,
        stage INTEGER NOT NULL,
        randomised VARCHAR NOT NULL,
        spearman DOUBLE,
        spearman_absolute DOUBLE
    )""",
    """
    CREATE TABLE IF NOT EXISTS not_applicable (
        run_id VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        PRIMARY KEY (run_id, kind, name)
    )""",
    "CREATE INDEX IF NOT EXISTS metrics_by_example ON metrics (run_id, example_id)",
    "CREATE INDEX IF NOT EXISTS interventions_by_example ON interventions (run_id, example_id)",
    "CREATE INDEX IF NOT EXISTS head_agreement_by_example ON head_agreement (run_id, example_id)",
)
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: tuple(statement for statement in DDL if "interventions" in statement or "head_agreement" in statement),
    2: (
        *(statement for statement in DDL if "_verdicts" in statement),
        "ALTER TABLE tokens ADD COLUMN IF NOT EXISTS in_rationale BOOLEAN",
    ),
    3: tuple(statement for statement in DDL if "failures" in statement),
    4: (
        *(statement for statement in DDL if "agreement_matrix" in statement or "sanity_checks" in statement),
        "ALTER TABLE example_verdicts ADD COLUMN IF NOT EXISTS consistency DOUBLE",
        *(
            f"ALTER TABLE slice_verdicts ADD COLUMN IF NOT EXISTS consistency_{end} DOUBLE"
            for end in ("mean", "low", "high")
        ),
    ),
    5: (
        *(statement for statement in DDL if "not_applicable" in statement),
        "ALTER TABLE examples ADD COLUMN IF NOT EXISTS text_pair VARCHAR",
        "ALTER TABLE tokens ADD COLUMN IF NOT EXISTS segment INTEGER DEFAULT 0",
    ),
}
"""Statements that take a database from a version to the next."""
RESULT_TABLES = ("examples", "tokens", "token_scores", "metrics", "interventions", "head_agreement")
VERDICT_TABLES = ("example_verdicts", "slice_verdicts", "agreement_matrix")
OUR_TABLES = {
    "schema_info", "runs", "costs", "failures", "sanity_checks", "not_applicable", *RESULT_TABLES, *VERDICT_TABLES,
}  # fmt: skip


# --- connecting -----------------------------------------------------------------------------


@contextmanager
def connect(path: Path, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open (creating if needed) an attention-audit database, checking its schema version.

    Raises:
        AuditError: The file is not a DuckDB database, belongs to another application, was written by
            a newer schema version, is locked by another process, or its folder cannot be written.
    """
    path = Path(path)
    if read_only and not path.exists():
        raise AuditError(f"there is no database at {path}", "run an audit first, or pass the right --db")
    if not read_only:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise AuditError(
                f"cannot create the folder {path.parent} for the database: {error.strerror}",
                "choose a writable location with --db",
            ) from error
    try:
        connection = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as error:
        message = str(error)
        if "lock" in message.lower():
            raise AuditError(
                f"the database {path} is in use by another process ({message.splitlines()[0]})",
                "wait for the other audit to finish, or write this one to another file with --db",
            ) from error
        if "permission" in message.lower() or "read-only" in message.lower():
            raise AuditError(
                f"cannot write the database {path}: {message.splitlines()[0]}",
                "choose a writable location with --db",
            ) from error
        raise AuditError(
            f"{path} is not a readable DuckDB database ({message.splitlines()[0]})",
            "pass a database written by attention-audit, or a new path with --db; the file was left untouched",
        ) from error
    except duckdb.Error as error:
        raise AuditError(
            f"{path} is not a readable DuckDB database ({str(error).splitlines()[0]})",
            "pass a database written by attention-audit, or a new path with --db; the file was left untouched",
        ) from error
    try:
        _check_schema(connection, path, read_only)
        yield connection
    except (duckdb.IOException, duckdb.TransactionException) as error:
        if isinstance(error, duckdb.TransactionException) and "write" not in str(error).lower():
            raise
        reason = str(error).splitlines()[0]
        full = "space" in reason.lower()
        raise AuditError(
            f"writing to the database {path} failed: {reason}. The transaction was rolled back; the results "
            "stored before are intact",
            "free disk space, then run the same command again to resume"
            if full
            else "check that the file's disk is writable, then run the same command again to resume",
        ) from error
    finally:
        connection.close()


def _check_schema(connection: duckdb.DuckDBPyConnection, path: Path, read_only: bool) -> None:
    tables = {row[0] for row in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if tables and "schema_info" not in tables:
        raise AuditError(
            f"{path} is a DuckDB database of another application (tables: {', '.join(sorted(tables)[:5])})",
            "pass a new path with --db; the existing database was left untouched",
        )
    if "schema_info" in tables:
        row = connection.execute("SELECT value FROM schema_info WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise AuditError(
                f"{path} was written by a newer attention-audit (schema {version}; this one reads {SCHEMA_VERSION})",
                "upgrade attention-audit, or write to a new database with --db",
            )
        if version < SCHEMA_VERSION and not read_only:
            _migrate(connection, version)
        return
    if read_only:
        raise AuditError(f"{path} holds no attention-audit results", "run an audit first, or pass the right --db")
    with transaction(connection):
        for statement in DDL:
            connection.execute(statement)
        connection.execute(
            "INSERT INTO schema_info VALUES ('schema_version', ?), ('created_by', ?)",
            [str(SCHEMA_VERSION), f"attention-audit {__version__}"],
        )


def _migrate(connection: duckdb.DuckDBPyConnection, version: int) -> None:
    """Bring an older schema up to ``SCHEMA_VERSION``, one step per version, in one transaction."""
    with transaction(connection):
        for step in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS.get(step, ()):
                connection.execute(statement)
        connection.execute("UPDATE schema_info SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])


@contextmanager
def transaction(connection: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """All statements inside commit together or not at all."""
    connection.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        try:
            connection.execute("ROLLBACK")
        except duckdb.Error:
            pass  # a connection that broke mid-transaction has already discarded it
        raise
    connection.execute("COMMIT")


# --- runs -----------------------------------------------------------------------------------


def _now() -> datetime:
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


def write_not_applicable(connection: duckdb.DuckDBPyConnection, run_id: str, rows: Sequence[NotApplicable]) -> None:
    """Replace the run's record of configured work this model cannot support (``kind``, ``name``, ``reason``)."""
    frame = pd.DataFrame(
        [{"kind": row.kind, "name": row.name, "reason": row.reason} for row in rows],
        columns=["kind", "name", "reason"],
    )
    _replace_run_rows(connection, "not_applicable", run_id, frame)


def write_sanity_checks(connection: duckdb.DuckDBPyConnection, run_id: str, frame: pd.DataFrame) -> None:
    """Replace a run's sanity-check rows in one transaction."""
    _replace_run_rows(connection, "sanity_checks", run_id, frame)


def _replace_run_rows(connection: duckdb.DuckDBPyConnection, table: str, run_id: str, frame: pd.DataFrame) -> None:
    """Replace every row of ``table`` for ``run_id`` by ``frame`` (without ``run_id``), in one transaction."""
    with transaction(connection):
        connection.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        if not frame.empty:
            connection.register("replacement_rows", frame.assign(run_id=run_id))
            connection.execute(f"INSERT INTO {table} BY NAME SELECT * FROM replacement_rows")
            connection.unregister("replacement_rows")


MEASURED_MANIFEST_KEYS = ("throughput", "sanity")
"""Manifest entries recorded during a run (not by planning it): kept when the run is registered again."""


def record_manifest(connection: duckdb.DuckDBPyConnection, run_id: str, key: str, value: object) -> None:
    """Set one entry of the run's manifest (e.g. the measured throughput, the sanity check's settings)."""
    row = connection.execute("SELECT manifest FROM runs WHERE run_id = ?", [run_id]).fetchone()
    manifest = {**json.loads(row[0]), key: value}
    connection.execute("UPDATE runs SET manifest = ? WHERE run_id = ?", [json.dumps(manifest, default=str), run_id])


def finish_run(connection: duckdb.DuckDBPyConnection, run_id: str) -> str:
    """Mark a run ``finished``, or ``finished with failures`` when examples failed; returns the status."""
    failed = connection.execute("SELECT count(*) FROM failures WHERE run_id = ?", [run_id]).fetchone()
    status = "finished with failures" if failed and failed[0] else "finished"
    connection.execute("UPDATE runs SET status = ?, updated_at = ? WHERE run_id = ?", [status, _now(), run_id])
    return status


def record_failure(
    connection: duckdb.DuckDBPyConnection, run_id: str, example_ids: Sequence[str], error: BaseException, attempts: int
) -> None:
    """Record that the batch of ``example_ids`` failed (replacing earlier failure rows of these examples)."""
    frame = pd.DataFrame(
        {
            "run_id": run_id,
            "example_id": list(example_ids),
            "batch_id": batch_id(example_ids),
            "error_type": type(error).__name__,
            "message": str(error)[:2000] or type(error).__name__,
            "attempts": attempts,
            "failed_at": _now(),
        }
    )
    with transaction(connection):
        connection.register("failed_rows", frame)
        connection.execute(
            "DELETE FROM failures WHERE run_id = ? AND example_id IN (SELECT example_id FROM failed_rows)", [run_id]
        )
        connection.execute("INSERT INTO failures BY NAME SELECT * FROM failed_rows")
        connection.unregister("failed_rows")


def finished_example_ids(connection: duckdb.DuckDBPyConnection, run_id: str) -> set[str]:
    """Ids of the examples whose batch is stored for this run."""
    rows = connection.execute("SELECT example_id FROM examples WHERE run_id = ?", [run_id]).fetchall()
    return {row[0] for row in rows}


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


# --- writing a batch ------------------------------------------------------------------------


def batch_id(example_ids: Sequence[str]) -> str:
    """A stable id for a set of examples (order-independent)."""
    return hashlib.sha256("\n".join(sorted(example_ids)).encode()).hexdigest()[:16]


def batch_frames(run_id: str, result: BatchResult, labels: Sequence[str]) -> dict[str, pd.DataFrame]:
    """The rows a batch adds to each table."""
    ids = [example.example_id for example in result.examples]
    this_batch = batch_id(ids)
    predictions = {p.example_id: p for p in result.predictions}
    examples = pd.DataFrame(
        [
            {
                "run_id": run_id,
                "example_id": e.example_id,
                "batch_id": this_batch,
                "text": e.text,
                "label": e.label,
                "label_name": labels[e.label] if e.label is not None else None,
                "predicted": predictions[e.example_id].predicted,
                "predicted_name": labels[predictions[e.example_id].predicted],
                "confidence": predictions[e.example_id].confidence,
                "probabilities": [float(p) for p in predictions[e.example_id].probabilities],
                "n_tokens": e.length,
                "n_content_tokens": int(e.content_mask.sum()),
                "n_original_tokens": e.n_original_tokens,
                "truncated": e.truncated,
                "metadata": json.dumps(dict(e.metadata), default=str, ensure_ascii=False),
                "text_pair": e.text_pair,
            }
            for e in result.examples
        ]
    ).astype({"label": "Int64"})
    tokens = pd.DataFrame(
        {
            "run_id": run_id,
            "example_id": np.concatenate([[e.example_id] * e.length for e in result.examples]),
            "position": np.concatenate([np.arange(e.length) for e in result.examples]),
            "token_id": np.concatenate([e.input_ids for e in result.examples]),
            "token": [token for e in result.examples for token in e.tokens],
            "is_special": np.concatenate([e.special_mask for e in result.examples]),
            "char_start": np.concatenate([e.offsets[:, 0] for e in result.examples]),
            "char_end": np.concatenate([e.offsets[:, 1] for e in result.examples]),
            "segment": np.concatenate(
                [e.segments if e.segments is not None else np.zeros(e.length, np.int64) for e in result.examples]
            ),
            "in_rationale": pd.array(
                [
                    None if e.rationale is None else bool(flag)
                    for e in result.examples
                    for flag in (e.rationale if e.rationale is not None else [None] * e.length)
                ],
                dtype="boolean",
            ),
        }
    )
    scores = result.scores
    token_scores = pd.DataFrame(
        {
            "run_id": run_id,
            "example_id": np.concatenate([[s.example_id] * len(s.scores) for s in scores]) if scores else [],
            "method": np.concatenate([[s.method] * len(s.scores) for s in scores]) if scores else [],
            "draw": np.concatenate([[s.draw] * len(s.scores) for s in scores]) if scores else [],
            "position": np.concatenate([np.arange(len(s.scores)) for s in scores]) if scores else [],
            "score": np.concatenate([s.scores for s in scores]) if scores else [],
        }
    )
    metrics = pd.DataFrame(
        {
            "run_id": run_id,
            "example_id": [m.example_id for m in result.metrics],
            "method": [m.method for m in result.metrics],
            "draw": [m.draw for m in result.metrics],
            "metric": [m.metric for m in result.metrics],
            "reference": pd.array([m.reference for m in result.metrics], dtype="string"),
            "k": pd.array([m.k for m in result.metrics], dtype="Float64"),
            "value": np.array([m.value for m in result.metrics], dtype=np.float64),
        }
    )
    costs = pd.DataFrame(
        [
            {"run_id": run_id, "batch_id": this_batch, **{f: getattr(c, f) for f in c.__dataclass_fields__}}
            for c in result.costs
        ]
    )
    interventions = pd.DataFrame(
        {
            "run_id": run_id,
            "example_id": [v.example_id for v in result.interventions],
            "intervention": [v.intervention for v in result.interventions],
            "layer": pd.array([v.layer for v in result.interventions], dtype="Int32"),
            "head": pd.array([v.head for v in result.interventions], dtype="Int32"),
            "statistic": [v.statistic for v in result.interventions],
            "value": np.array([v.value for v in result.interventions], dtype=np.float64),
        }
    )
    head_agreement = pd.DataFrame(
        {
            "run_id": run_id,
            "example_id": [v.example_id for v in result.head_agreement],
            "layer": np.array([v.layer for v in result.head_agreement], dtype=np.int32),
            "head": np.array([v.head for v in result.head_agreement], dtype=np.int32),
            "reference": [v.reference for v in result.head_agreement],
            "statistic": [v.statistic for v in result.head_agreement],
            "value": np.array([v.value for v in result.head_agreement], dtype=np.float64),
        }
    )
    return {
        "examples": examples,
        "tokens": tokens,
        "token_scores": token_scores,
        "metrics": metrics,
        "interventions": interventions,
        "head_agreement": head_agreement,
        "costs": costs,
    }


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
    """Replace a run's verdicts (per example and per slice) and agreement matrix in one transaction."""
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


# --- reading --------------------------------------------------------------------------------


def read_table(connection: duckdb.DuckDBPyConnection, table: str, run_id: str) -> pd.DataFrame:
    """All rows of one result table for one run (empty when an older file lacks the table)."""
    if table not in OUR_TABLES:
        raise ValueError(f"unknown table {table!r}")
    present = connection.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
    ).fetchone()
    if not present or present[0] == 0:
        return pd.DataFrame()
    return connection.execute(f"SELECT * FROM {table} WHERE run_id = ?", [run_id]).df()


def read_metric(connection: duckdb.DuckDBPyConnection, run_id: str, metrics: Sequence[str]) -> pd.DataFrame:
    """Rows of the named metrics for one run."""
    return connection.execute(
        "SELECT * FROM metrics WHERE run_id = ? AND list_contains(?, metric)", [run_id, list(metrics)]
    ).df()


def read_example_tokens(
    connection: duckdb.DuckDBPyConnection, run_id: str, example_ids: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tokens and draw-0 token scores of some examples (for heatmaps)."""
    ids = list(example_ids)
    tokens = connection.execute(
        "SELECT * FROM tokens WHERE run_id = ? AND list_contains(?, example_id) ORDER BY example_id, position",
        [run_id, ids],
    ).df()
    scores = connection.execute(
        """SELECT * FROM token_scores WHERE run_id = ? AND draw = 0 AND list_contains(?, example_id)
           ORDER BY example_id, method, position""",
        [run_id, ids],
    ).df()
    return tokens, scores


RESULT_KEYS = {
    "examples": ["example_id"],
    "tokens": ["example_id", "position"],
    "token_scores": ["example_id", "method", "draw", "position"],
    "metrics": ["example_id", "method", "draw", "metric", "reference", "k"],
    "interventions": ["example_id", "intervention", "layer", "head", "statistic"],
    "head_agreement": ["example_id", "layer", "head", "reference", "statistic"],
}


def content_hash(connection: duckdb.DuckDBPyConnection, run_id: str) -> str:
    """SHA-256 over the run's result tables in key order: equal results give an equal hash.

    The batch id is left out: how examples were grouped into batches does not change the results.
    """
    digest = hashlib.sha256()
    for table, keys in RESULT_KEYS.items():
        frame = read_table(connection, table, run_id).drop(columns=["run_id", "batch_id"], errors="ignore")
        frame = frame.sort_values(keys, na_position="first").reset_index(drop=True)
        digest.update(table.encode())
        digest.update(pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes())
    return digest.hexdigest()
