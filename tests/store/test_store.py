"""The DuckDB file: batches are written atomically and idempotently, round-trip exactly, and foreign,
corrupt or newer files are refused without being touched."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from tasks import store
from tasks.config import ExecutionSettings, InterventionOptions, MethodOptions
from tasks.errors import AuditError
from tasks.model.bundle import ModelBundle
from tasks.pipeline.batch import audit_batch
from tasks.records import BatchResult, MetricValue
from tests.conftest import TEXTS, encode

RUN = "run-under-test"
METHODS = ("attention_last", "leave_one_out", "random")
"""An attention method, a signed reference and the stochastic baseline: every kind of metric row."""

MetricKey = tuple[str, str, int, str, str | None, float | None]


@pytest.fixture(scope="module")
def result(tiny_bundle: ModelBundle) -> BatchResult:
    """One batch of the standard texts, some with gold labels, with a small but complete set of methods."""
    gold = (0, 2, None, 1, 2)
    examples = [dataclasses.replace(e, label=g) for e, g in zip(encode(tiny_bundle, TEXTS), gold, strict=True)]
    return audit_batch(
        tiny_bundle,
        examples,
        MethodOptions(methods=METHODS, random_draws=2),
        InterventionOptions(interventions=("uniform", "head_masking")),
        ExecutionSettings(),
    )


@pytest.fixture
def labels(tiny_bundle: ModelBundle) -> tuple[str, ...]:
    return tiny_bundle.labels


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with store.connect(tmp_path / "audit.duckdb") as opened:
        yield opened


def subset(result: BatchResult, example_ids: Sequence[str]) -> BatchResult:
    """The part of a batch result that belongs to some of its examples (as a smaller batch would give)."""
    keep = set(example_ids)
    return BatchResult(
        examples=tuple(e for e in result.examples if e.example_id in keep),
        predictions=tuple(p for p in result.predictions if p.example_id in keep),
        scores=tuple(s for s in result.scores if s.example_id in keep),
        metrics=tuple(m for m in result.metrics if m.example_id in keep),
        costs=result.costs,
        interventions=tuple(v for v in result.interventions if v.example_id in keep),
        head_agreement=tuple(v for v in result.head_agreement if v.example_id in keep),
    )


def row_counts(connection: duckdb.DuckDBPyConnection, run_id: str = RUN) -> dict[str, int]:
    return {table: len(store.read_table(connection, table, run_id)) for table in (*store.RESULT_TABLES, "costs")}


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


# --- runs -------------------------------------------------------------------------------------


def test_register_run_is_true_for_a_new_run_and_false_when_it_returns(
    connection: duckdb.DuckDBPyConnection,
) -> None:
    config, manifest = {"methods": {"methods": list(METHODS)}}, {"model": {"fingerprint": "abc"}}

    assert store.register_run(connection, RUN, config, manifest) is True
    assert store.register_run(connection, RUN, config, manifest) is False
    assert store.register_run(connection, "another-run", config, manifest) is True
    runs = store.read_runs(connection)
    assert sorted(runs["run_id"]) == ["another-run", RUN]
    assert store.read_run(connection, RUN)["config"] == config


def test_finish_run_marks_the_run_finished(connection: duckdb.DuckDBPyConnection) -> None:
    store.register_run(connection, RUN, {}, {})
    assert store.read_run(connection, RUN)["status"] == "running"

    store.finish_run(connection, RUN)

    assert store.read_run(connection, RUN)["status"] == "finished"


def test_read_run_of_an_unknown_run_names_the_known_ones(connection: duckdb.DuckDBPyConnection) -> None:
    store.register_run(connection, RUN, {}, {})

    with pytest.raises(AuditError, match="no run 'missing'") as raised:
        store.read_run(connection, "missing")
    assert RUN in raised.value.fix


# --- files that are not ours -----------------------------------------------------------------


def test_a_file_of_random_bytes_is_refused_and_left_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "noise.duckdb"
    path.write_bytes(np.random.default_rng(0).bytes(8192))
    before = path.read_bytes()

    with pytest.raises(AuditError, match="not a readable DuckDB database"):
        with store.connect(path):
            pass

    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["noise.duckdb"]


def test_a_database_of_another_application_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "shop.duckdb"
    foreign = duckdb.connect(str(path))
    foreign.execute("CREATE TABLE orders (id INTEGER, total DOUBLE)")
    foreign.execute("INSERT INTO orders VALUES (1, 9.5), (2, 3.25)")
    foreign.close()
    before = path.read_bytes()

    with pytest.raises(AuditError, match="another application") as raised:
        with store.connect(path):
            pass

    assert "orders" in raised.value.problem
    assert path.read_bytes() == before
    with duckdb.connect(str(path), read_only=True) as reopened:
        tables = {row[0] for row in reopened.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert tables == {"orders"}


@pytest.mark.parametrize("read_only", [False, True], ids=["read-write", "read-only"])
def test_a_database_of_a_newer_schema_is_refused(tmp_path: Path, read_only: bool) -> None:
    path = tmp_path / "future.duckdb"
    with store.connect(path) as created:
        created.execute(
            "UPDATE schema_info SET value = ? WHERE key = 'schema_version'", [str(store.SCHEMA_VERSION + 1)]
        )

    with pytest.raises(AuditError, match="newer attention-audit") as raised:
        with store.connect(path, read_only=read_only):
            pass

    assert "upgrade" in raised.value.fix


def test_a_new_database_records_the_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    with store.connect(path):
        pass

    with store.connect(path, read_only=True) as reopened:
        version = reopened.execute("SELECT value FROM schema_info WHERE key = 'schema_version'").fetchone()
    assert version == (str(store.SCHEMA_VERSION),)


def test_read_only_connect_of_a_missing_path_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "audit.duckdb"

    with pytest.raises(AuditError, match="no database at"):
        with store.connect(path, read_only=True):
            pass

    assert not path.parent.exists()


def test_a_database_whose_folder_is_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")

    with pytest.raises(AuditError, match="cannot create the folder"):
        with store.connect(blocker / "audit.duckdb"):
            pass


def test_interventions_round_trip_with_their_layer_and_head(connection: duckdb.DuckDBPyConnection, result, labels):
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


def test_a_version_1_database_is_migrated_in_place_with_its_data_kept(tmp_path: Path, result, labels) -> None:
    path = tmp_path / "old.duckdb"
    later = {statement for statements in store.MIGRATIONS.values() for statement in statements}
    version_1 = [statement for statement in store.DDL if statement not in later]
    with duckdb.connect(str(path)) as old:
        for statement in version_1:
            old.execute(statement)
        old.execute("INSERT INTO schema_info VALUES ('schema_version', '1'), ('created_by', 'attention-audit 0.1.0')")
        old.execute("INSERT INTO runs VALUES ('old-run', 'finished', now(), now(), '{}', '{}')")
    with store.connect(path, read_only=True) as reading:  # reading an old file changes nothing
        assert store.read_table(reading, "interventions", "old-run").empty
    with store.connect(path) as upgraded:
        version = upgraded.execute("SELECT value FROM schema_info WHERE key = 'schema_version'").fetchone()
        assert version == (str(store.SCHEMA_VERSION),)
        assert store.read_run(upgraded, "old-run")["status"] == "finished"
        store.write_batch(upgraded, RUN, result, labels)
        assert len(store.read_table(upgraded, "interventions", RUN)) == len(result.interventions)
