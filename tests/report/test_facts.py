"""The report's fact tables: every verdict threshold in the settings, both texts of a pair in the example table,
the costs as shares of the wall time."""

from __future__ import annotations

import pandas as pd

from tasks.config import AuditConfig, DataSpec, ExecutionSettings, VerdictOptions
from tasks.report.facts import batches_at_once, costs, example_table, settings, verdict_settings, wall_shares
from tasks.verdict.sample_size import sample_record, sized


def test_every_verdict_threshold_is_in_the_settings_table_with_its_configured_value() -> None:
    options = VerdictOptions(consistency_min=0.31, importance_min=0.017, sensitivity_min=0.07)
    rows = dict(verdict_settings(AuditConfig(verdict=options)))

    assert "0.31" in rows["References agree"]
    assert "0.017" in rows["Important head"] and "0.07" in rows["Sensitive to attention"]
    written = " ".join(rows.values())
    for name, value in options.model_dump().items():
        if isinstance(value, float):
            assert f"{value:g}" in written, f"verdict.{name} = {value:g} is missing from the settings table"


def examples_frame(pair: list[str | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "example_id": ["a", "b"],
            "text": ["A man sleeps.", "Rain falls."],
            "text_pair": pair,
            "label_name": ["entailment", None],
            "predicted_name": ["entailment", "neutral"],
            "confidence": [0.9, 0.6],
            "n_content_tokens": [7, 4],
        }
    )


def test_the_example_table_shows_both_texts_of_a_pair() -> None:
    frame = examples_frame(["A person rests.", "The ground is wet."])
    verdicts = pd.DataFrame({"example_id": ["a"], "method": ["attention_last"], "verdict": ["faithful"]})

    rows = {row["example_id"]: row for row in example_table(frame, verdicts, ["attention_last", "random"])}

    assert rows["a"]["text"] == "A man sleeps." and rows["a"]["text_pair"] == "A person rests."
    assert rows["b"]["text_pair"] == "The ground is wet."
    assert rows["a"]["verdicts"] == [("Last-layer attention", "faithful")]


def test_a_single_text_has_no_second_text() -> None:
    rows = example_table(examples_frame([None, None]), pd.DataFrame(columns=["example_id", "method", "verdict"]), [])

    assert [row["text_pair"] for row in rows] == [None, None]


def test_the_settings_say_what_the_target_precision_chose() -> None:
    config = sized(AuditConfig(data=DataSpec(target_precision=0.1)))
    manifest = {"data": {"sample": sample_record(0.1, 385, 20, 228)}}

    rows = dict(settings(config, manifest))

    assert rows["Sample"] == "385 examples in seeded hash order (seed 0)"
    assert rows["Sample size"].startswith("sized for a 95 % interval half-width of at most about ±0.1")
    assert rows["Sample size"].endswith("the split allows only 228, so the half-width is at most about ±0.13")
    assert "Sample size" not in dict(settings(AuditConfig(), {"data": {}}))


def test_batches_computed_at_once_cost_their_share_of_the_wall_time() -> None:
    """Two workers each time their own batch: 10 s and 6 s of worker time are 8 s of the run's wall time."""
    rows = pd.DataFrame(
        {"batch_id": ["a", "b"], "stage": ["saliency", "saliency"], "examples": [4, 4], "seconds": [10.0, 6.0],
         "forward_rows": [0, 0], "forward_tokens": [0, 0], "backward_rows": [4, 4], "backward_tokens": [80, 80]}
    )  # fmt: skip
    assert wall_shares(rows, 1) is rows
    shared = wall_shares(rows, 2)
    assert shared["seconds"].sum() == 8.0
    assert costs(shared)[0]["seconds_per_example"] == 1.0  # 8 s over 8 examples
    assert rows["seconds"].sum() == 16.0  # the stored rows are left as they are


def test_the_batches_at_once_are_those_the_run_recorded_else_those_configured() -> None:
    recorded = {"execution": {"task_runner": "processes", "concurrency": 2, "threads": 1, "summary": "…"}}
    assert batches_at_once(AuditConfig(), recorded) == 2  # auto chose 2 worker processes
    assert batches_at_once(AuditConfig(execution=ExecutionSettings(concurrency=3)), {}) == 3  # stored before
    assert batches_at_once(AuditConfig(), {}) == 1
