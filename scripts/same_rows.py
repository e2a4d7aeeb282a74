"""Do two audit databases hold the same rows? For redesigns that must keep behaviour.

Usage: ``python scripts/same_rows.py BEFORE.duckdb AFTER.duckdb [--run-id ID]``

Every table of the schema is read for the run (the latest finished run of each file unless ``--run-id``)
through ``tasks.store``, the measured timings are left out (``seconds``, ``*_at`` timestamps, the
manifest's measured throughput), rows are sorted on every remaining column, and the two sides are compared
value by value: equal, or the largest absolute difference of numeric columns. Exit status 0 when every
table holds the same rows, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks import store

TIMINGS = ("seconds", "created_at", "updated_at", "failed_at")
"""Columns that measure when or how long, never what."""


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame without timing columns, in a canonical row order, with a plain index."""
    frame = frame.drop(columns=[column for column in TIMINGS if column in frame.columns])
    if frame.empty:
        return frame.reset_index(drop=True)
    keys = [column for column in frame.columns if frame[column].map(lambda v: isinstance(v, str | int | float)).all()]
    return frame.sort_values(keys, na_position="first", kind="stable").reset_index(drop=True)


def difference(before: pd.DataFrame, after: pd.DataFrame) -> str | None:
    """None when the frames hold the same rows; else what differs, in words."""
    if list(before.columns) != list(after.columns):
        return f"columns differ: {list(before.columns)} vs {list(after.columns)}"
    if len(before) != len(after):
        return f"{len(before)} rows vs {len(after)}"
    worst = []
    for column in before.columns:
        left, right = before[column], after[column]
        if pd.api.types.is_float_dtype(left) and pd.api.types.is_float_dtype(right):
            gap = np.nanmax(np.abs(left.to_numpy() - right.to_numpy()), initial=0.0)
            if not np.array_equal(left.isna(), right.isna()) or gap > 0:
                worst.append(f"{column}: max |difference| {gap:.3g}")
        elif not left.astype(str).equals(right.astype(str)):
            worst.append(f"{column}: {int((left.astype(str) != right.astype(str)).sum())} values differ")
    return "; ".join(worst) or None


def run_row(connection: Any, run_id: str) -> pd.DataFrame:
    """The run's configuration and its manifest less the measured throughput, as one comparable row."""
    run = store.read_run(connection, run_id)
    manifest = {key: value for key, value in run["manifest"].items() if key not in store.MEASURED_MANIFEST_KEYS}
    return pd.DataFrame([{"config": json.dumps(run["config"], sort_keys=True), "status": run["status"],
                          "manifest": json.dumps(manifest, sort_keys=True, default=str)}])  # fmt: skip


def tables_of(path: Path, run_id: str | None) -> tuple[str, dict[str, pd.DataFrame]]:
    """The run's id and every table of it, comparable."""
    with store.connect(path, read_only=True) as connection:
        run_id = run_id or store.read_run(connection)["run_id"]
        frames = {table: comparable(store.read_table(connection, table, run_id))
                  for table in store.TABLES if table not in ("schema_info", "runs")}  # fmt: skip
        frames["runs"] = run_row(connection, run_id)
    return run_id, frames


def main(argv: list[str] | None = None) -> int:
    """Compare two databases table by table and print one line per table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--run-id")
    args = parser.parse_args(argv)
    before_id, before = tables_of(args.before, args.run_id)
    after_id, after = tables_of(args.after, args.run_id)
    print(f"run {before_id} (before) vs {after_id} (after)")
    same = before_id == after_id
    for table in sorted(before):
        gap = difference(before[table], after[table])
        same &= gap is None
        print(f"{table:18} {len(before[table]):>8} rows  {'same' if gap is None else 'DIFFERENT: ' + gap}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
