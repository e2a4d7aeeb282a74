"""The summary's coverage notes: what a run computed for fewer examples, and what it left out."""

import pandas as pd

from tasks.config import AuditConfig, MethodOptions
from tasks.report.sentences import coverage

EXAMPLES = pd.DataFrame({"example_id": ["a", "b"]})
METRICS = pd.DataFrame(
    {"example_id": ["a", "b"], "method": ["attention_last"] * 2, "metric": ["aopc_comprehensiveness"] * 2}
)


def test_a_run_with_every_evidence_on_every_example_needs_no_note():
    assert coverage(METRICS, EXAMPLES, ["attention_last"], AuditConfig()) == []


def test_evidence_a_run_left_out_is_named_with_the_option_that_left_it_out():
    config = AuditConfig(methods=MethodOptions(soft_faithfulness=False, removal_check_sample=0))

    notes = coverage(METRICS, EXAMPLES, ["attention_last"], config)

    assert len(notes) == 2
    assert "Soft comprehensiveness and sufficiency were left out" in notes[0] and "--no-soft-faithfulness" in notes[0]
    assert "second removal operator (--removal-check-sample 0)" in notes[1]
