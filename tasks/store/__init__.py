"""The DuckDB file: the only package that imports duckdb. Owns the schema, writes and reads.

The schema is version 7 (``schema.py``: every table, what one row means, the migrations from
versions 1 to 6). ``connection.py`` opens a file and refuses, with a clear ``AuditError``, files that
are foreign, corrupt, newer or locked; ``frames.py`` turns records into the rows of each table;
``write.py`` writes a batch atomically and idempotently and replaces a run's verdicts, sanity checks,
seed baseline and not-applicable work; ``runs.py`` keeps a run's row; ``read.py`` reads results back
(whole tables, or the report's ``VIEWS`` of the large ones, reduced by DuckDB).

Callers use the package, ``from tasks import store`` then ``store.connect(...)``; the names below are
its public interface.
"""

from tasks.store.connection import connect, transaction
from tasks.store.frames import batch_frames, batch_id, frame_of
from tasks.store.read import (
    CATEGORICAL,
    RESULT_KEYS,
    TOP_HEADS,
    VIEWS,
    content_hash,
    example_table_query,
    finished_example_ids,
    read_example_tokens,
    read_metric,
    read_table,
    read_view,
)
from tasks.store.runs import (
    MEASURED_MANIFEST_KEYS,
    finish_run,
    read_run,
    read_runs,
    record_failure,
    record_manifest,
    register_run,
)
from tasks.store.schema import (
    DDL,
    MIGRATIONS,
    OUR_TABLES,
    RESULT_TABLES,
    SCHEMA_VERSION,
    TABLES,
    VERDICT_TABLES,
    table_columns,
)
from tasks.store.write import (
    write_batch,
    write_not_applicable,
    write_sanity_checks,
    write_seed_baseline,
    write_verdicts,
)

__all__ = [
    "CATEGORICAL",
    "DDL",
    "MEASURED_MANIFEST_KEYS",
    "MIGRATIONS",
    "OUR_TABLES",
    "RESULT_KEYS",
    "RESULT_TABLES",
    "SCHEMA_VERSION",
    "TABLES",
    "TOP_HEADS",
    "VERDICT_TABLES",
    "VIEWS",
    "batch_frames",
    "batch_id",
    "connect",
    "content_hash",
    "example_table_query",
    "finish_run",
    "finished_example_ids",
    "frame_of",
    "read_example_tokens",
    "read_metric",
    "read_run",
    "read_runs",
    "read_table",
    "read_view",
    "record_failure",
    "record_manifest",
    "register_run",
    "table_columns",
    "transaction",
    "write_batch",
    "write_not_applicable",
    "write_sanity_checks",
    "write_seed_baseline",
    "write_verdicts",
]
