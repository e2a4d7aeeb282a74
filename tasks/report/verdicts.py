"""The verdict in words: what the report's summary says, from the stored slice verdicts.

Pure functions of the ``slice_verdicts`` table (as a DataFrame): per attention method its overall verdict
with the evidence, the slices where attention is most and least faithful, which explanation to show users of
the model, and for each inconclusive verdict how many examples would decide it (``tasks.verdict.sample_size``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from tasks.config import VerdictOptions
from tasks.evaluate.statistics import Estimate
from tasks.explain.registry import METHODS, spec_of
from tasks.records import MethodFamily
from tasks.report.words import in_sentence
from tasks.verdict.evidence import EVIDENCE_COLUMNS, interventions_decide
from tasks.verdict.sample_size import ExamplesToDecide, examples_to_decide

SLICE_ORDER = ("overall", "predicted class", "true class", "correctness", "confidence", "length")


@dataclass(frozen=True)
class VerdictRow:
    """One attention method on one slice."""

    method: str
    title: str
    slice: str
    slice_value: str
    n: int
    verdict: str
    reason: str
    agreement: Estimate
    comprehensiveness: Estimate
    sufficiency: Estimate
    erasure: Estimate
    sensitivity: Estimate
    evidence: Mapping[str, str]
    to_decide: ExamplesToDecide | None = None
    """For an inconclusive verdict, how many examples would decide it (None when it is decided)."""


@dataclass(frozen=True)
class HeadRow:
    """A layer or a head: does its attention agree with the references, and does it matter?"""

    slice: str
    label: str
    n: int
    verdict: str
    reason: str
    agreement: Estimate
    importance: Estimate


@dataclass(frozen=True)
class VerdictReport:
    """Everything the report says about the verdict."""

    overall: Sequence[VerdictRow]
    slices: Sequence[tuple[str, str, int, Sequence[VerdictRow]]]  # (slice, value, n, one row per method)
    layers: Sequence[HeadRow]
    recommended: str | None
    sentences: Sequence[str]

    def slice_tables(self, width: int = 3) -> list[SliceTable]:
        """The slice grid cut into tables of at most ``width`` explanations each (columns in overall order)."""
        return [
            SliceTable(
                self.overall[first : first + width],
                [(kind, value, n, rows[first : first + width]) for kind, value, n, rows in self.slices],
            )
            for first in range(0, len(self.overall), width)
        ]


@dataclass(frozen=True)
class SliceTable:
    """One table of the slice grid: a few explanations as columns, one row per slice."""

    columns: Sequence[VerdictRow]
    rows: Sequence[tuple[str, str, int, Sequence[VerdictRow]]]  # (slice, value, n, one row per column)


def _estimate(row: pd.Series, name: str) -> Estimate:
    mean = row.get(f"{name}_mean", float("nan"))
    low = row.get(f"{name}_low", float("nan"))
    high = row.get(f"{name}_high", float("nan"))
    mean = float("nan") if pd.isna(mean) else float(mean)
    return Estimate(
        mean,
        float("nan") if pd.isna(low) else float(low),
        float("nan") if pd.isna(high) else float(high),
        0 if math.isnan(mean) else int(row["n"]),
    )


def _verdict_row(row: pd.Series, options: VerdictOptions) -> VerdictRow:
    estimates = {name: _estimate(row, name) for name in EVIDENCE_COLUMNS}
    return VerdictRow(
        method=row["method"],
        title=spec_of(row["method"]).title,
        slice=row["slice"],
        slice_value=row["slice_value"],
        n=int(row["n"]),
        verdict=row["verdict"],
        reason=row["reason"],
        agreement=_estimate(row, "agreement"),
        comprehensiveness=_estimate(row, "comprehensiveness"),
        sufficiency=_estimate(row, "sufficiency"),
        erasure=_estimate(row, "erasure"),
        sensitivity=_estimate(row, "sensitivity"),
        evidence={
            "agreement": row["agreement"],
            "faithfulness": row["faithfulness"],
            "interventions": row["interventions"],
        },
        to_decide=examples_to_decide(estimates, int(row["n"]), options, weights=interventions_decide(row["method"]))
        if row["verdict"] == "inconclusive"
        else None,
    )


def summarise_verdicts(
    slice_verdicts: pd.DataFrame, sufficiency_by_method: Mapping[str, float], options: VerdictOptions
) -> VerdictReport:
    """Overall verdicts, the slice grid, layer verdicts, the recommendation and the sentences.

    Args:
        slice_verdicts: The stored ``slice_verdicts`` rows of one run.
        sufficiency_by_method: AOPC sufficiency of every method (references included; lower is better),
            for recommending a reference when no attention-based explanation is faithful.
        options: The run's verdict thresholds; slices smaller than ``min_examples`` are inconclusive by
            construction and not named.
    """
    if slice_verdicts.empty:
        return VerdictReport((), (), (), None, ())
    methods_rows = slice_verdicts[slice_verdicts["method"] != "attention heads"]
    rows = [_verdict_row(row, options) for _, row in methods_rows.iterrows()]
    overall = [row for row in rows if row.slice == "overall"]
    grid = []
    for kind in SLICE_ORDER:
        for value in dict.fromkeys(row.slice_value for row in rows if row.slice == kind):
            members = [row for row in rows if row.slice == kind and row.slice_value == value]
            grid.append((kind, value, members[0].n, members))
    heads = slice_verdicts[slice_verdicts["method"] == "attention heads"]
    layers = [
        HeadRow(
            row["slice"],
            row["slice_value"],
            int(row["n"]),
            row["verdict"],
            row["reason"],
            _estimate(row, "agreement"),
            _estimate(row, "importance"),
        )
        for _, row in heads[heads["slice"] == "layer"].iterrows()
    ]
    recommended, sentences = _recommendation(overall, rows, sufficiency_by_method, options.min_examples)
    return VerdictReport(overall, grid, layers, recommended, sentences)


def _recommendation(
    overall: Sequence[VerdictRow],
    rows: Sequence[VerdictRow],
    sufficiency_by_method: Mapping[str, float],
    min_examples: int,
) -> tuple[str | None, list[str]]:
    """The verdict sentences and the explanation to show users (None when no explanation is faithful).

    The recommended explanation is the overall-faithful attention method with the largest AOPC gain
    over random (ties: higher agreement); without one, the reference with the lowest AOPC sufficiency
    (its top tokens alone keep the prediction best; ERASER, DeYoung et al. 2020). Not comprehensiveness:
    leave-one-out scores each token by the drop in the predicted probability when that token is removed,
    the very quantity comprehensiveness measures (with the same removal operator), so comprehensiveness
    would favour it by construction. Sufficiency keeps the top tokens instead, which no reference scores by.
    """
    judged = [
        r for r in rows if r.slice != "overall" and r.n >= min_examples and not math.isnan(r.comprehensiveness.mean)
    ]
    sentences = [_overall_sentence(overall), *_extreme_slice_sentences(judged)]
    faithful = [row for row in overall if row.verdict == "faithful"]
    if faithful:
        chosen = max(faithful, key=lambda r: (r.comprehensiveness.mean, r.agreement.mean))
        sentences += _attention_recommendation(chosen, judged)
        return chosen.method, sentences
    references = {
        m: v
        for m, v in sufficiency_by_method.items()
        if m in METHODS and METHODS[m].family == MethodFamily.REFERENCE and not math.isnan(v)
    }
    if references:
        best_reference = min(references, key=lambda m: references[m])
        title, value = in_sentence(METHODS[best_reference].title), references[best_reference]
        sentences.append(
            "Recommendation: no attention-based explanation is shown to be faithful for this model; show "
            f"{title} instead (AOPC sufficiency {value:.3f}: its top tokens alone keep the prediction best among "
            "the references), and present attention, if at all, as a clue that was not validated. The references "
            "are compared by sufficiency, not by comprehensiveness, which leave-one-out would win by construction "
            "(it scores each token by the very removal comprehensiveness measures)."
        )
        return best_reference, sentences
    sentences.append("Recommendation: no explanation is shown to be faithful for this model on this data.")
    return None, sentences


def _overall_sentence(overall: Sequence[VerdictRow]) -> str:
    """'Verdict over all examples: faithful: ...; inconclusive: ...; not faithful: ...'."""
    by_verdict: dict[str, list[str]] = {}
    for row in overall:
        by_verdict.setdefault(row.verdict, []).append(in_sentence(row.title))
    return (
        "Verdict over all examples: "
        + "; ".join(
            f"{verdict}: {', '.join(titles)}"
            for verdict in ("faithful", "inconclusive", "not faithful")
            if (titles := by_verdict.get(verdict))
        )
        + "."
    )


def _extreme_slice_sentences(judged: Sequence[VerdictRow]) -> list[str]:
    """The judged slice where attention is most faithful, and the one where it is least."""
    sentences = []
    faithful_slices = [r for r in judged if r.verdict == "faithful"]
    if faithful_slices:
        best = max(faithful_slices, key=lambda r: r.comprehensiveness.mean)
        sentences.append(
            f"Attention is most faithful on {_slice_words(best)}: {in_sentence(best.title)} beats random removal by "
            f"{best.comprehensiveness.mean:+.3f} AOPC and agrees with the references at τ {best.agreement.mean:.2f} "
            f"({best.n} examples)."
        )
    if judged:
        worst = min(judged, key=lambda r: (r.verdict != "not faithful", r.comprehensiveness.mean))
        sentences.append(
            f"It is least faithful on {_slice_words(worst)}: {in_sentence(worst.title)} is {worst.verdict} there "
            f"(AOPC gain over random {worst.comprehensiveness.mean:+.3f}, τ with the references "
            f"{worst.agreement.mean:.2f}, {worst.n} examples)."
        )
    return sentences


def _attention_recommendation(chosen: VerdictRow, judged: Sequence[VerdictRow]) -> list[str]:
    """Recommend the chosen attention method, naming its weak slices and the faithful alternatives there."""
    recommendation = (
        f"Recommendation: show {in_sentence(chosen.title)} to users of this model (faithful overall: AOPC gain over "
        f"random {chosen.comprehensiveness:+.3f}, τ with the references {chosen.agreement:.2f})"
    )
    weak = [r for r in judged if r.method == chosen.method and r.verdict != "faithful"]
    if weak:
        recommendation += "; it is not shown faithful on " + ", ".join(_slice_words(r) for r in weak[:4])
        if len(weak) > 4:
            recommendation += f" and {len(weak) - 4} more slice(s)"
    sentences = [recommendation + "."]
    alternatives = [
        r
        for r in judged
        if r.method != chosen.method
        and r.verdict == "faithful"
        and any(w.slice == r.slice and w.slice_value == r.slice_value for w in weak)
    ]
    for other in alternatives[:2]:
        sentences.append(
            f"On {_slice_words(other)}, {in_sentence(other.title)} is faithful where "
            f"{in_sentence(chosen.title)} is not "
            f"(AOPC gain {other.comprehensiveness.mean:+.3f}, τ {other.agreement.mean:.2f})."
        )
    return sentences


def _slice_words(row: VerdictRow) -> str:
    if row.slice == "predicted class":
        return f"examples predicted {row.slice_value}"
    if row.slice == "true class":
        return f"examples whose gold label is {row.slice_value}"
    if row.slice == "correctness":
        return "correctly classified examples" if row.slice_value == "correct" else "misclassified examples"
    if row.slice == "confidence":
        return f"predictions with confidence {row.slice_value.removeprefix('p ')}"
    if row.slice == "length":
        return f"inputs of {row.slice_value.replace('tokens', 'content tokens')}"
    return row.slice_value
