"""The registry of per-example metrics.

Every metric is registered once with its direction and source; storage keys, report labels and the
methodology appendix all read this registry. ``tasks.evaluate.batch_metrics`` computes them on one
batch's records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricKind = Literal["faithfulness", "agreement", "plausibility", "diagnostic"]


@dataclass(frozen=True)
class MetricSpec:
    """A registered per-example metric.

    Attributes:
        name: Stable snake_case id (DuckDB key, report label).
        kind: ``faithfulness`` (vs the model's output), ``agreement`` (vs a reference), or
            ``diagnostic`` (about a method itself, e.g. IG completeness).
        higher_is_better: Direction; None for diagnostics without one.
        title: Display name.
        definition: One-line definition for the methodology appendix.
        citation: Source.
        per_k: Has one value per rationale size ``k``.
        pairwise: Compares a method with a reference (``MetricValue.reference`` is set).
    """

    name: str
    kind: MetricKind
    higher_is_better: bool | None
    title: str
    definition: str
    citation: str
    per_k: bool = False
    pairwise: bool = False


SECOND_REMOVAL_SUFFIX = "_removal2"
"""Suffix of the metric ids recomputed with the second removal operator (``tasks.evaluate.removal_check``)."""

_HARD_REMOVAL = (
    MetricSpec(
        "comprehensiveness",
        "faithfulness",
        True,
        "Comprehensiveness",
        "p_ŷ(x) − p_ŷ(x ∖ r_k), r_k = top max(1,⌊k·n⌋) content tokens",
        "DeYoung et al. 2020",
        per_k=True,
    ),
    MetricSpec(
        "sufficiency",
        "faithfulness",
        False,
        "Sufficiency",
        "p_ŷ(x) − p_ŷ(r_k), keeping r_k and the special tokens",
        "DeYoung et al. 2020",
        per_k=True,
    ),
    MetricSpec(
        "aopc_comprehensiveness",
        "faithfulness",
        True,
        "AOPC comprehensiveness",
        "mean of comprehensiveness over the rationale sizes k",
        "DeYoung et al. 2020",
    ),
    MetricSpec(
        "aopc_sufficiency",
        "faithfulness",
        False,
        "AOPC sufficiency",
        "mean of sufficiency over the rationale sizes k",
        "DeYoung et al. 2020",
    ),
    MetricSpec(
        "taucorr_loo",
        "faithfulness",
        True,
        "τ with leave-one-out",
        "Kendall τ-b between the method's scores and leave-one-out's",
        "Attanasio et al. 2023 (ferret)",
    ),
)
"""The evidence that removes tokens: recomputed with the second removal operator."""

METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        *_HARD_REMOVAL,
        *(
            MetricSpec(
                f"{base.name}{SECOND_REMOVAL_SUFFIX}",
                base.kind,
                base.higher_is_better,
                f"{base.title}, second removal operator",
                f"{base.name} recomputed on a seeded sample with the second removal operator ([MASK], or the pad "
                "token without one; delete when the run masks)",
                f"{base.citation}; Hooker et al. 2019 (removal leaves the training distribution); "
                "Abnar & Zuidema 2020 ([MASK])",
                per_k=base.per_k,
            )
            for base in _HARD_REMOVAL
        ),
        MetricSpec(
            "soft_comprehensiveness",
            "faithfulness",
            True,
            "Soft normalised comprehensiveness",
            "max(0, p_ŷ(x) − p_ŷ(x ⊙ m)) / (1 − S(0)), m_{j,d} ~ Bernoulli(1 − s_j), s min-max-normalised scores",
            "Zhao & Aletras 2023 (Soft-NC)",
        ),
        MetricSpec(
            "soft_sufficiency",
            "faithfulness",
            True,
            "Soft normalised sufficiency",
            "max(0, S(x ⊙ m) − S(0)) / (1 − S(0)), S(x') = 1 − max(0, p_ŷ(x) − p_ŷ(x')), m_{j,d} ~ Bernoulli(s_j)",
            "Zhao & Aletras 2023 (Soft-NS)",
        ),
        MetricSpec(
            "kendall_tau",
            "agreement",
            True,
            "Kendall τ-b",
            "rank correlation with the reference over content tokens (|s| for signed references)",
            "Jain & Wallace 2019",
            pairwise=True,
        ),
        MetricSpec(
            "spearman_rho",
            "agreement",
            True,
            "Spearman ρ",
            "rank correlation with the reference over content tokens (|s| for signed references)",
            "Jain & Wallace 2019",
            pairwise=True,
        ),
        MetricSpec(
            "top_k_overlap",
            "agreement",
            True,
            "Top-k overlap",
            "|top_k(a) ∩ top_k(b)| / k, k = min(agreement_top_k, n)",
            "Jain & Wallace 2019",
            pairwise=True,
        ),
        MetricSpec(
            "token_f1",
            "plausibility",
            True,
            "Token F1",
            "F1 of the top-|h| content tokens against the human rationale h",
            "DeYoung et al. 2020",
        ),
        MetricSpec(
            "token_iou",
            "plausibility",
            True,
            "Token IOU",
            "|top-|h| ∩ h| / |top-|h| ∪ h|; IOU-F1 is the share of examples with IOU ≥ 0.5",
            "DeYoung et al. 2020",
        ),
        MetricSpec(
            "auprc",
            "plausibility",
            True,
            "AUPRC",
            "area under the precision-recall curve of the scores against the human rationale",
            "DeYoung et al. 2020; Attanasio et al. 2023",
        ),
        MetricSpec(
            "completeness_error",
            "diagnostic",
            None,
            "IG completeness error",
            "Σ_j IG_j − (z_ŷ(e) − z_ŷ(e'))",
            "Sundararajan et al. 2017",
        ),
        MetricSpec(
            "completeness_relative_error",
            "diagnostic",
            False,
            "IG relative completeness error",
            "|Σ_j IG_j − Δz| / |Δz| (ill-conditioned when Δz ≈ 0)",
            "Sundararajan et al. 2017",
        ),
        MetricSpec(
            "logit_gap",
            "diagnostic",
            None,
            "IG logit gap",
            "Δz = z_ŷ(e) − z_ŷ(e')",
            "Sundararajan et al. 2017",
        ),
        MetricSpec(
            "second_text_share",
            "diagnostic",
            None,
            "Share on the second text",
            "Σ_{j ∈ b} |s_j| / Σ_j |s_j| over content tokens, for a text pair (a, b)",
            "this audit (segment attribution, as in the NLI analyses of Jain & Wallace 2019)",
        ),
        MetricSpec(
            "completeness_holds",
            "diagnostic",
            True,
            "IG completeness holds",
            "1 when |error| ≤ max(0.05·|Δz|, 0.01), else 0",
            "Sundararajan et al. 2017 (completeness); the tolerance is this audit's own rule",
        ),
        MetricSpec(
            "ig_steps",
            "diagnostic",
            None,
            "IG steps used",
            "m of the result kept: the first size of the step schedule at which completeness holds, else the last",
            "this audit (step schedule); Sundararajan et al. 2017 (completeness)",
        ),
    )
}
