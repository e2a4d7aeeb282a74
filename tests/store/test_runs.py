"""A run's row: registered, finished (with or without failures), read back."""

from __future__ import annotations

import duckdb
import pytest

from tasks import store
from tasks.errors import AuditError
from tasks.records import BatchResult
from tests.store.conftest import METHODS, RUN

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


def test_failed_examples_are_recorded_until_their_batch_is_written(
    connection: duckdb.DuckDBPyConnection, result: BatchResult, labels: tuple[str, ...]
) -> None:
    ids = [e.example_id for e in result.examples]
    store.register_run(connection, RUN, {}, {})
    store.record_failure(connection, RUN, ids[:2], ValueError("boom"), 3)
    store.record_failure(connection, RUN, ids[:2], RuntimeError("again"), 4)

    failures = store.read_table(connection, "failures", RUN)
    assert sorted(failures["example_id"]) == sorted(ids[:2])
    assert set(failures["error_type"]) == {"RuntimeError"} and set(failures["attempts"]) == {4}
    assert set(failures["batch_id"]) == {store.batch_id(ids[:2])}
    assert store.finish_run(connection, RUN) == "finished with failures"

    store.write_batch(connection, RUN, result, labels)

    assert store.read_table(connection, "failures", RUN).empty
    assert store.finish_run(connection, RUN) == "finished"
