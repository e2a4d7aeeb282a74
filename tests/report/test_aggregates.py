"""Dataset-level summaries of the report, on hand-made metric tables."""

from __future__ import annotations

import pandas as pd

from tasks.report.aggregates import completeness


def ig_metrics(kept: list[int], holds: list[float]) -> pd.DataFrame:
    """Integrated gradients' diagnostics of ``len(kept)`` examples, one error of 0.1 each."""
    rows = []
    for index, (steps, held) in enumerate(zip(kept, holds, strict=True)):
        example = f"e{index}"
        for metric, value in (
            ("completeness_error", -0.1),
            ("completeness_relative_error", 0.02),
            ("logit_gap", 5.0),
            ("completeness_holds", held),
            ("ig_steps", float(steps)),
        ):
            rows.append({"example_id": example, "method": "integrated_gradients", "metric": metric, "value": value})
    return pd.DataFrame(rows)


def test_the_completeness_summary_gives_the_sizes_the_schedule_kept_and_the_steps_run():
    summary = completeness(ig_metrics([16, 16, 32, 64], [1.0, 1.0, 1.0, 0.0]), (16, 32, 64), "gausslegendre")

    assert summary["holds"] == "75.0 %"
    assert summary["steps"] == "16 steps: 2 (50.0 %); 32 steps: 1 (25.0 %); 64 steps: 1 (25.0 %)"
    assert summary["steps_run"] == f"{(16 + 16 + (16 + 32) + (16 + 32 + 64)) / 4:.1f}"


def test_with_the_nested_rule_an_example_kept_at_a_size_ran_that_many_steps():
    summary = completeness(ig_metrics([10, 21, 21, 43], [1.0, 1.0, 1.0, 1.0]), (10, 21, 43, 87), "patterson")

    assert summary["steps_run"] == f"{(10 + 21 + 21 + 43) / 4:.1f}"


def test_a_fixed_m_has_no_distribution_of_steps():
    summary = completeness(ig_metrics([50, 50], [1.0, 1.0]), (50,), "gausslegendre")

    assert summary["holds"] == "100.0 %" and summary["steps"] == "" and summary["steps_run"] == ""
