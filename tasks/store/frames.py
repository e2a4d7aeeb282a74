"""Records into frames: the rows a batch adds to each table, in the table's declared column order.

``frame_of`` is the one place where a record type meets a table: every column that a record has an
attribute for is read from the record, with a pandas dtype that keeps ``None`` as SQL NULL; the
columns a record does not have (the run, the batch, values derived from two records) are given by the
caller. A column the table declares that is neither given nor an attribute is an error, so a record
and its table cannot drift apart silently. The schema is that of ``tasks.store.schema`` (version 7).
"""

from __future__ import annotations

import hashlib
import json
import typing
from collections.abc import Sequence
from functools import cache
from typing import Any, Literal

import numpy as np
import pandas as pd

from tasks.records import BatchResult, EncodedExample, TokenScores
from tasks.store.schema import table_columns

StoredDtype = Literal["float64", "Int64", "Float64", "string", "boolean"]
"""The pandas dtypes a record field is stored with (others are inferred)."""

_NULLABLE_DTYPES: dict[type, StoredDtype] = {int: "Int64", float: "Float64", str: "string", bool: "boolean"}
"""The pandas dtype of an ``X | None`` field: missing values become SQL NULL, not NaN or ``"None"``."""


def batch_id(example_ids: Sequence[str]) -> str:
    """A stable id for a set of examples (order-independent).

    The first 16 hex digits of SHA-256 over the sorted ids, one per line.
    """
    return hashlib.sha256("\n".join(sorted(example_ids)).encode()).hexdigest()[:16]


def frame_of(table: str, records: Sequence[Any], /, **columns: object) -> pd.DataFrame:
    """The rows ``records`` give ``table``, with the table's columns in its declared order.

    Args:
        table: A table of ``tasks.store.schema.TABLES``.
        records: The records the rows come from (dataclass instances). With no records the frame is
            empty, with every column of the table.
        **columns: Values of columns the records do not hold: a scalar (the same in every row) or one
            value per row (rows may be finer than records, e.g. one per token, when every column is
            given). Any column not given is the records' attribute of the same name (field or
            property); a field annotated ``X | None`` gets a nullable dtype, a ``float`` one float64.

    Raises:
        ValueError: A given column is not in the table, or a column of the table is neither given nor
            an attribute of the records.
    """
    declared = table_columns(table)
    unknown = sorted(set(columns) - set(declared))
    if unknown:
        raise ValueError(f"table {table} has no column {', '.join(unknown)}")
    if not records:
        return pd.DataFrame(columns=list(declared))
    kind = type(records[0])
    missing = [name for name in declared if name not in columns and not hasattr(records[0], name)]
    if missing:
        raise ValueError(f"column {', '.join(missing)} of table {table}: not given, and {kind.__name__} lacks it")
    return pd.DataFrame(
        {name: columns[name] if name in columns else _attribute(records, name, _dtype(kind, name)) for name in declared}
    )


def _attribute(records: Sequence[Any], name: str, dtype: StoredDtype | None) -> Any:
    """The attribute ``name`` of every record, as a pandas array of ``dtype`` (inferred when None)."""
    values = [getattr(record, name) for record in records]
    return values if dtype is None else pd.array(values, dtype=dtype)


@cache
def _dtype(kind: type, name: str) -> StoredDtype | None:
    """The pandas dtype for the field ``name`` of the dataclass ``kind`` (None: let pandas infer it)."""
    hint = typing.get_type_hints(kind).get(name)
    if hint is float:
        return "float64"
    arguments = typing.get_args(hint)
    if len(arguments) == 2 and type(None) in arguments:
        (inner,) = (argument for argument in arguments if argument is not type(None))
        return _NULLABLE_DTYPES.get(inner)
    return None


def batch_frames(run_id: str, result: BatchResult, labels: Sequence[str]) -> dict[str, pd.DataFrame]:
    """The rows a batch adds to each table (``tasks.store.write.write_batch`` writes them)."""
    this_batch = batch_id([example.example_id for example in result.examples])
    return {
        "examples": _examples_frame(run_id, this_batch, result, labels),
        "tokens": _tokens_frame(run_id, result.examples),
        "token_scores": _token_scores_frame(run_id, result.scores),
        "metrics": frame_of("metrics", result.metrics, run_id=run_id),
        "interventions": frame_of("interventions", result.interventions, run_id=run_id),
        "head_agreement": frame_of("head_agreement", result.head_agreement, run_id=run_id),
        "costs": frame_of("costs", result.costs, run_id=run_id, batch_id=this_batch),
    }


def _examples_frame(run_id: str, this_batch: str, result: BatchResult, labels: Sequence[str]) -> pd.DataFrame:
    """One row per example: its own fields, its prediction and the label names."""
    examples = result.examples
    by_id = {prediction.example_id: prediction for prediction in result.predictions}
    predictions = [by_id[example.example_id] for example in examples]
    return frame_of(
        "examples",
        examples,
        run_id=run_id,
        batch_id=this_batch,
        label_name=[labels[e.label] if e.label is not None else None for e in examples],
        predicted=[p.predicted for p in predictions],
        predicted_name=[labels[p.predicted] for p in predictions],
        confidence=[p.confidence for p in predictions],
        probabilities=[[float(value) for value in p.probabilities] for p in predictions],
        n_tokens=[e.length for e in examples],
        n_content_tokens=[int(e.content_mask.sum()) for e in examples],
        metadata=[json.dumps(dict(e.metadata), default=str, ensure_ascii=False) for e in examples],
    )


def _tokens_frame(run_id: str, examples: Sequence[EncodedExample]) -> pd.DataFrame:
    """One row per token of every example; ``in_rationale`` is NULL for examples without a rationale."""
    lengths = [e.length for e in examples]
    return frame_of(
        "tokens",
        examples,
        run_id=run_id,
        example_id=np.repeat([e.example_id for e in examples], lengths),
        position=np.concatenate([np.arange(length) for length in lengths]),
        token_id=np.concatenate([e.input_ids for e in examples]),
        token=[token for e in examples for token in e.tokens],
        is_special=np.concatenate([e.special_mask for e in examples]),
        char_start=np.concatenate([e.offsets[:, 0] for e in examples]),
        char_end=np.concatenate([e.offsets[:, 1] for e in examples]),
        in_rationale=pd.array(
            [
                None if e.rationale is None else bool(flag)
                for e in examples
                for flag in (e.rationale if e.rationale is not None else [None] * e.length)
            ],
            dtype="boolean",
        ),
        segment=np.concatenate(
            [e.segments if e.segments is not None else np.zeros(e.length, np.int64) for e in examples]
        ),
    )


def _token_scores_frame(run_id: str, scores: Sequence[TokenScores]) -> pd.DataFrame:
    """One row per (example, method, draw, position): the method's score of that token."""
    if not scores:
        return frame_of("token_scores", scores)
    lengths = [len(s.scores) for s in scores]
    return frame_of(
        "token_scores",
        scores,
        run_id=run_id,
        example_id=np.repeat([s.example_id for s in scores], lengths),
        method=np.repeat([s.method for s in scores], lengths),
        draw=np.repeat([s.draw for s in scores], lengths),
        position=np.concatenate([np.arange(length) for length in lengths]),
        score=np.concatenate([s.scores for s in scores]),
    )
