"""Records into rows: every frame has exactly the columns its table declares, in order, and None is NULL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest

from tasks import store
from tasks.records import (
    BatchResult,
    EncodedExample,
    HeadAgreement,
    InterventionValue,
    MetricValue,
    NotApplicable,
    Prediction,
    StageCost,
    TokenScores,
)

LABELS = ("negative", "positive")


def example(example_id: str, label: int | None, **extra: object) -> EncodedExample:
    """A four-token example: ``[CLS] good film [SEP]``."""
    return EncodedExample(
        example_id=example_id,
        text="good film",
        label=label,
        input_ids=np.array([101, 2204, 2143, 102]),
        token_type_ids=np.zeros(4, np.int64),
        tokens=("[CLS]", "good", "film", "[SEP]"),
        offsets=np.array([[0, 0], [0, 4], [5, 9], [0, 0]]),
        special_mask=np.array([True, False, False, True]),
        n_original_tokens=6,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def hand_built() -> BatchResult:
    """A batch with a labelled example with a rationale and an unlabelled text pair, and one row of each kind."""
    scores = np.array([0.0, 0.7, 0.3, 0.0], dtype=np.float32)
    mask = np.array([False, True, True, False])
    return BatchResult(
        examples=(
            example("a", 1, rationale=np.array([False, True, False, False]), metadata={"spread": 0.5}),
            example("b", None, text_pair="a film", segments=np.array([0, 0, 1, 1])),
        ),
        predictions=(
            Prediction("a", np.array([0.25, 0.75]), np.array([-1.0, 1.0])),
            Prediction("b", np.array([0.6, 0.4]), np.array([0.2, -0.2])),
        ),
        scores=(
            TokenScores("a", "attention_last", scores, mask),
            TokenScores("b", "random", scores, mask, draw=1),
        ),
        metrics=(
            MetricValue("a", "attention_last", "kendall_tau", 0.5, reference="leave_one_out"),
            MetricValue("a", "attention_last", "comprehensiveness", 0.1, k=0.2),
            MetricValue("b", "random", "sufficiency", float("nan"), draw=1),
        ),
        costs=(StageCost("model_pass", 2, 0.5, 2, 8, 0, 0),),
        interventions=(
            InterventionValue("a", "uniform", "median_tvd", 0.2),
            InterventionValue("a", "head_masking", "flip_rate", 0.0, layer=1, head=3),
        ),
        head_agreement=(HeadAgreement("b", 0, 2, "leave_one_out", "kendall_tau", -0.25),),
    )


@pytest.fixture
def written(tmp_path: Path, hand_built: BatchResult) -> Iterator[duckdb.DuckDBPyConnection]:
    """A database holding the hand-built batch as run ``r``, opened read-only."""
    with store.connect(tmp_path / "audit.duckdb") as connection:
        store.write_batch(connection, "r", hand_built, LABELS)
    with store.connect(tmp_path / "audit.duckdb", read_only=True) as reading:
        yield reading


def test_table_columns_are_the_columns_duckdb_creates_in_order(tmp_path: Path) -> None:
    with store.connect(tmp_path / "audit.duckdb") as connection:
        for table in store.TABLES:
            described = tuple(row[0] for row in connection.execute(f"DESCRIBE {table}").fetchall())
            assert store.table_columns(table) == described, table


def test_every_batch_frame_has_exactly_its_tables_columns_in_order(hand_built: BatchResult) -> None:
    frames = store.batch_frames("r", hand_built, LABELS)

    assert set(frames) == {*store.RESULT_TABLES, "costs"}
    for table, frame in frames.items():
        assert list(frame.columns) == list(store.table_columns(table)), table
        assert not frame.empty, table
        assert (frame["run_id"] == "r").all(), table


def test_the_hand_built_batch_reads_back_row_for_row(written: duckdb.DuckDBPyConnection) -> None:
    examples = written.execute(
        "SELECT example_id, label, label_name, predicted_name, confidence, n_tokens, n_content_tokens, "
        "n_original_tokens, truncated, metadata, text_pair FROM examples ORDER BY example_id"
    ).fetchall()
    assert examples == [
        ("a", 1, "positive", "positive", 0.75, 4, 2, 6, True, '{"spread": 0.5}', None),
        ("b", None, None, "negative", 0.6, 4, 2, 6, True, "{}", "a film"),
    ]
    tokens = written.execute("SELECT example_id, in_rationale, segment FROM tokens ORDER BY example_id, position")
    assert tokens.fetchall() == [
        *(("a", flag, 0) for flag in (False, True, False, False)),
        *(("b", None, segment) for segment in (0, 0, 1, 1)),
    ]
    scores = written.execute("SELECT example_id, method, draw, position, score FROM token_scores ORDER BY ALL")
    assert scores.fetchall()[4:] == [("b", "random", 1, p, pytest.approx(s)) for p, s in enumerate((0, 0.7, 0.3, 0))]
    assert written.execute("SELECT batch_id, stage, forward_tokens FROM costs").fetchall() == [
        (store.batch_id(["b", "a"]), "model_pass", 8)
    ]


def test_missing_values_and_undefined_numbers_are_stored_as_null(written: duckdb.DuckDBPyConnection) -> None:
    metrics = written.execute("SELECT metric, reference, k, value FROM metrics ORDER BY metric").fetchall()
    assert metrics == [
        ("comprehensiveness", None, 0.2, 0.1),
        ("kendall_tau", "leave_one_out", None, 0.5),
        ("sufficiency", None, None, None),  # DuckDB reads pandas' NaN as NULL
    ]
    interventions = written.execute("SELECT intervention, layer, head FROM interventions ORDER BY ALL").fetchall()
    assert interventions == [("head_masking", 1, 3), ("uniform", None, None)]
    assert written.execute("SELECT layer, head, value FROM head_agreement").fetchall() == [(0, 2, -0.25)]


def test_frame_of_takes_fields_and_given_columns_in_declared_order() -> None:
    rows = (NotApplicable("method", "rollout", "no attention"), NotApplicable("intervention", "x", "y"))

    frame = store.frame_of("not_applicable", rows, run_id="r")

    assert list(frame.columns) == ["run_id", "kind", "name", "reason"]
    assert frame.to_dict("records")[0] == {"run_id": "r", "kind": "method", "name": "rollout", "reason": "no attention"}


def test_frame_of_no_records_is_empty_with_every_column() -> None:
    frame = store.frame_of("metrics", (), run_id="r")

    assert frame.empty and list(frame.columns) == list(store.table_columns("metrics"))


def test_frame_of_refuses_a_column_the_table_lacks_or_a_column_nobody_gives() -> None:
    rows = (NotApplicable("method", "rollout", "no attention"),)

    with pytest.raises(ValueError, match="has no column colour"):
        store.frame_of("not_applicable", rows, run_id="r", colour="red")
    with pytest.raises(ValueError, match="column run_id of table not_applicable"):
        store.frame_of("not_applicable", rows)
