"""The attention and attention-derived views ranked for the executive summary, with what each costs.

Every explanation under test of the registry's ``attention`` family (the attention weights and the
decompositions of what attention mixes, ``AttentionView``) is ranked by its overall verdict (faithful,
then inconclusive, then not faithful) and, within a verdict, by its AOPC comprehensiveness gain over the
random ranking (DeYoung et al. 2020); ties by agreement with the references. Its cost is read from the
``costs`` table: the stage a method is measured under is its id (``tasks.pipeline.batch``), so the
seconds, forward rows and backward rows of that stage divided by the examples of the batches give its
seconds and extra passes per example (the shared forward pass of a batch is counted once, elsewhere).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from tasks.explain.registry import METHODS, AttentionView
from tasks.records import MethodFamily
from tasks.report.verdicts import VerdictReport, VerdictRow
from tasks.report.words import in_sentence

VERDICT_ORDER = {"faithful": 0, "inconclusive": 1, "not faithful": 2}
READS = {AttentionView.WEIGHTS: "reads the weights", AttentionView.DECOMPOSITION: "decomposes what attention mixes"}


@dataclass(frozen=True)
class ViewCost:
    """One method's measured stage per example: seconds, forward rows and backward rows."""

    seconds: float
    forward: float
    backward: float


def method_costs(costs: pd.DataFrame) -> dict[str, ViewCost]:
    """Per method id: its stage's seconds and passes per example over the batches that measured it."""
    if costs.empty:
        return {}
    out = {}
    for stage, rows in costs.groupby("stage", sort=False):
        if stage not in METHODS:
            continue
        examples = int(rows["examples"].sum())
        if examples:
            out[str(stage)] = ViewCost(
                float(rows["seconds"].sum()) / examples,
                float(rows["forward_rows"].sum()) / examples,
                float(rows["backward_rows"].sum()) / examples,
            )
    return out


def ranked_views(verdict: VerdictReport) -> list[VerdictRow]:
    """The overall verdict rows of the attention family, most faithful first."""
    views = [
        row for row in verdict.overall if row.method in METHODS and METHODS[row.method].family == MethodFamily.ATTENTION
    ]

    def key(row: VerdictRow) -> tuple[int, float, float]:
        gain, agreement = row.comprehensiveness.mean, row.agreement.mean
        return (
            VERDICT_ORDER.get(row.verdict, 1),
            -gain if not math.isnan(gain) else math.inf,
            -agreement if not math.isnan(agreement) else math.inf,
        )

    return sorted(views, key=key)


def view_sentences(verdict: VerdictReport, costs: pd.DataFrame) -> list[str]:
    """One summary sentence ranking the attention and attention-derived views, with evidence and cost."""
    ranked = ranked_views(verdict)
    if not ranked:
        return []
    priced = method_costs(costs)
    parts = [_view_words(position, row, priced.get(row.method)) for position, row in enumerate(ranked, 1)]
    return [
        "Attention and attention-derived views, most faithful first (verdict; AOPC gain over random; τ with the "
        "references; cost per example): " + "; ".join(parts) + "."
    ]


def _view_words(position: int, row: VerdictRow, cost: ViewCost | None) -> str:
    view = METHODS[row.method].view
    reads = READS[view] if view is not None else "reads the attention"
    if cost is None:
        price = "cost not measured"
    else:
        price = f"{cost.seconds:.3f} s, {cost.forward:g} extra forward and {cost.backward:g} backward passes"
    return (
        f"{position}. {in_sentence(row.title)} ({reads}): {row.verdict}, {row.comprehensiveness.mean:+.3f}, "
        f"τ {row.agreement.mean:.2f}, {price}"
    )
