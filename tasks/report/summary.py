"""The report as JSON: the verdicts and headline metrics of a context (``summary-<run>.json``).

Every estimate is ``{mean, low, high, n}``, rounded to six places; NaN becomes null.
"""

from __future__ import annotations

import math
from typing import Any

from tasks.evaluate.statistics import Estimate
from tasks.report.aggregates import FaithfulnessRow
from tasks.report.comparison import Comparison
from tasks.report.context import ReportContext
from tasks.report.interventions import InterventionSection
from tasks.report.verdicts import VerdictRow
from tasks.verdict.sample_size import ExamplesToDecide


def estimate_json(estimate: Estimate) -> dict[str, float | int | None]:
    """An estimate as JSON-ready numbers (NaN becomes None)."""

    def plain(value: float) -> float | None:
        return None if math.isnan(value) else round(float(value), 6)

    return {"mean": plain(estimate.mean), "low": plain(estimate.low), "high": plain(estimate.high), "n": estimate.n}


def summary_document(context: ReportContext) -> dict[str, Any]:
    """The verdicts and headline metrics of the report as JSON-ready data (NaN becomes null)."""
    return {
        "run_id": context.run_id,
        "status": context.status,
        "generated_at": context.generated_at,
        "manifest": dict(context.manifest_rows),
        "dataset": dict(context.dataset_rows),
        "summary": list(context.summary),
        "recommended_explanation": context.verdict.recommended,
        "verdicts": [_verdict_json(row) for _, _, _, rows in context.verdict.slices for row in rows],
        "layers": [
            {
                "layer": row.label,
                "verdict": row.verdict,
                "agreement": estimate_json(row.agreement),
                "masked_tvd": estimate_json(row.importance),
            }
            for row in context.verdict.layers
        ],
        "faithfulness": [_faithfulness_json(row) for row in context.faithfulness],
        **_robustness_json(context),
        "agreement": [
            {
                "method": row.method,
                "reference": row.reference,
                "kendall_tau": estimate_json(row.kendall_tau),
                "spearman_rho": estimate_json(row.spearman_rho),
                "top_k_overlap": estimate_json(row.top_k_overlap),
            }
            for row in context.agreement
        ],
        "interventions": [_intervention_json(section) for section in context.interventions.sections],
        "integrated_gradients_completeness": dict(context.completeness),
        "sanity_checks": [
            {"method": row.method, "result": row.result, "spearman_absolute": estimate_json(row.fully_randomised)}
            for row in context.sanity
        ],
        "literature": [
            {"id": finding.id, "citation": finding.citation, "status": finding.status, "evidence": finding.evidence}
            for finding in context.literature
        ],
        "compared_with": None if context.comparison is None else _comparison_json(context.comparison),
        "settings": dict(context.settings) | dict(context.verdict_settings),
    }


def _faithfulness_json(row: FaithfulnessRow) -> dict[str, Any]:
    """One method's AOPC comprehensiveness and sufficiency, τ with leave-one-out, and whether it beats random."""
    return {
        "method": row.method,
        "family": row.family,
        "aopc_comprehensiveness": estimate_json(row.comprehensiveness),
        "aopc_sufficiency": estimate_json(row.sufficiency),
        "taucorr_loo": estimate_json(row.taucorr_loo),
        "beats_random": row.beats_random,
    }


def _robustness_json(context: ReportContext) -> dict[str, Any]:
    """Whether the evidence survives a second removal operator, the soft metrics, and the seed baseline."""
    seeds = context.seeds
    return {
        "removal_check": [
            {
                "method": row.method,
                "examples": row.examples,
                "first_operator": row.first,
                "second_operator": row.second,
                "aopc_comprehensiveness_gain_first": estimate_json(row.comprehensiveness_first),
                "aopc_comprehensiveness_gain_second": estimate_json(row.comprehensiveness_second),
                "survives": row.survives,
            }
            for row in context.removal_survival
        ],
        "soft_faithfulness": [
            {
                "method": row.method,
                "soft_comprehensiveness": estimate_json(row.soft_comprehensiveness),
                "soft_sufficiency": estimate_json(row.soft_sufficiency),
            }
            for row in context.soft_faithfulness
        ],
        "seed_baseline": None
        if seeds is None
        else {
            "models": list(seeds.models),
            "examples": seeds.examples,
            "layers": [
                {
                    "layer": row.layer,
                    "seed_attention_jsd": estimate_json(row.attention_jsd),
                    "seed_attention_tvd": estimate_json(row.attention_tvd),
                    "adversarial_jsd": None if row.adversarial_jsd is None else estimate_json(row.adversarial_jsd),
                    "adversary_beyond_every_seed": row.beyond_seeds,
                }
                for row in seeds.layers
            ],
            "stability": [
                {
                    "method": row.method,
                    "tau_across_seeds": estimate_json(row.across_seeds),
                    "tau_with_references": estimate_json(row.with_references),
                    "result": row.result,
                }
                for row in seeds.stability
            ],
        },
    }


def _verdict_json(row: VerdictRow) -> dict[str, Any]:
    """One explanation's verdict on one slice, with its evidence."""
    return {
        "method": row.method,
        "slice": row.slice,
        "slice_value": row.slice_value,
        "n": row.n,
        "verdict": row.verdict,
        "reason": row.reason,
        "evidence": dict(row.evidence),
        "agreement": estimate_json(row.agreement),
        "comprehensiveness_gain": estimate_json(row.comprehensiveness),
        "sufficiency_gain": estimate_json(row.sufficiency),
        "erasure_gain": estimate_json(row.erasure),
        "permutation_tvd": estimate_json(row.sensitivity),
        "examples_to_decide": None if row.to_decide is None else _to_decide_json(row.to_decide),
    }


def _to_decide_json(decided: ExamplesToDecide) -> dict[str, Any]:
    """How many examples would decide an inconclusive verdict, the verdict, the deciding evidence, or why none."""
    return {
        "examples": decided.examples,
        "verdict": decided.verdict,
        "deciding": list(decided.deciding),
        "reason": decided.reason or None,
    }


def _intervention_json(section: InterventionSection) -> dict[str, Any]:
    """One intervention's findings and rows."""
    return {
        "intervention": section.name,
        "findings": list(section.findings),
        "rows": [
            {
                "changed": row.label,
                "layer": row.layer,
                "tvd": estimate_json(row.tvd),
                "flip_rate": estimate_json(row.flip_rate),
                "accuracy": None if math.isnan(row.accuracy) else row.accuracy,
            }
            for row in section.rows
        ],
    }


def _comparison_json(comparison: Comparison) -> dict[str, Any]:
    """The earlier run, its verdicts beside this run's, and the numbers that moved."""
    return {
        "run_id": comparison.before["run_id"],
        "paired": comparison.paired,
        "verdicts": [{"method": m, "before": before, "after": after} for m, before, after in comparison.verdicts],
        "moved": [
            {"method": m.method, "evidence": m.evidence, "difference": estimate_json(m.difference)}
            for m in comparison.movements
            if m.moved
        ],
    }
