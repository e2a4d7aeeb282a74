"""Progress of the long stages: every step told, in log lines a user can follow."""

from __future__ import annotations

import logging

import pytest

from tasks.config import ExecutionSettings, InterventionOptions, MethodOptions
from tasks.pipeline.batch import audit_batch
from tasks.pipeline.progress import reported

LOGGER = logging.getLogger("tests.progress")


def test_each_step_is_a_log_line_naming_the_stage_the_step_and_the_count(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO, logger=LOGGER.name), reported("sanity check", LOGGER, bar=False) as progress:
        progress(1, 3, "original model")
        progress(2, 3, "classification head")
        progress(3, 3, "head + top 1 layer")
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3
    assert lines[1].startswith("sanity check: classification head (2/3, ")


def test_short_steps_are_logged_at_most_every_few_seconds_and_the_last_always(caplog: pytest.LogCaptureFixture):
    with (
        caplog.at_level(logging.INFO, logger=LOGGER.name),
        reported("batch 0", LOGGER, bar=False, every=3600) as progress,
    ):
        for done in range(1, 6):
            progress(done, 5, f"stage {done}")
    assert [record.getMessage().split(" (")[0] for record in caplog.records] == ["batch 0: stage 5"]


def test_a_batch_tells_every_measured_stage_and_ends_at_its_total(tiny_bundle, examples):
    told: list[tuple[int, int, str]] = []
    options = MethodOptions(methods=("attention_last", "saliency", "leave_one_out", "random"))
    interventions = InterventionOptions(interventions=("permutation",), permutation_draws=2)
    result = audit_batch(
        tiny_bundle, examples, options, interventions, ExecutionSettings(), progress=lambda *step: told.append(step)
    )
    stages = [cost.stage for cost in result.costs]
    assert [what.split()[0] for _, _, what in told] == stages
    assert [(done, total) for done, total, _ in told] == [(done, len(stages)) for done in range(1, len(stages) + 1)]
