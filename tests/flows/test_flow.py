"""The audit flow end to end under the Prefect test harness: two batches computed, stored and reported;
a re-run reuses every stored example and duplicates nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tasks import store
from tasks.config import AuditConfig, DataSpec, ExecutionSettings, MethodOptions, ModelSpec, OutputSettings
from tasks.pipeline.plan import plan_run

pytestmark = pytest.mark.slow

REVIEWS = pd.DataFrame(
    {
        "text": [
            "a great movie",
            "terrible, boring and far too long",
            "The acting is wonderful but the plot makes no sense at all.",
            "unwatchable",
            "I laughed, I cried, and I would happily see it again tomorrow.",
            "a quiet, patient film that rewards attention",
        ],
        "label": ["class_0", "class_1", "class_2", 1, 0, "class_2"],
    }
)
METHOD_IDS = ("attention_last", "rollout", "integrated_gradients", "leave_one_out", "random")


@dataclass(frozen=True)
class FirstRun:
    """The configuration of the first audit and what it returned."""

    config: AuditConfig
    run_id: str
    computed: int
    reused: int
    html: Path
    pdf: Path | None


@pytest.fixture(scope="module")
def first_run(prefect_harness: None, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    from flows.audit_flow import audit

    folder = tmp_path_factory.mktemp("flow")
    dataset = folder / "reviews.csv"
    REVIEWS.to_csv(dataset, index=False)
    config = AuditConfig(
        model=ModelSpec(name_or_path=str(tiny_model_dir)),
        data=DataSpec(dataset=str(dataset)),
        methods=MethodOptions(methods=METHOD_IDS, ig_steps=8, ig_rule="gausslegendre", random_draws=2),
        execution=ExecutionSettings(batch_size=4),
        output=OutputSettings(db=folder / "audit.duckdb", out_dir=folder / "report", pdf=True),
    )
    outcome = audit(config)
    assert outcome.report is not None
    return FirstRun(config, outcome.run_id, outcome.computed, outcome.reused, outcome.report.html, outcome.report.pdf)


@pytest.fixture
def connection(first_run: FirstRun) -> Iterator[duckdb.DuckDBPyConnection]:
    with store.connect(first_run.config.output.db, read_only=True) as opened:
        yield opened


def row_counts(db: Path, run_id: str) -> dict[str, int]:
    with store.connect(db, read_only=True) as connection:
        return {table: len(store.read_table(connection, table, run_id)) for table in (*store.RESULT_TABLES, "costs")}


def test_the_first_run_computes_every_example_in_two_batches(
    first_run: FirstRun, connection: duckdb.DuckDBPyConnection
) -> None:
    examples = store.read_table(connection, "examples", first_run.run_id)
    costs = store.read_table(connection, "costs", first_run.run_id)

    assert (first_run.computed, first_run.reused) == (6, 0)
    assert sorted(examples["example_id"]) == [str(i) for i in range(6)]
    assert examples["batch_id"].nunique() == 2
    assert costs["batch_id"].nunique() == 2
    assert store.read_run(connection, first_run.run_id)["status"] == "finished"


def test_every_example_has_every_methods_faithfulness_metrics(
    first_run: FirstRun, connection: duckdb.DuckDBPyConnection
) -> None:
    metrics = store.read_table(connection, "metrics", first_run.run_id)

    for metric in ("aopc_comprehensiveness", "aopc_sufficiency"):
        rows = metrics[(metrics["metric"] == metric) & (metrics["draw"] == 0)]
        assert len(rows) == 6 * len(METHOD_IDS)
        assert set(zip(rows["example_id"], rows["method"], strict=True)) == {
            (str(i), m) for i in range(6) for m in METHOD_IDS
        }
    completeness = metrics[metrics["metric"] == "completeness_error"]
    assert sorted(completeness["example_id"]) == [str(i) for i in range(6)]


def test_gold_labels_are_read_as_names_or_indices(first_run: FirstRun, connection: duckdb.DuckDBPyConnection) -> None:
    examples = store.read_table(connection, "examples", first_run.run_id).sort_values("example_id")

    assert examples["label"].tolist() == [0, 1, 2, 1, 0, 2]


def test_the_reports_exist_and_state_the_run_and_its_accuracy(
    first_run: FirstRun, connection: duckdb.DuckDBPyConnection
) -> None:
    examples = store.read_table(connection, "examples", first_run.run_id)
    accuracy = 100 * float((examples["label"] == examples["predicted"]).mean())

    assert first_run.html.name == f"report-{first_run.run_id}.html"
    assert first_run.pdf is not None and first_run.pdf.read_bytes().startswith(b"%PDF-")
    html = first_run.html.read_text(encoding="utf-8")
    assert first_run.run_id in html
    assert (
        f"The model was audited on 6 examples; it classifies {accuracy:.1f} % of the 6 labelled ones correctly" in html
    )
    assert not list(first_run.html.parent.glob(".*.partial")), "a staging file was left behind"


def test_running_the_same_configuration_again_reuses_every_example(first_run: FirstRun) -> None:
    from flows.audit_flow import audit

    db = first_run.config.output.db
    before = row_counts(db, first_run.run_id)
    with store.connect(db, read_only=True) as connection:
        hash_before = store.content_hash(connection, first_run.run_id)

    again = audit(first_run.config)

    assert again.run_id == first_run.run_id
    assert (again.computed, again.reused) == (0, 6)
    assert row_counts(db, first_run.run_id) == before
    with store.connect(db, read_only=True) as connection:
        assert store.content_hash(connection, first_run.run_id) == hash_before
        assert len(store.read_runs(connection)) == 1


def test_a_different_batch_size_resumes_the_same_run(first_run: FirstRun) -> None:
    from flows.audit_flow import audit

    config = first_run.config.model_copy(update={"execution": ExecutionSettings(batch_size=2)})
    before = row_counts(config.output.db, first_run.run_id)

    again = audit(config)

    assert again.run_id == first_run.run_id
    assert (again.computed, again.reused) == (0, 6)
    assert row_counts(config.output.db, first_run.run_id) == before


def test_a_different_method_option_is_a_different_run(first_run: FirstRun) -> None:
    methods = first_run.config.methods.model_copy(update={"ig_steps": (9,), "ig_rule": "gausslegendre"})
    config = first_run.config.model_copy(update={"methods": methods})

    assert plan_run(config).run_id != first_run.run_id
    assert plan_run(first_run.config).run_id == first_run.run_id
