"""Verdicts per slice of the corpus, per attention head, and the all-pairs agreement matrix.

A slice is a group of examples: all of them, a predicted or true class, correct or misclassified
predictions, a confidence bin or a length bin. Per slice and attention method, each evidence column of
``tasks.verdict.evidence`` is averaged over the slice's examples with a 95 % percentile bootstrap
interval, and ``judge`` turns the intervals into the verdict (docs/methodology.md, "The verdict").
Attention heads (layer and head slices) have no faithfulness-against-random evidence: a head's attention
*agrees* when its agreement supports, and matters when masking it (Michel et al. 2019) changes the output
by at least ``importance_min``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import SupportsInt, cast

import pandas as pd

from tasks.config import VerdictOptions
from tasks.evaluate.statistics import Estimate, bootstrap_means
from tasks.verdict.evidence import EVIDENCE_COLUMNS, Judgement, classify_agreement, interventions_decide, judge


def slices(examples: pd.DataFrame, options: VerdictOptions) -> dict[tuple[str, str], pd.Index]:
    """Example ids per slice: overall, predicted class, true class, correctness, confidence and length bins."""
    frame = examples.set_index("example_id")
    out: dict[tuple[str, str], pd.Index] = {("overall", "all examples"): frame.index}
    for name, group in frame.groupby("predicted_name"):
        out[("predicted class", str(name))] = group.index
    labelled = frame[frame["label"].notna()]
    for name, group in labelled.groupby("label_name"):
        out[("true class", str(name))] = group.index
    if not labelled.empty:
        correct = labelled["label"] == labelled["predicted"]
        out[("correctness", "correct")] = labelled.index[correct]
        out[("correctness", "misclassified")] = labelled.index[~correct]
    for label, members in _bins(frame["confidence"], options.confidence_bins, "confidence").items():
        out[("confidence", label)] = members
    for label, members in _bins(frame["n_content_tokens"], options.length_bins, "tokens").items():
        out[("length", label)] = members
    return {key: members for key, members in out.items() if len(members)}


def _bins(values: pd.Series, edges: Sequence[float], unit: str) -> dict[str, pd.Index]:
    """Members of each bin ``[edge_i, edge_i+1)``, labelled in words ("below 0.6", "10 to 19 tokens")."""
    bounds = [-math.inf, *edges, math.inf]
    out = {}
    for low, high in zip(bounds[:-1], bounds[1:], strict=True):
        members = values.index[(values >= low) & (values < high)]
        out[_bin_label(low, high, unit)] = members
    return out


def _bin_label(low: float, high: float, unit: str) -> str:
    """The words for the bin ``[low, high)`` of token counts or of confidence ``p``."""
    if unit == "tokens":  # whole numbers: name the last count inside the bin
        if math.isinf(low):
            return f"fewer than {high:g} tokens"
        if math.isinf(high):
            return f"{low:g} tokens or more"
        return f"{low:g} to {high - 1:g} tokens"
    if math.isinf(low):
        return f"p below {high:g}"
    if math.isinf(high):
        return f"p {low:g} or above"
    return f"p {low:g} to {high:g}"


# --- verdict tables -----------------------------------------------------------------------------


def slice_verdicts(
    evidence: pd.DataFrame, examples: pd.DataFrame, options: VerdictOptions, seed: int = 0
) -> pd.DataFrame:
    """One verdict per (attention method, slice), each evidence with its bootstrap interval."""
    rows = []
    methods = list(dict.fromkeys(evidence.index.get_level_values("method")))
    by_method = [evidence.xs(method, level="method") for method in methods]
    for (kind, value), members in slices(examples, options).items():
        parts = [frame.reindex(members) for frame in by_method]
        samples = [part[column].to_numpy() for part in parts for column in EVIDENCE_COLUMNS]
        estimated = iter(bootstrap_means(samples, seed=seed))
        for method in methods:
            estimates = {column: next(estimated) for column in EVIDENCE_COLUMNS}
            judgement = judge(estimates, options, n=len(members), weights=interventions_decide(method))
            rows.append(_slice_row(method, kind, value, len(members), judgement, estimates))
    return pd.DataFrame(rows)


def head_verdicts(
    head_agreement: pd.DataFrame, interventions: pd.DataFrame, options: VerdictOptions, seed: int = 0
) -> pd.DataFrame:
    """Per layer and per head: does the head's attention agree with the references, and does it matter?"""
    if head_agreement.empty:
        return pd.DataFrame()
    agreement = head_agreement[head_agreement["reference"].isin(options.references)]
    agreement = agreement.groupby(["example_id", "layer", "head"])["value"].mean().rename("agreement").reset_index()
    masking = interventions[(interventions["intervention"] == "head_masking") & (interventions["statistic"] == "tvd")]
    masking = masking[["example_id", "layer", "head", "value"]].rename(columns={"value": "importance"})
    joined = agreement.merge(masking, on=["example_id", "layer", "head"], how="left")
    groups = []
    for kind, keys in (("layer", ["layer"]), ("head", ["layer", "head"])):
        for group_key, group in joined.groupby(keys):
            key = cast("tuple[SupportsInt, ...]", group_key if isinstance(group_key, tuple) else (group_key,))
            value = f"layer {int(key[0]) + 1}" if kind == "layer" else f"layer {int(key[0]) + 1} head {int(key[1]) + 1}"
            groups.append((kind, value, group.groupby("example_id")[["agreement", "importance"]].mean()))
    samples = [per_example[column].to_numpy() for *_, per_example in groups for column in ("agreement", "importance")]
    estimated = iter(bootstrap_means(samples, seed=seed))
    rows = []
    for kind, value, per_example in groups:
        agreement_estimate, importance = next(estimated), next(estimated)
        evidence = classify_agreement(agreement_estimate, options)
        matters = not math.isnan(importance.low) and importance.low >= options.importance_min
        if len(per_example) < options.min_examples:
            verdict, reason = "inconclusive", f"too few examples ({len(per_example)})"
        elif evidence == "supports":
            verdict, reason = "faithful", "its attention ranks tokens like the references"
        elif evidence == "contradicts":
            verdict, reason = "not faithful", "its attention does not rank tokens like the references"
        else:
            verdict, reason = "inconclusive", "its agreement with the references straddles the threshold"
        reason += "; masking it " + ("changes the output" if matters else "hardly changes the output")
        rows.append(
            {
                "method": "attention heads",
                "slice": kind,
                "slice_value": value,
                "n": len(per_example),
                "verdict": verdict,
                "reason": f"{reason} (τ {agreement_estimate:.2f}, masked TVD {importance:.3f})",
                "agreement": evidence,
                "faithfulness": "unclear",
                "interventions": "supports" if matters else "unclear",
                **_estimate_columns({"agreement": agreement_estimate, "importance": importance}),
            }
        )
    return pd.DataFrame(rows)


