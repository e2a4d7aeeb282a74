"""Reading results back: one table of a run, some metrics, some examples' tokens, a content hash."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import duckdb
import pandas as pd

from tasks.store.schema import OUR_TABLES

RESULT_KEYS = {
    "examples": ["example_id"],
    "tokens": ["example_id", "position"],
    "token_scores": ["example_id", "method", "draw", "position"],
    "metrics": ["example_id", "method", "draw", "metric", "reference", "k"],
    "interventions": ["example_id", "intervention", "layer", "head", "statistic"],
    "head_agreement": ["example_id", "layer", "head", "reference", "statistic"],
}
"""The columns that identify a row of each per-example result table within a run."""


def read_table(connection: duckdb.DuckDBPyConnection, table: str, run_id: str) -> pd.DataFrame:
    """All rows of one table for one run (empty when an older file lacks the table).

    A per-example result table (``RESULT_KEYS``) comes back sorted by its key columns, missing values
    first: batches are written in the order they finish (``--concurrency``, a resumed run), and a
    seeded bootstrap over rows in write order would give intervals that depend on that order.

    Raises:
        ValueError: ``table`` is not a table of the schema.
    """
    if table not in OUR_TABLES:
        raise ValueError(f"unknown table {table!r}")
    present = connection.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
    ).fetchone()
    if not present or present[0] == 0:
        return pd.DataFrame()
    keys = RESULT_KEYS.get(table)
    order = f" ORDER BY {', '.join(f'{key} NULLS FIRST' for key in keys)}" if keys else ""
    return connection.execute(f"SELECT * FROM {table} WHERE run_id = ?{order}", [run_id]).df()


def finished_example_ids(connection: duckdb.DuckDBPyConnection, run_id: str) -> set[str]:
    """Ids of the examples whose batch is stored for this run."""
    rows = connection.execute("SELECT example_id FROM examples WHERE run_id = ?", [run_id]).fetchall()
    return {row[0] for row in rows}


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
