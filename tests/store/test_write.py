"""Writing and reading back a batch: atomic, idempotent, exact round trips, a stable content hash."""

from __future__ import annotations

import dataclasses
import math

import duckdb
import numpy as np
import pandas as pd
import pytest

from tasks import store
from tasks.config import VerdictOptions
from tasks.records import BatchResult, MetricValue
from tasks.verdict.evidence import example_evidence
from tasks.verdict.slices import slice_verdicts
from tests.store.conftest import RUN, row_counts, subset

MetricKey = tuple[str, str, int, str, str | None, float | None]


def metric_key(example_id: str, method: str, draw: int, metric: str, reference: object, k: object) -> MetricKey:
    """A hashable key for a metric row; a missing reference or k is None whatever its stored form."""
    return (
        str(example_id),
        str(method),
        int(draw),
        str(metric),
        None if pd.isna(reference) else str(reference),
        None if pd.isna(k) else float(k),  # type: ignore[arg-type]
    )


def same_number(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


# --- writing ----------------------------------------------------------------------------------


def test_a_batch_written_twice_leaves_exactly_one_copy_of_every_row(
    connection: duckdb.DuckDBPyConnection, result: BatchResult, labels: tuple[str, ...]
) -> None:
    store.write_batch(connection, RUN, result, labels)
    once, hash_once = row_counts(connection), store.content_hash(connection, RUN)

    store.write_batch(connection, RUN, result, labels)

    assert row_counts(connection) == once
    assert store.content_hash(connection, RUN) == hash_once
    for table, keys in store.RESULT_KEYS.items():
        stored = store.read_table(connection, table, RUN)
        assert not stored.duplicated(keys).any(), f"{table} holds a row twice"


def test_write_batch_returns_the_number_of_rows_it_added(
    connection: duckdb.DuckDBPyConnection, result: BatchResult, labels: tuple[str, ...]
) -> None:
    written = store.write_batch(connection, RUN, result, labels)

    assert written == sum(row_counts(connection).values())


def test_rewriting_a_batch_leaves_other_runs_and_other_examples_alone(
    connection: duckdb.DuckDBPyConnection, result: BatchResult, labels: tuple[str, ...]
) -> None:
    ids = [e.example_id for e in result.examples]
    store.write_batch(connection, "other-run", result, labels)
    store.write_batch(connection, RUN, subset(result, ids[:2]), labels)
    store.write_batch(connection, RUN, subset(result, ids[2:]), labels)
    other_before = row_counts(connection, "other-run")

    store.write_batch(connection, RUN, subset(result, ids[:2]), labels)

    assert store.finished_example_ids(connection, RUN) == set(ids)
    assert row_counts(connection, "other-run") == other_before


# --- reading back -------------------------------------------------------------------------------


def test_row_counts_match_the_batch_result(
    connection: duckdb.DuckDBPyConnection, result: BatchResult, labels: tuple[str, ...]
) -> None:
    store.write_batch(connection, RUN, result, labels)

    counts = row_counts(connection)
    assert counts["examples"] == len(result.examples)
    assert counts["tokens"] == sum(e.length for e in result.examples)
    assert counts["token_scores"] == sum(len(s.scores) for s in result.scores)
    assert counts["metrics"] == len(result.metrics)
    assert counts["costs"] == len(result.costs)


def test_examples_and_tokens_round_trip(
    connection: duckdb.DuckDBPyConnection, result: BatchResult, labels: tuple[str, ...]
) -> None:
    store.write_batch(connection, RUN, result, labels)

    stored = store.read_table(connection, "examples", RUN).set_index("example_id")
    tokens = store.read_table(connection, "tokens", RUN).sort_values(["example_id", "position"])
    for example, prediction in zip(result.examples, result.predictions, strict=True):
        row = stored.loc[example.example_id]
        assert row["text"] == example.text
        assert row["predicted"] == prediction.predicted
        assert row["predicted_name"] == labels[prediction.predicted]
        assert row["confidence"] == pytest.approx(prediction.confidence, abs=0, rel=1e-12)
        np.testing.assert_allclose(np.asarray(row["probabilities"]), prediction.probabilities, rtol=1e-7)
        assert row["n_tokens"] == example.length
        assert row["n_content_tokens"] == int(example.content_mask.sum())
        assert bool(row["truncated"]) == example.truncated
        if example.label is None:
            assert pd.isna(row["label"]) and pd.isna(row["label_name"])
        else:
            assert (row["label"], row["label_name"]) == (example.label, labels[example.label])
        mine = tokens[tokens["example_id"] == example.example_id]
        assert tuple(mine["token"]) == example.tokens
        np.testing.assert_array_equal(mine["token_id"].to_numpy(), example.input_ids)
        np.testing.assert_array_equal(mine["is_special"].to_numpy(), example.special_mask)
        np.testing.assert_array_equal(mine[["char_start", "char_end"]].to_numpy(), example.offsets)


def test_token_scores_round_trip(
    connection: duckdb.DuckDBPyConnection, result: BatchResult, labels: tuple[str, ...]
) -> None:
    store.write_batch(connection, RUN, result, labels)

    stored = store.read_table(connection, "token_scores", RUN)
    grouped = {key: frame.sort_values("position") for key, frame in stored.groupby(["example_id", "method", "draw"])}
    assert set(grouped) == {(s.example_id, s.method, s.draw) for s in result.scores}
    for record in result.scores:
        rows = grouped[(record.example_id, record.method, record.draw)]
        np.testing.assert_array_equal(rows["position"].to_numpy(), np.arange(len(record.scores)))
        np.testing.assert_array_equal(rows["score"].to_numpy(), record.scores.astype(np.float64))


def test_metrics_round_trip_with_their_reference_and_k(
    connection: duckdb.DuckDBPyConnection, result: BatchResult, labels: tuple[str, ...]
) -> None:
    store.write_batch(connection, RUN, result, labels)

    expected = {metric_key(m.example_id, m.method, m.draw, m.metric, m.reference, m.k): m.value for m in result.metrics}
    stored_rows = store.read_table(connection, "metrics", RUN)
    stored = {
        metric_key(row.example_id, row.method, row.draw, row.metric, row.reference, row.k): float(row.value)
        for row in stored_rows.itertuples()
    }
    assert len(expected) == len(result.metrics), "the fixture's metric keys are not unique"
    assert stored.keys() == expected.keys()
    assert all(same_number(stored[key], value) for key, value in expected.items())
    assert any(key[4] is not None for key in stored), "no agreement row (reference) was exercised"
    assert any(key[5] is not None for key in stored), "no per-k row was exercised"
    assert any(key[2] > 0 for key in stored), "no random draw beyond the first was exercised"


def test_finished_example_ids_are_the_stored_examples_of_that_run_only(
    connection: duckdb.DuckDBPyConnection, result: BatchResult, labels: tuple[str, ...]
) -> None:
    ids = [e.example_id for e in result.examples]
    assert store.finished_example_ids(connection, RUN) == set()

    store.write_batch(connection, RUN, subset(result, ids[:3]), labels)

    assert store.finished_example_ids(connection, RUN) == set(ids[:3])
    assert store.finished_example_ids(connection, "another-run") == set()


# --- content hash -----------------------------------------------------------------------------


def test_content_hash_ignores_how_examples_were_grouped_into_batches(
    connection: duckdb.DuckDBPyConnection, result: BatchResult, labels: tuple[str, ...]
) -> None:
    ids = [e.example_id for e in result.examples]
    store.write_batch(connection, "one-batch", result, labels)
    store.write_batch(connection, "two-batches", subset(result, ids[3:]), labels)
    store.write_batch(connection, "two-batches", subset(result, ids[:3]), labels)

    one = store.read_table(connection, "examples", "one-batch")
    two = store.read_table(connection, "examples", "two-batches")
    assert one["batch_id"].nunique() == 1 and two["batch_id"].nunique() == 2
    assert store.content_hash(connection, "one-batch") == store.content_hash(connection, "two-batches")


def test_tables_read_back_in_key_order_so_verdict_intervals_ignore_the_order_batches_were_written(
    connection: duckdb.DuckDBPyConnection, result: BatchResult, labels: tuple[str, ...]
) -> None:
    """Concurrent or resumed batches finish in any order; a bootstrap over rows in write order would not."""
    ids = [e.example_id for e in result.examples]
    for run_id, groups in (("in-order", (ids[:3], ids[3:])), ("reversed", (ids[3:], ids[:3]))):
        for group in groups:
            store.write_batch(connection, run_id, subset(result, group), labels)
    for table, keys in store.RESULT_KEYS.items():
        first = store.read_table(connection, table, "in-order").drop(columns=["run_id", "batch_id"], errors="ignore")
        second = store.read_table(connection, table, "reversed").drop(columns=["run_id", "batch_id"], errors="ignore")
        pd.testing.assert_frame_equal(first.astype(str), second.astype(str), obj=table)
        assert first.astype(str).equals(first.sort_values(keys, na_position="first").astype(str).reset_index(drop=True))

    options = VerdictOptions(references=("leave_one_out",), min_examples=2)

    def overall(run_id: str) -> pd.DataFrame:
        metrics, examples = (store.read_table(connection, table, run_id) for table in ("metrics", "examples"))
        evidence = example_evidence(metrics, pd.DataFrame(), ("attention_last",), options)
        return slice_verdicts(evidence, examples, options)

    pd.testing.assert_frame_equal(overall("in-order"), overall("reversed"))


def test_content_hash_changes_when_one_value_changes(
    connection: duckdb.DuckDBPyConnection, result: BatchResult, labels: tuple[str, ...]
) -> None:
    position = next(i for i, m in enumerate(result.metrics) if not math.isnan(m.value))
    changed_metric: MetricValue = dataclasses.replace(
        result.metrics[position], value=result.metrics[position].value + 1e-9
    )
    changed = dataclasses.replace(
        result, metrics=(*result.metrics[:position], changed_metric, *result.metrics[position + 1 :])
    )
    store.write_batch(connection, "original", result, labels)
    store.write_batch(connection, "changed", changed, labels)

    assert store.content_hash(connection, "original") != store.content_hash(connection, "changed")


def test_interventions_round_trip_with_their_layer_and_head(
    connection: duckdb.DuckDBPyConnection, result: BatchResult, labels: tuple[str, ...]
) -> None:
    store.write_batch(connection, RUN, result, labels)
    stored = store.read_table(connection, "interventions", RUN)
    assert len(stored) == len(result.interventions)
    everything = stored[(stored["intervention"] == "uniform") & stored["layer"].isna()]
    assert len(everything) == 3 * len(result.examples)
    head = stored[(stored["intervention"] == "head_masking") & (stored["layer"] == 1) & (stored["head"] == 3)]
    expected = {(v.example_id, v.statistic): v.value for v in result.interventions if v.layer == 1 and v.head == 3}
    assert {(r.example_id, r.statistic): r.value for r in head.itertuples()} == pytest.approx(expected)
    agreement = store.read_table(connection, "head_agreement", RUN)
    assert len(agreement) == len(result.head_agreement) > 0


# --- the seed baseline ----------------------------------------------------------------------------


def test_the_seed_baseline_round_trips_and_a_second_write_replaces_the_first(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    from tasks.records import SeedAgreement, SeedDistance

    distances = [
        SeedDistance("a", "/models/seed-1", 5, "attention_jsd", 0.125),
        SeedDistance("a", "/models/seed-1", 5, "prediction_kept", 1.0),
        SeedDistance("b", "/models/seed-2", 5, "output_tvd", 0.0625),
    ]
    agreement = [
        SeedAgreement("a", "/models/seed-1", "rollout", 0.5),
        SeedAgreement("b", "/models/seed-1", "rollout", math.nan),
    ]
    store.write_seed_baseline(connection, RUN, distances, agreement)
    store.write_seed_baseline(connection, RUN, distances[:1], agreement[:1])
    store.write_seed_baseline(connection, RUN, distances, agreement)

    read = store.read_table(connection, "seed_distances", RUN).drop(columns="run_id")
    back = [SeedDistance(r.example_id, r.seed_model, int(r.layer), r.statistic, r.value) for r in read.itertuples()]
    assert sorted(back, key=str) == sorted(distances, key=str)
    taus = store.read_table(connection, "seed_agreement", RUN).sort_values("example_id")
    assert taus["kendall_tau"].iloc[0] == 0.5 and pd.isna(taus["kendall_tau"].iloc[1])
    assert list(taus.columns) == list(store.table_columns("seed_agreement"))