def _slice_row(
    method: str, kind: str, value: str, n: int, judgement: Judgement, estimates: Mapping[str, Estimate]
) -> dict[str, object]:
    """One stored slice verdict: the judgement and each evidence's mean and interval."""
    return {
        "method": method,
        "slice": kind,
        "slice_value": value,
        "n": n,
        "verdict": judgement.verdict,
        "reason": judgement.reason,
        "agreement": judgement.agreement,
        "faithfulness": judgement.faithfulness,
        "interventions": judgement.interventions,
        **_estimate_columns(estimates),
    }


def _estimate_columns(estimates: Mapping[str, Estimate]) -> dict[str, float]:
    """``{name}_mean``, ``{name}_low`` and ``{name}_high`` for each estimate."""
    columns: dict[str, float] = {}
    for name, estimate in estimates.items():
        columns[f"{name}_mean"] = estimate.mean
        columns[f"{name}_low"] = estimate.low
        columns[f"{name}_high"] = estimate.high
    return columns


def agreement_matrix(
    metrics: pd.DataFrame, examples: pd.DataFrame, options: VerdictOptions, seed: int = 0, resamples: int = 500
) -> pd.DataFrame:
    """Mean Kendall τ and top-k overlap of every method with every other, overall and per slice.

    Each pair appears once (in its stored orientation); the random baseline's draws are averaged per
    example first. Intervals are percentile bootstrap 95 % intervals (``resamples`` resamples).
    """
    pairs = metrics[metrics["metric"].isin(["kendall_tau", "top_k_overlap"]) & metrics["reference"].notna()]
    if pairs.empty:
        return pd.DataFrame()
    per_example = pairs.groupby(["metric", "method", "reference", "example_id"])["value"].mean()
    table = per_example.unstack("example_id")  # a row per (metric, method, other); examples in sorted order
    keys = cast("list[tuple[str, str, str]]", list(table.index))  # one value per level
    rows = []
    for (kind, value), members in slices(examples, options).items():
        chosen = table.loc[:, table.columns.isin(set(members))].to_numpy()
        estimates = bootstrap_means(list(chosen), seed=seed, resamples=resamples)
        for (metric, method, other), estimate in zip(keys, estimates, strict=True):
            rows.append(
                {
                    "slice": kind,
                    "slice_value": value,
                    "method": method,
                    "other": other,
                    "statistic": metric,
                    "n": estimate.n,
                    "mean": estimate.mean,
                    "low": estimate.low,
                    "high": estimate.high,
                }
            )
    return pd.DataFrame(rows)
