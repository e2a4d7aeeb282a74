"""The literature beside the numbers: each finding has a source and is judged on the run's own numbers."""

from __future__ import annotations

import math

import pandas as pd

from tasks.report.literature import RunNumbers, check_findings, load_findings


def test_every_finding_has_a_source_and_a_known_check():
    findings = load_findings()
    assert len(findings) >= 6
    assert all(f["citation"] and f["statement"] for f in findings)
    outcomes = check_findings(RunNumbers(pd.DataFrame(columns=["metric", "method", "reference", "example_id", "value"]),
                                         pd.DataFrame(), ()))  # fmt: skip
    assert {o.status for o in outcomes} == {"not measured"}, "nothing may be claimed without its measurement"


def test_findings_are_judged_on_the_runs_numbers():
    rows = []
    for example in ("a", "b"):
        rows += [
            {"example_id": example, "method": "attention_last", "reference": "saliency", "metric": "spearman_rho",
             "value": 0.1},
            {"example_id": example, "method": "attention_norm", "reference": "saliency", "metric": "spearman_rho",
             "value": 0.6},
        ]  # fmt: skip
    metrics = pd.DataFrame(rows)
    interventions = pd.DataFrame(
        {"example_id": ["a", "a", "b", "b"], "intervention": "top_vs_random_erasure", "layer": 5, "head": None,
         "statistic": ["top_flip", "random_flip", "top_flip", "random_flip"], "value": [0.0, 0.0, 1.0, 0.0]}
    )  # fmt: skip
    numbers = RunNumbers(metrics, interventions, ("attention_last", "attention_norm", "saliency"))
    findings = {f["id"]: f for f in load_findings()}
    norm = check_findings(numbers, [findings["norm-based-attention-agrees-better"]])[0]
    flips = check_findings(numbers, [findings["erasing-the-top-token-rarely-flips"]])[0]
    weak = check_findings(numbers, [findings["attention-gradient-correlation-is-weak"]])[0]
    assert norm.status == "reproduces" and "attention_norm 0.60" in norm.evidence
    assert flips.status == "does not reproduce" and "50.0 %" in flips.evidence
    assert weak.status == "not measured" and "rollout" in weak.evidence
    assert not math.isnan(numbers.mean_agreement("saliency", "attention_norm", "spearman_rho"))
