"""The evidence and the rule of the verdict: is attention a faithful explanation, and why.

Three kinds of evidence (docs/methodology.md, "The verdict"), each measured per example and averaged over a
slice with a 95 % bootstrap interval:

- **Agreement** with the references: Kendall τ-b of the explanation with each verdict reference (default
  leave-one-out and integrated gradients), averaged over the references. It *supports* faithfulness when
  the interval's lower end reaches ``agreement_min`` and *contradicts* it when the upper end stays below.
- **Faithfulness against random**: the paired differences of AOPC comprehensiveness and sufficiency with
  the random ranking (DeYoung et al. 2020). *Supports* when removing the explanation's top tokens hurts
  more than removing random ones and keeping them alone hurts less (both intervals exclude 0 in that
  direction); *contradicts* when the comprehensiveness gain's upper end is below ``equivalence_margin``
  (no better than random).
- **Sensitivity to interventions** on the attention (the same for every attention-based explanation of
  the model): erasing the most-attended key versus a random key (Serrano & Smith 2019), and the median
  output change under permuted attention (Jain & Wallace 2019). *Supports* when the top key matters more
  than a random key and permutations move the output by at least ``sensitivity_min``; *contradicts* when
  the top key matters no more than a random one or the output stays below ``sensitivity_min``.

Before attention is judged against the references, the references are judged against each other (Neely
et al. 2021 find explainers disagree far more on transformers): when the interval of their mutual
Kendall τ stays below ``consistency_min``, the verdict is *inconclusive: references disagree*.

Each evidence is ``supports``, ``contradicts`` or ``unclear`` (the interval straddles the threshold, or
the evidence was not measured). The verdict:

- **faithful**: faithfulness against random supports, agreement supports, interventions do not contradict;
- **not faithful**: faithfulness against random contradicts, or agreement and interventions both contradict;
- **inconclusive** otherwise, and always for slices with fewer than ``min_examples`` examples; the reason
  names the evidence that was unclear or in conflict.

The interventions test the attention *weights* (Wiegreffe & Pinter 2019), so they take part only for an
explanation that reads the weights alone (``AttentionView.WEIGHTS`` in the method registry). For one that
decomposes what attention mixes (``AttentionView.DECOMPOSITION``: norm-based attention and its successors)
they are reported but do not decide: faithfulness is judged on the explanation itself (Jacovi & Goldberg
2020), and the weights can be uninformative while the decomposition is not (Kobayashi et al. 2020;
Modarressi et al. 2022). Such an explanation is faithful when removal against random and agreement
support, and not faithful when removal against random contradicts.

Per example the same rules apply to the example's own numbers (intervals of one value); per slice and
per attention head see ``tasks.verdict.slices``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import pandas as pd

from tasks.config import VerdictOptions
from tasks.evaluate.statistics import Estimate
from tasks.explain.registry import AttentionView, spec_of
from tasks.records import UNDER_TEST

Evidence = Literal["supports", "contradicts", "unclear"]
Verdict = Literal["faithful", "not faithful", "inconclusive"]
EVIDENCE_COLUMNS = ("agreement", "comprehensiveness", "sufficiency", "erasure", "sensitivity", "consistency")
"""Per-example evidence: mean τ with the references; AOPC comprehensiveness and sufficiency minus the
random ranking's; top-key minus random-key erasure TVD; median TVD under permuted attention; and the
references' own agreement with each other (mean τ over their pairs)."""


@dataclass(frozen=True)
class Judgement:
    """A verdict with the evidence behind it."""

    verdict: Verdict
    reason: str
    agreement: Evidence
    faithfulness: Evidence
    interventions: Evidence


def interventions_decide(method: str) -> bool:
    """Whether the interventions on the attention weights take part in ``method``'s verdict.

    They do unless the registry says the explanation decomposes the computation (``AttentionView``):
    references, the baseline and imported explanations keep the interventions, as before.
    """
    return spec_of(method).view is not AttentionView.DECOMPOSITION


# --- per-example evidence ---------------------------------------------------------------------


