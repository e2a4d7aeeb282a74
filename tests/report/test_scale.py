"""A dataset-wide review: the report reads the large tables through DuckDB's aggregates and gets the numbers
of the whole tables, its example table is capped with the SQL that lists every example, and its box plots
draw a bounded number of outliers."""

from __future__ import annotations

import dataclasses
import html as markup
import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from matplotlib import cbook

from tasks import report, store
from tasks.config import AuditConfig, VerdictOptions
from tasks.report.charts import MAX_FLIERS, box_stats
from tasks.report.context import RunTables, analyse
from tasks.report.facts import SHOWN_BECAUSE, shown_examples
from tasks.report.interventions import head_masking_means, summarise_interventions
from tasks.verdict.evidence import example_evidence, example_verdicts
from tasks.verdict.slices import agreement_matrix, slice_verdicts
from tests.report.test_report import GENERATED_AT, StoredRun, stored_run  # noqa: F401  (the module's fixture)

__all__ = ["stored_run"]


@pytest.fixture(scope="module")
def connection(stored_run: StoredRun):  # noqa: F811
    with store.connect(stored_run.db, read_only=True) as opened:
        yield opened


def whole_tables(connection: duckdb.DuckDBPyConnection, run_id: str) -> RunTables:
    """The run's tables read whole, every aggregate computed by pandas: the report's former reading."""
    metrics = store.read_table(connection, "metrics", run_id)
    interventions = store.read_table(connection, "interventions", run_id)
    per_k = metrics[metrics["k"].notna()]
    fields = {table.name: store.read_table(connection, table.name, run_id) for table in dataclasses.fields(RunTables)
              if table.name in store.OUR_TABLES}  # fmt: skip
    return RunTables(
        **fields
        | {
            "metrics": metrics[metrics["k"].isna()].reset_index(drop=True),
            "metric_curves": per_k.groupby(["metric", "method", "k"])["value"].mean().reset_index(),
            "interventions": interventions,
            "head_masking": head_masking_means(interventions),
        }
    )


