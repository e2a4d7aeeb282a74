"""How the interventions on the attention weights bear on an explanation: by what it reads (AttentionView).

The issue's case: on the full default test split agreement and removal against random support an
attention-based explanation, while the permuted attention's median TVD of 0.034 (below ``sensitivity_min``
0.05) contradicts. For the weights themselves that stays inconclusive; for a decomposition of what attention
mixes it is faithful. The frames are built by hand, one row per example, so every mean is known.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.config import VerdictOptions
from tasks.evaluate.statistics import Estimate
from tasks.explain.registry import METHODS, AttentionView
from tasks.records import MethodFamily
from tasks.verdict.evidence import example_verdicts, interventions_decide, judge
from tasks.verdict.sample_size import examples_to_decide
from tasks.verdict.slices import slice_verdicts

OPTIONS = VerdictOptions()
N = 60


def evidence_frame(sensitivity: float, comprehensiveness: float = 0.08) -> pd.DataFrame:
    """Two methods over ``N`` examples with identical evidence: a weights view and a decomposition."""
    rng = np.random.default_rng(0)
    rows = []
    for index in range(N):
        noise = float(rng.normal(0, 0.01))
        values = {
            "agreement": 0.4 + noise,
            "comprehensiveness": comprehensiveness + noise,
            "sufficiency": -0.05 + noise,
            "erasure": 0.02 + noise,
            "sensitivity": sensitivity + noise / 10,
            "consistency": 0.5,
        }
        for method in ("attention_last", "attention_norm"):
            rows.append({"example_id": f"e{index:03d}", "method": method, **values})
    return pd.DataFrame(rows).set_index(["example_id", "method"])


def examples_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "example_id": [f"e{index:03d}" for index in range(N)],
            "predicted_name": ["pos"] * N,
            "label": [1] * N,
            "label_name": ["pos"] * N,
            "predicted": [1] * N,
            "confidence": [0.9] * N,
            "n_content_tokens": [12] * N,
        }
    )


def overall(verdicts: pd.DataFrame) -> dict[str, pd.Series]:
    rows = verdicts[verdicts["slice"] == "overall"].set_index("method")
    return {method: rows.loc[method] for method in rows.index}


def test_every_explanation_under_test_says_what_it_reads_and_why():
    for name, spec in METHODS.items():
        if spec.family == MethodFamily.ATTENTION:
            assert isinstance(spec.view, AttentionView), name
            assert len(spec.view_reason) > 20, name
        else:
            assert spec.view is None, name
    assert METHODS["attention_norm"].view is AttentionView.DECOMPOSITION
    assert {METHODS[m].view for m in ("attention_last", "attention_mean", "rollout", "flow", "attention_grad")} == {
        AttentionView.WEIGHTS
    }


def test_the_interventions_decide_the_weights_and_imported_explanations_but_not_a_decomposition():
    assert interventions_decide("rollout")
    assert interventions_decide("leave_one_out")
    assert interventions_decide("my_imported_scores")  # unknown what it reads: the interventions keep their say
    assert not interventions_decide("attention_norm")


def test_insensitive_attention_leaves_the_weights_inconclusive_and_a_decomposition_faithful():
    verdicts = overall(slice_verdicts(evidence_frame(sensitivity=0.034), examples_frame(), OPTIONS))
    weights, decomposition = verdicts["attention_last"], verdicts["attention_norm"]
    # the same evidence, classified the same way
    for column in ("agreement", "faithfulness", "interventions"):
        assert weights[column] == decomposition[column]
    assert (weights["agreement"], weights["faithfulness"], weights["interventions"]) == (
        "supports",
        "supports",
        "contradicts",
    )
    assert weights["verdict"] == "inconclusive"
    assert decomposition["verdict"] == "faithful"
    assert "do not decide" in decomposition["reason"] and "permuted attention 0.034" in decomposition["reason"]
    assert "do not decide" not in weights["reason"]


def test_sensitive_attention_makes_both_faithful():
    verdicts = overall(slice_verdicts(evidence_frame(sensitivity=0.2), examples_frame(), OPTIONS))
    assert {row["verdict"] for row in verdicts.values()} == {"faithful"}


def test_removal_no_better_than_random_is_not_faithful_for_a_decomposition_too():
    verdicts = overall(
        slice_verdicts(evidence_frame(sensitivity=0.2, comprehensiveness=0.0), examples_frame(), OPTIONS)
    )
    assert verdicts["attention_norm"]["verdict"] == "not faithful"


def test_disagreement_plus_insensitive_output_condemns_the_weights_only():
    def point(value: float) -> Estimate:
        return Estimate(value, value - 0.01, value + 0.01, 100)

    estimates = {
        "agreement": point(0.05),
        "comprehensiveness": point(0.03),
        "sufficiency": point(0.01),
        "erasure": point(0.02),
        "sensitivity": point(0.01),
        "consistency": point(0.5),
    }
    assert judge(estimates, OPTIONS, n=100).verdict == "not faithful"
    assert judge(estimates, OPTIONS, n=100, weights=False).verdict == "inconclusive"


def test_per_example_verdicts_apply_the_view():
    per_example = example_verdicts(evidence_frame(sensitivity=0.01), examples_frame(), OPTIONS)
    by_method = per_example.groupby("method")["verdict"].agg(set)
    assert by_method["attention_last"] == {"inconclusive"}
    assert by_method["attention_norm"] == {"faithful"}


@pytest.mark.parametrize("sensitivity", [0.01, 0.049])
def test_the_interventions_neither_decide_nor_block_the_examples_a_decomposition_needs(sensitivity):
    wide = {
        "agreement": Estimate(0.3, 0.15, 0.45, 30),
        "comprehensiveness": Estimate(0.05, 0.03, 0.07, 30),
        "sufficiency": Estimate(-0.05, -0.07, -0.03, 30),
        "erasure": Estimate(0.02, 0.01, 0.03, 30),
        "sensitivity": Estimate(sensitivity, sensitivity - 0.005, sensitivity + 0.005, 30),
        "consistency": Estimate(0.5, 0.45, 0.55, 30),
    }
    weights = examples_to_decide(wide, 30, OPTIONS)
    decomposition = examples_to_decide(wide, 30, OPTIONS, weights=False)
    # the weights: the output ignores them, so only agreement contradicting could decide, and it points up
    assert weights is not None and weights.examples is None
    # the decomposition: agreement's interval (half-width 0.15 around 0.3, threshold 0.2) leaves the threshold
    # at n · (0.15 / 0.1)² = 67.5 → 68 examples, and then it is faithful
    assert decomposition is not None and decomposition.examples == 68 and decomposition.verdict == "faithful"
    assert decomposition.deciding == ("agreement",)