def example_evidence(
    metrics: pd.DataFrame, interventions: pd.DataFrame, methods: Sequence[str], options: VerdictOptions
) -> pd.DataFrame:
    """The evidence columns per (example, attention method), from the stored metrics.

    Returns:
        A frame indexed by ``(example_id, method)`` with the columns of ``EVIDENCE_COLUMNS``.
    """
    attention = [m for m in methods if spec_of(m).family in UNDER_TEST]
    tau = metrics[
        (metrics["metric"] == "kendall_tau")
        & metrics["method"].isin(attention)
        & metrics["reference"].isin(options.references)
    ]
    agreement = tau.groupby(["example_id", "method"])["value"].mean().rename("agreement")

    def versus_random(metric: str) -> pd.Series:
        rows = metrics[metrics["metric"] == metric]
        per_method = rows.groupby(["example_id", "method"])["value"].mean()
        random = per_method.xs("random", level="method") if "random" in per_method.index.get_level_values(1) else None
        per_method = per_method[per_method.index.get_level_values("method").isin(attention)]
        if random is None:
            return per_method * np.nan
        return per_method - random.reindex(per_method.index.get_level_values("example_id")).to_numpy()

    frame = pd.concat(
        [
            agreement,
            versus_random("aopc_comprehensiveness").rename("comprehensiveness"),
            versus_random("aopc_sufficiency").rename("sufficiency"),
        ],
        axis=1,
    )
    frame.index = frame.index.set_names(["example_id", "method"])
    erasure, sensitivity = intervention_evidence(interventions)
    example_ids = frame.index.get_level_values("example_id")
    frame["erasure"] = erasure.reindex(example_ids).to_numpy()
    frame["sensitivity"] = sensitivity.reindex(example_ids).to_numpy()
    between = metrics[
        (metrics["metric"] == "kendall_tau")
        & metrics["method"].isin(options.references)
        & metrics["reference"].isin(options.references)
    ]
    consistency = between.groupby("example_id")["value"].mean()
    frame["consistency"] = consistency.reindex(example_ids).to_numpy() if not consistency.empty else np.nan
    return frame[list(EVIDENCE_COLUMNS)]


