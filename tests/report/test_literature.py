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


def spearman_rows(values: dict[str, float], reference: str = "saliency") -> pd.DataFrame:
    """Two examples, each method with ``values[method]`` as its Spearman ρ with ``reference``."""
    return pd.DataFrame(
        [
            {"example_id": example, "method": method, "reference": reference, "metric": "spearman_rho", "value": value}
            for example in ("a", "b")
            for method, value in values.items()
        ]
    )


def test_a_finding_whose_every_correlation_is_undefined_is_not_measured():
    methods = ("attention_last", "rollout", "attention_norm", "saliency", "grad_x_input", "integrated_gradients")
    metrics = spearman_rows({"attention_last": math.nan, "rollout": math.nan, "attention_norm": math.nan})
    findings = {f["id"]: f for f in load_findings()}
    chosen = [findings["attention-gradient-correlation-is-weak"], findings["norm-based-attention-agrees-better"]]

    outcomes = check_findings(RunNumbers(metrics, pd.DataFrame(), methods), chosen)

    assert [o.status for o in outcomes] == ["not measured", "not measured"]
    assert all("undefined" in o.evidence for o in outcomes)


def test_far_better_needs_the_documented_margin_not_just_a_higher_mean():
    finding = next(f for f in load_findings() if f["id"] == "norm-based-attention-agrees-better")
    margin = finding["check"]["far_better_by"]
    methods = ("attention_last", "attention_norm", "saliency")

    def status(norm: float, raw: float) -> str:
        metrics = spearman_rows({"attention_norm": norm, "attention_last": raw})
        return check_findings(RunNumbers(metrics, pd.DataFrame(), methods), [finding])[0].status

    assert status(0.49, 0.44) == "does not reproduce"  # the full default test split: ahead, but not far
    assert status(0.44 + margin + 0.01, 0.44) == "reproduces"
    assert status(0.44 + margin - 0.01, 0.44) == "does not reproduce"


def test_every_cutoff_is_printed_as_this_audits_own_with_its_value():
    rows = []
    for example in ("a", "b"):
        for method in ("attention_last", "rollout", "attention_norm"):
            rows.append({"example_id": example, "method": method, "reference": "saliency", "metric": "spearman_rho",
                         "value": 0.2})  # fmt: skip
    masking = [
        {"example_id": e, "intervention": "head_masking", "layer": 0, "head": h, "statistic": "tvd", "value": 0.001}
        for e in "ab"
        for h in (0, 1)
    ]
    erasure = [
        {"example_id": e, "intervention": "top_vs_random_erasure", "layer": 0, "head": None, "statistic": s, "value": 0}
        for e in "ab"
        for s in ("top_flip", "random_flip")
    ]
    numbers = RunNumbers(pd.DataFrame(rows), pd.DataFrame(masking + erasure),
                         ("attention_last", "rollout", "attention_norm", "saliency", "grad_x_input",
                          "integrated_gradients"))  # fmt: skip
    findings = {f["id"]: f for f in load_findings()}
    for name, cutoffs in {
        "attention-gradient-correlation-is-weak": ["0.3"],
        "norm-based-attention-agrees-better": ["0.2"],
        "many-heads-can-be-masked": ["0.01", "50 %"],
        "erasing-the-top-token-rarely-flips": ["10 %", "5 percentage points"],
    }.items():
        outcome = check_findings(numbers, [findings[name]])[0]
        assert outcome.status != "not measured", name
        assert "this audit's cutoff" in outcome.evidence, name
        assert all(cutoff in outcome.evidence for cutoff in cutoffs), (name, outcome.evidence)


def aopc_rows(per_method: dict[str, list[float]]) -> pd.DataFrame:
    """AOPC comprehensiveness per example (ids e0, e1, ...) for each method."""
    return pd.DataFrame(
        [
            {"example_id": f"e{i}", "method": method, "reference": None, "metric": "aopc_comprehensiveness",
             "value": value}
            for method, values in per_method.items()
            for i, value in enumerate(values)
        ]
    )  # fmt: skip


def test_a_published_order_reproduces_only_when_every_step_clears_its_paired_interval():
    finding = next(f for f in load_findings() if f["id"] == "decompx-above-alti-above-rollout")
    methods = ("decompx", "alti", "rollout")

    def outcome(per_method: dict[str, list[float]]):
        return check_findings(RunNumbers(aopc_rows(per_method), pd.DataFrame(), methods), [finding])[0]

    rollout = [0.10, 0.12, 0.08, 0.11, 0.09, 0.10, 0.13, 0.07]
    alti = [value + 0.15 for value in rollout]
    clear = outcome({"decompx": [value + 0.2 for value in alti], "alti": alti, "rollout": rollout})
    assert clear.status == "reproduces"
    assert "decompx − alti +0.200" in clear.evidence and "alti − rollout +0.150" in clear.evidence
    assert "published: decompx 0.627, alti 0.416" in clear.evidence and "this audit's cutoff" in clear.evidence

    reversed_step = outcome({"decompx": [value - 0.05 for value in alti], "alti": alti, "rollout": rollout})
    assert reversed_step.status == "does not reproduce"

    noise = [0.3, -0.3, 0.3, -0.3, 0.3, -0.3, 0.3, -0.25]  # ahead by 0.006 on average, but either way per example
    decompx = [a + n for a, n in zip(alti, noise, strict=True)]
    unsettled = outcome({"decompx": decompx, "alti": alti, "rollout": rollout})
    assert unsettled.status == "not settled"


def test_an_order_with_a_method_the_run_did_not_compute_is_not_measured():
    finding = next(f for f in load_findings() if f["id"] == "alti-more-comprehensive-than-rollout")
    numbers = RunNumbers(aopc_rows({"rollout": [0.1, 0.2]}), pd.DataFrame(), ("rollout",))
    outcome = check_findings(numbers, [finding])[0]
    assert outcome.status == "not measured" and "alti" in outcome.evidence
