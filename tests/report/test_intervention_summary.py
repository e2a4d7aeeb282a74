"""The intervention summary judges with the configured thresholds, never with numbers of its own."""

from __future__ import annotations

import pandas as pd

from tasks.config import VerdictOptions
from tasks.report.interventions import summarise_interventions

EXAMPLES = pd.DataFrame({"example_id": ["a", "b", "c", "d"], "label": [0, 1, 0, 1], "predicted": [0, 1, 1, 1]})


def permutation_and_masking() -> pd.DataFrame:
    """Median TVDs 0.03, 0.1, 0.3, 0.5 under permutation; two heads masked, mean TVDs 0.02 and 0.2."""
    rows = [
        {"example_id": e, "intervention": "permutation", "layer": 1, "head": None, "statistic": s, "value": v}
        for e, median in zip("abcd", (0.03, 0.1, 0.3, 0.5), strict=True)
        for s, v in (("median_tvd", median), ("flip_rate", 0.0))
    ]
    rows += [
        {"example_id": e, "intervention": "head_masking", "layer": 0, "head": head, "statistic": s, "value": v}
        for e in "abcd"
        for head, tvd in ((0, 0.02), (1, 0.2))
        for s, v in (("tvd", tvd), ("flip", 0.0))
    ]
    return pd.DataFrame(rows)


def findings(options: VerdictOptions) -> dict[str, str]:
    report = summarise_interventions(permutation_and_masking(), pd.DataFrame(), EXAMPLES, 2, options=options)
    return {section.name: " ".join(section.findings) for section in report.sections}


def test_the_permutation_finding_counts_examples_below_the_configured_sensitivity_threshold() -> None:
    assert "for 25 % of examples the median change is below 0.05" in findings(VerdictOptions())["permutation"]
    text = findings(VerdictOptions(sensitivity_min=0.2))["permutation"]
    assert "for 50 % of examples the median change is below 0.2," in text


def test_the_head_masking_finding_counts_heads_below_the_configured_importance_threshold() -> None:
    assert "0 % of heads change it by less than 0.01." in findings(VerdictOptions())["head_masking"]
    assert "50 % of heads change it by less than 0.1." in findings(VerdictOptions(importance_min=0.1))["head_masking"]