def intervention_evidence(interventions: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per example: top-minus-random erasure TVD and median TVD under permutation (the last layer run)."""
    empty = pd.Series(dtype=float)
    if interventions.empty:
        return empty, empty

    def last_layer(intervention: str, statistic: str) -> pd.Series:
        rows = interventions[
            (interventions["intervention"] == intervention) & (interventions["statistic"] == statistic)
        ]
        if rows.empty:
            return empty
        top = rows["layer"].max()
        return rows[rows["layer"] == top].set_index("example_id")["value"]

    top, random = last_layer("top_vs_random_erasure", "top_tvd"), last_layer("top_vs_random_erasure", "random_tvd")
    erasure = (top - random.reindex(top.index)) if not top.empty else empty
    return erasure, last_layer("permutation", "median_tvd")


# --- classifying evidence ---------------------------------------------------------------------


def thresholds(options: VerdictOptions) -> dict[str, tuple[float, ...]]:
    """Per evidence column, the values the classifiers below compare its interval with.

    An evidence's status can change only where an end of its interval crosses one of them, which is what
    ``tasks.verdict.sample_size`` needs to find how many examples would decide a verdict.
    """
    return {
        "agreement": (options.agreement_min,),
        "comprehensiveness": (0.0, options.equivalence_margin),
        "sufficiency": (0.0,),
        "erasure": (0.0,),
        "sensitivity": (options.sensitivity_min,),
        "consistency": (options.consistency_min,),
    }


def classify_agreement(agreement: Estimate, options: VerdictOptions) -> Evidence:
    """Supports when the interval reaches ``agreement_min``; contradicts when it stays below."""
    if agreement.n == 0 or math.isnan(agreement.low):
        return "unclear"
    if agreement.low >= options.agreement_min:
        return "supports"
    if agreement.high < options.agreement_min:
        return "contradicts"
    return "unclear"


def classify_faithfulness(comprehensiveness: Estimate, sufficiency: Estimate, options: VerdictOptions) -> Evidence:
    """Supports when both AOPC differences with random favour the method.

    Contradicts when the comprehensiveness gain is below ``equivalence_margin`` (no better than random).
    """
    if comprehensiveness.n == 0 or math.isnan(comprehensiveness.low):
        return "unclear"
    if comprehensiveness.high < options.equivalence_margin:
        return "contradicts"
    if comprehensiveness.low > 0 and not math.isnan(sufficiency.high) and sufficiency.high < 0:
        return "supports"
    return "unclear"


def classify_interventions(erasure: Estimate, sensitivity: Estimate, options: VerdictOptions) -> Evidence:
    """Supports when the top key matters more than a random one and permutations move the output enough.

    "Enough" is at least ``sensitivity_min``; contradicts when either fails clearly.
    """
    measured = [e for e in (erasure, sensitivity) if e.n > 0 and not math.isnan(e.low)]
    if not measured:
        return "unclear"
    erasure_known = erasure.n > 0 and not math.isnan(erasure.low)
    sensitivity_known = sensitivity.n > 0 and not math.isnan(sensitivity.low)
    if (erasure_known and erasure.high <= 0) or (sensitivity_known and sensitivity.high < options.sensitivity_min):
        return "contradicts"
    if erasure_known and sensitivity_known and erasure.low > 0 and sensitivity.low >= options.sensitivity_min:
        return "supports"
    return "unclear"


def judge(
    estimates: Mapping[str, Estimate], options: VerdictOptions, n: int | None = None, *, weights: bool = True
) -> Judgement:
    """The verdict from the evidence estimates (``EVIDENCE_COLUMNS``), with its reason.

    Args:
        estimates: Each evidence's mean and 95 % interval.
        options: The thresholds.
        n: The slice's examples (None: one example's own numbers, no minimum).
        weights: The interventions on the attention weights take part (``interventions_decide``); when
            False they are classified and named in the reason but decide nothing.
    """
    agreement = classify_agreement(estimates["agreement"], options)
    faithfulness = classify_faithfulness(estimates["comprehensiveness"], estimates["sufficiency"], options)
    interventions = classify_interventions(estimates["erasure"], estimates["sensitivity"], options)
    words = _evidence_words(estimates, agreement, faithfulness, interventions, options, weights=weights)
    if n is not None and n < options.min_examples:
        return Judgement(
            "inconclusive",
            f"too few examples ({n}; at least {options.min_examples} needed); {words}",
            agreement,
            faithfulness,
            interventions,
        )
    consistency = estimates.get("consistency")
    if consistency is not None and consistency.n and not math.isnan(consistency.high):
        if consistency.high < options.consistency_min:
            return Judgement(
                "inconclusive",
                f"references disagree: their mutual Kendall τ is {consistency:.2f}, below "
                f"{options.consistency_min:g}, so agreement with them says little; {words}",
                agreement,
                faithfulness,
                interventions,
            )
    deciding: Evidence = interventions if weights else "unclear"
    if faithfulness == "supports" and agreement == "supports" and deciding != "contradicts":
        verdict: Verdict = "faithful"
    elif faithfulness == "contradicts" or (agreement == "contradicts" and deciding == "contradicts"):
        verdict = "not faithful"
    else:
        verdict = "inconclusive"
    return Judgement(verdict, words, agreement, faithfulness, interventions)


def _evidence_words(
    estimates: Mapping[str, Estimate],
    agreement: Evidence,
    faithfulness: Evidence,
    interventions: Evidence,
    options: VerdictOptions,
    *,
    weights: bool = True,
) -> str:
    status = {"supports": "supports", "contradicts": "contradicts", "unclear": "is unclear"}
    parts = [
        f"agreement with {' and '.join(r.replace('_', ' ') for r in options.references)} "
        f"(τ {estimates['agreement']:.2f}, threshold {options.agreement_min:g}) {status[agreement]}",
        f"removal against random (AOPC comprehensiveness {estimates['comprehensiveness']:+.3f}, "
        f"sufficiency {estimates['sufficiency']:+.3f}) {status[faithfulness]}",
    ]
    if estimates["erasure"].n or estimates["sensitivity"].n:
        parts.append(
            f"interventions (top minus random key erased {estimates['erasure']:+.3f}, permuted attention "
            f"{estimates['sensitivity']:.3f}) {status[interventions]}"
            + (
                ""
                if weights
                else " for the attention weights, which this explanation does not read alone, so they do not decide"
            )
        )
    else:
        parts.append("interventions were not run")
    return "; ".join(parts)


# --- per-example verdicts ---------------------------------------------------------------------


def example_verdicts(evidence: pd.DataFrame, examples: pd.DataFrame, options: VerdictOptions) -> pd.DataFrame:
    """One verdict per (example, attention method), from the example's own numbers."""
    content = examples.set_index("example_id")["n_content_tokens"]
    rows = []
    for key, values in evidence.iterrows():
        example_id, method = cast("tuple[str, str]", key)  # the frame is indexed by (example_id, method)
        estimates = {column: _point(values[column]) for column in EVIDENCE_COLUMNS}
        if content.get(example_id, 0) < 2:
            judgement = Judgement(
                "inconclusive", "fewer than two content tokens: nothing to rank", "unclear", "unclear", "unclear"
            )
        else:
            judgement = judge(estimates, options, weights=interventions_decide(method))
        rows.append(
            {
                "example_id": example_id,
                "method": method,
                "verdict": judgement.verdict,
                "reason": judgement.reason,
                **{column: float(values[column]) for column in EVIDENCE_COLUMNS},
            }
        )
    return pd.DataFrame(rows, columns=["example_id", "method", "verdict", "reason", *EVIDENCE_COLUMNS])


def _point(value: float) -> Estimate:
    """One example's number as an interval of one value (no value: an empty estimate)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    return Estimate(float(value), float(value), float(value), 1)