def test_the_views_give_the_same_aggregates_as_the_whole_tables(
    connection: duckdb.DuckDBPyConnection,
    stored_run: StoredRun,  # noqa: F811
) -> None:
    run_id = stored_run.run_id
    whole, viewed = whole_tables(connection, run_id), RunTables.read(connection, run_id)
    metrics = store.read_table(connection, "metrics", run_id)
    assert 0 < len(viewed.metrics) < len(metrics)
    texts = store.CATEGORICAL["metrics"]
    for column in texts:
        categories = list(viewed.metrics[column].cat.categories)
        assert categories == sorted(set(whole.metrics[column].dropna())), column
    as_text = viewed.metrics.astype({column: whole.metrics[column].dtype for column in texts})
    pd.testing.assert_frame_equal(
        as_text, whole.metrics[viewed.metrics.columns].reset_index(drop=True), check_dtype=False
    )
    np.testing.assert_allclose(viewed.metric_curves["value"], whole.metric_curves["value"], rtol=1e-12)
    agreement = whole.head_agreement.groupby(["layer", "head"])["value"].mean()
    assert len(viewed.head_agreement) == len(agreement) > 0
    np.testing.assert_allclose(viewed.head_agreement["value"], agreement.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(viewed.head_masking["value"], whole.head_masking["value"], rtol=1e-12)

    config = stored_run.config
    manifest = store.read_run(connection, run_id)["manifest"]
    before, after = analyse(whole, config, manifest, 0), analyse(viewed, config, manifest, 0)
    for name in ("faithfulness", "agreement", "completeness", "plausibility", "sanity", "verdict"):
        assert repr(getattr(after, name)) == repr(getattr(before, name)), name  # repr: NaN equals NaN
    assert repr(after.interventions.sections) == repr(before.interventions.sections)
    assert after.interventions.summary == before.interventions.summary
    assert after.charts.keys() == before.charts.keys()


def masking_rows(layers: int, heads: int, examples: int) -> pd.DataFrame:
    """Head-masking rows whose TVD grows with the head's number, and a permutation row per example."""
    rows = [
        {"run_id": "r", "example_id": f"e{e}", "intervention": "head_masking", "layer": layer, "head": head,
         "statistic": statistic, "value": (layer * heads + head) / 97 + e / 1013 if statistic == "tvd" else e % 2}
        for e in range(examples) for layer in range(layers) for head in range(heads) for statistic in ("tvd", "flip")
    ]  # fmt: skip
    rows += [
        {"run_id": "r", "example_id": f"e{e}", "intervention": "permutation", "layer": layers - 1, "head": None,
         "statistic": "median_tvd", "value": e / 10}
        for e in range(examples)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_only_the_top_masked_heads_keep_their_rows_and_the_summary_is_unchanged(tmp_path: Path) -> None:
    rows = masking_rows(layers=3, heads=4, examples=6)
    with store.connect(tmp_path / "a.duckdb") as connection:
        connection.register("incoming", rows)
        connection.execute("INSERT INTO interventions SELECT * FROM incoming")
        viewed = store.read_view(connection, "interventions", "r")
        means = store.read_view(connection, "head_masking", "r")
    masked = viewed[viewed["intervention"] == "head_masking"]
    top = {(2, 3), (2, 2), (2, 1), (2, 0), (1, 3)}  # the five largest TVDs: layer · 4 + head from 11 down to 7
    assert set(zip(masked["layer"], masked["head"], strict=True)) == top
    assert len(masked) == len(top) * 6 * 2 and (viewed["intervention"] == "permutation").sum() == 6
    assert len(means) == 3 * 4 * 2

    examples = pd.DataFrame({"example_id": [f"e{e}" for e in range(6)], "label": [None] * 6, "predicted": [0] * 6})
    options = VerdictOptions()
    whole = summarise_interventions(rows, pd.DataFrame(), examples, 3, options=options)
    reduced = summarise_interventions(viewed, pd.DataFrame(), examples, 3, options=options, head_means=means)
    assert repr(reduced.sections) == repr(whole.sections)
    assert reduced.most_important_head == whole.most_important_head == (2, 3)


def test_a_run_larger_than_the_cap_shows_the_cap_and_the_sql_for_every_example(
    connection: duckdb.DuckDBPyConnection,
    stored_run: StoredRun,  # noqa: F811
) -> None:
    examples = store.read_table(connection, "examples", stored_run.run_id)
    context = report.build_context(connection, None, generated_at=GENERATED_AT, example_rows=4)
    html = report.render_html(context)

    assert len(context.example_table) == 4 and context.examples_total == len(examples) > 4
    assert context.example_table[0]["example_id"] == stored_run.misclassified
    assert context.example_table[0]["shown_because"] == SHOWN_BECAUSE["misclassified"]
    assert f"4 of the {len(examples)} examples" in html
    assert html.count('<td class="text">') == 4
    query = re.search(r"<pre>(SELECT .*?)</pre>", html, re.DOTALL)
    assert query is not None, "the capped table gives no query"
    listed = connection.execute(markup.unescape(query.group(1))).df()
    assert set(listed["example_id"]) == set(examples["example_id"])


def test_a_run_within_the_cap_shows_every_example_in_id_order(
    connection: duckdb.DuckDBPyConnection,
    stored_run: StoredRun,  # noqa: F811
) -> None:
    context = report.build_context(connection, None, generated_at=GENERATED_AT)
    html = report.render_html(context)

    assert [row["example_id"] for row in context.example_table] == sorted(
        store.read_table(connection, "examples", stored_run.run_id)["example_id"]
    )
    assert not context.example_table_capped and "Shown because" not in html and "<pre>SELECT" not in html
    assert AuditConfig().output.example_rows == 2_000


def test_the_cap_takes_a_quarter_of_each_kind_of_informative_example_then_a_seeded_sample() -> None:
    ids = [f"x{i:02d}" for i in range(20)]
    examples = pd.DataFrame({
        "example_id": ids,
        "label": [0] * 20,
        "predicted": [1 if i in (3, 5, 7) else 0 for i in range(20)],  # three misclassified
        "confidence": [0.9 if i == 7 else 0.8 if i == 5 else 0.7 for i in range(20)],
    })  # fmt: skip
    verdicts = pd.DataFrame({
        "example_id": ids * 2,
        "method": ["attention_last"] * 20 + ["rollout"] * 20,
        "agreement": [float(i) for i in range(20)] * 2,  # lowest: x00, x01, ...
        "comprehensiveness": [float(-i) for i in range(20)] * 2,  # lowest: x19, x18, ...
    })  # fmt: skip

    shown = shown_examples(examples, verdicts, limit=8, seed=0)

    assert list(shown)[:6] == ["x07", "x05", "x00", "x01", "x19", "x18"]
    assert [shown[i] for i in list(shown)[:6]] == [SHOWN_BECAUSE[k] for k in ("misclassified",) * 2
                                                    + ("agreement",) * 2 + ("comprehensiveness",) * 2]  # fmt: skip
    sample = list(shown)[6:]
    assert len(sample) == 2 and sample == sorted(sample) and not set(sample) & set(list(shown)[:6])
    assert shown_examples(examples, verdicts, limit=8, seed=0) == shown
    assert shown_examples(examples, verdicts, limit=20) == dict.fromkeys(ids, "")


def test_a_box_plot_draws_at_most_the_cap_of_outliers_keeping_the_extremes() -> None:
    values = np.random.default_rng(0).standard_cauchy(5000)  # heavy tails: hundreds of outliers

    stats = box_stats(values)
    full = cbook.boxplot_stats(values)[0]

    assert len(full["fliers"]) > MAX_FLIERS == len(stats["fliers"])
    assert stats["fliers"].min() == values.min() and stats["fliers"].max() == values.max()
    assert (stats["med"], stats["q1"], stats["q3"], stats["whislo"], stats["whishi"]) == (
        full["med"], full["q1"], full["q3"], full["whislo"], full["whishi"])  # fmt: skip
    few = [0.0, 1.0, 1.0, 2.0, 30.0]
    np.testing.assert_array_equal(box_stats(few)["fliers"], cbook.boxplot_stats(few)[0]["fliers"])


def test_a_view_of_a_run_without_rows_is_an_empty_frame(connection: duckdb.DuckDBPyConnection) -> None:
    assert store.read_view(connection, "metrics", "no such run").empty


def test_the_verdicts_from_the_metrics_view_are_those_from_the_whole_table(
    connection: duckdb.DuckDBPyConnection,
    stored_run: StoredRun,  # noqa: F811
) -> None:
    run_id, options = stored_run.run_id, stored_run.config.verdict
    methods = tuple(stored_run.config.methods.methods)
    examples = store.read_table(connection, "examples", run_id)
    interventions = store.read_table(connection, "interventions", run_id)
    whole, viewed = store.read_table(connection, "metrics", run_id), store.read_view(connection, "metrics", run_id)
    before = example_evidence(whole, interventions, methods, options)
    after = example_evidence(viewed, interventions, methods, options)
    same_values(after, before)
    for judged in (example_verdicts, slice_verdicts):
        same_values(judged(after, examples, options), judged(before, examples, options))
    same_values(agreement_matrix(viewed, examples, options), agreement_matrix(whole, examples, options))


def same_values(left: pd.DataFrame, right: pd.DataFrame) -> None:
    """Equal frames, texts as categories or as strings alike."""
    assert len(left) > 0
    pd.testing.assert_frame_equal(
        left, right, check_dtype=False, check_categorical=False, check_index_type=False, check_column_type=False
    )
