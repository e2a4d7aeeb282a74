"""Reading results back: tables, the report's views of the large ones, some examples' tokens, a content hash."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import duckdb
import pandas as pd
import pyarrow as pa

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
    if not _present(connection, table):
        return pd.DataFrame()
    keys = RESULT_KEYS.get(table)
    order = f" ORDER BY {', '.join(f'{key} NULLS FIRST' for key in keys)}" if keys else ""
    return connection.execute(f"SELECT * FROM {table} WHERE run_id = ?{order}", [run_id]).df()


TOP_HEADS = 5
"""Masked heads whose per-example rows the report reads (the largest mean TVD): its table shows them."""

VIEWS: dict[str, str] = {
    "metrics": """
        SELECT example_id, method, draw, metric, reference, k, value FROM metrics
        WHERE run_id = ? AND k IS NULL
        ORDER BY example_id, method, draw, metric, reference NULLS FIRST""",
    "metric_curves": """
        SELECT metric, method, k, avg(value) AS value FROM metrics
        WHERE run_id = ? AND k IS NOT NULL
        GROUP BY metric, method, k ORDER BY metric, method, k""",
    "head_agreement": """
        SELECT layer, head, avg(value) AS value FROM head_agreement
        WHERE run_id = ? GROUP BY layer, head ORDER BY layer, head""",
    "interventions": f"""
        WITH run AS (SELECT * FROM interventions WHERE run_id = ?),
        top AS (
            SELECT layer, head FROM run WHERE intervention = 'head_masking' AND statistic = 'tvd'
            GROUP BY layer, head ORDER BY avg(value) DESC, layer, head LIMIT {TOP_HEADS})
        SELECT example_id, intervention, layer, head, statistic, value FROM run
        WHERE intervention <> 'head_masking' OR EXISTS (
            SELECT 1 FROM top WHERE top.layer = run.layer AND top.head = run.head)
        ORDER BY example_id, intervention, layer NULLS FIRST, head NULLS FIRST, statistic""",
    "head_masking": """
        SELECT layer, head, statistic, avg(value) AS value FROM interventions
        WHERE run_id = ? AND intervention = 'head_masking'
        GROUP BY layer, head, statistic ORDER BY layer, head, statistic""",
}
"""What the report reads of the tables that grow fastest with the examples, reduced by DuckDB (one ``?``: the run).

``metrics``: the per-example rows the report bootstraps, without the rows at each rationale size k
(about 40 % of the table) and without the ``run_id`` and ``batch_id`` columns, in ``read_table``'s
order. ``metric_curves``: the mean of each metric at each rationale size k per method, over every
stored row (examples and the random baseline's draws), for the curves. ``head_agreement``: the mean
over examples and references of each head's agreement, for the head map. ``interventions``: the
per-example rows, of head masking only those of the ``TOP_HEADS`` heads with the largest mean TVD (the
one masking row per head and example is most of the table). ``head_masking``: each masked head's mean
of each statistic. Missing values are NULL in the file, so ``avg`` skips them as pandas' mean skips NaN.
"""

CATEGORICAL = {"metrics": ("example_id", "method", "metric", "reference")}
"""The text columns of a view that come back as pandas categoricals, their categories sorted: at 100,000
examples the ``metrics`` view has 54 million rows, each of whose texts repeats hundreds of times (92
bytes a row as text, 25 as categories). Sorted categories keep ``groupby`` and ``unstack`` in the order
of the text."""

BATCH_ROWS = 1_000_000
"""Rows of a view converted at a time, so that its text columns are never held whole as text."""


def read_view(connection: duckdb.DuckDBPyConnection, view: str, run_id: str) -> pd.DataFrame:
    """One of the ``VIEWS`` for one run (empty when an older file lacks its table).

    The rows come through Arrow, which converts millions of rows in about half the time and memory of
    ``.df()`` and gives the same frame; the ``CATEGORICAL`` columns are dictionary-encoded batch by batch.

    Raises:
        ValueError: ``view`` is not one of the ``VIEWS``.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}")
    table = {"metric_curves": "metrics", "head_masking": "interventions"}.get(view, view)
    if not _present(connection, table):
        return pd.DataFrame()
    encoded = CATEGORICAL.get(view, ())
    reader = connection.sql(VIEWS[view], params=[run_id]).to_arrow_reader(BATCH_ROWS)
    batches = [_dictionary_encoded(batch, encoded) for batch in reader]
    if not batches:
        return reader.schema.empty_table().to_pandas()
    frame = pa.Table.from_batches(batches).to_pandas()
    for column in encoded:
        frame[column] = frame[column].cat.reorder_categories(sorted(frame[column].cat.categories))
    return frame


def _dictionary_encoded(batch: pa.RecordBatch, columns: Sequence[str]) -> pa.RecordBatch:
    """The batch with the named columns dictionary-encoded (pandas reads them as categoricals)."""
    arrays = [
        array.dictionary_encode() if name in columns else array
        for name, array in zip(batch.schema.names, batch.columns, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def example_table_query(run_id: str) -> str:
    """The SQL a reader of the report runs to list every example of a run with its verdicts.

    One row per (example, attention-based explanation), in id order: the columns of the report's
    example table and the explanation's verdict and reason. The run id is quoted as an SQL literal.
    """
    literal = "'" + run_id.replace("'", "''") + "'"
    return (
        "SELECT e.example_id, e.text, e.text_pair, e.label_name, e.predicted_name, e.confidence,\n"
        "       e.n_content_tokens, v.method, v.verdict, v.reason\n"
        "FROM examples e LEFT JOIN example_verdicts v USING (run_id, example_id)\n"
        f"WHERE e.run_id = {literal}\n"
        "ORDER BY e.example_id, v.method;"
    )


def _present(connection: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether the file has the table (an older schema may lack it)."""
    rows = connection.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchall()
    return bool(rows and rows[0][0])


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
