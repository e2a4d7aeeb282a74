"""The report's plain-word sentences: the executive summary and the per-method details.

Pure functions of the rows in ``tasks.report.aggregates`` and the verdict and intervention reports;
each sentence quotes the numbers it rests on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tasks.config import AuditConfig
from tasks.explain.registry import spec_of
from tasks.records import UNDER_TEST, MethodFamily
from tasks.report.aggregates import BASELINE, AgreementRow, FaithfulnessRow, PlausibilityRow, SanityRow
from tasks.report.interventions import InterventionReport
from tasks.report.verdicts import VerdictReport
from tasks.report.words import in_sentence

BEATS_RANDOM_WORDS = {
    "yes": "more faithful than a random ranking on both measures",
    "partly": "more faithful than a random ranking on one of the two measures",
    "no": "no more faithful than a random ranking",
}


def summary(
    examples: pd.DataFrame,
    verdict: VerdictReport,
    interventions: InterventionReport,
    completeness: Mapping[str, str],
    plausibility: Sequence[PlausibilityRow] = (),
    failures: Sequence[dict[str, Any]] = (),
) -> list[str]:
    """The executive summary in plain words: the verdict first, each sentence with its numbers."""
    n = len(examples)
    labelled = examples.dropna(subset=["label"])
    if not labelled.empty:
        accuracy = float((labelled["label"] == labelled["predicted"]).mean())
        opening = (
            f"The model was audited on {n} examples; it classifies {100 * accuracy:.1f} % of the {len(labelled)} "
            "labelled ones correctly. Every explanation explains the predicted class."
        )
    else:
        opening = f"The model was audited on {n} unlabelled examples; every explanation explains the predicted class."
    sentences = [opening, *verdict.sentences, *interventions.summary, *plausibility_sentences(plausibility)]
    if completeness:
        sentences.append(
            f"Integrated gradients satisfied completeness on {completeness['holds']} of examples "
            f"(median absolute error {completeness['median_abs_error']})."
        )
    truncated = int(examples["truncated"].sum())
    if truncated:
        sentences.append(f"{truncated} example(s) were truncated to the maximum length; their tails were not audited.")
    if failures:
        sentences.insert(
            1,
            f"{len(failures)} example(s) failed and are excluded from every number in this report (see "
            '"Failed examples"); running the same command again retries them.',
        )
    return sentences


def coverage(metrics: pd.DataFrame, examples: pd.DataFrame, methods: Sequence[str], config: AuditConfig) -> list[str]:
    """Sentences naming the methods that skipped examples (e.g. flow above its length bound), and what was left out.

    Left out: soft faithfulness (``--no-soft-faithfulness``), the second removal operator
    (``--removal-check-sample 0``).
    """
    scored = metrics[metrics["metric"] == "aopc_comprehensiveness"].groupby("method")["example_id"].agg(set)
    every = set(examples["example_id"])
    sentences = []
    for method in methods:
        lacking = sorted(every - scored.get(method, set()))
        if not lacking:
            continue
        reason = (
            f"inputs longer than {config.methods.flow_max_tokens} tokens, the --flow-max-tokens bound"
            if method == "flow"
            else "the method does not apply to them"
        )
        shown = ", ".join(lacking[:20]) + (" …" if len(lacking) > 20 else "")
        sentences.append(
            f"{spec_of(method).title} was not computed for {len(lacking)} of {len(every)} examples ({reason}): "
            f"{shown}. Its statistics cover the others."
        )
    if not config.methods.soft_faithfulness:
        sentences.append(
            "Soft comprehensiveness and sufficiency were left out of this run (--no-soft-faithfulness); no verdict "
            "reads them."
        )
    if config.methods.removal_check_sample == 0:
        sentences.append(
            "The faithfulness evidence was not recomputed with a second removal operator (--removal-check-sample 0), "
            "so this report cannot say whether it survives the choice of operator."
        )
    return sentences


def sanity_sentences(rows: Sequence[SanityRow], config: AuditConfig) -> list[str]:
    """One sentence on the model-parameter randomisation check (Adebayo et al. 2018)."""
    if not rows:
        return []
    failing = [row for row in rows if row.result == "fails" and row.family != "baseline"]
    passing = [row for row in rows if row.result == "passes"]
    sentence = (
        f"Sanity check (Adebayo et al. 2018): with every layer randomised, {len(passing)} of {len(rows)} explanations "
        f"change enough to pass (absolute-value Spearman ρ with the original below {config.sanity.similarity_max:g})"
    )
    if failing:
        sentence += "; these barely change and so cannot be explaining this model: " + ", ".join(
            f"{in_sentence(row.title)} (ρ {row.fully_randomised.mean:.2f})" for row in failing
        )
    return [sentence + "."]


def not_applicable_sentences(skipped: Sequence[Mapping[str, str]]) -> list[str]:
    """One sentence naming the configured work that this model could not support, and why."""
    if not skipped:
        return []
    names = ", ".join(f"{row['name']} ({row['kind']})" for row in skipped)
    reasons = "; ".join(dict.fromkeys(row["reason"] for row in skipped))
    return [f"Not applicable to this model, so not part of this audit: {names}. Why: {reasons}."]


def plausibility_sentences(rows: Sequence[PlausibilityRow]) -> list[str]:
    """Which explanations look right without being faithful, and the reverse (Jacovi & Goldberg 2020)."""
    if not rows:
        return []
    chance = next((row.auprc.mean for row in rows if row.method == BASELINE), float("nan"))
    sentences = []
    deceptive = [row for row in rows if row.quadrant == "plausible, not faithful"]
    hidden = [row for row in rows if row.quadrant == "faithful, not plausible"]
    if deceptive:
        sentences.append(
            "Looks right but is not faithful: "
            + ", ".join(f"{in_sentence(row.title)} (AUPRC {row.auprc.mean:.2f})" for row in deceptive)
            + f" highlight what people highlight better than chance (AUPRC {chance:.2f}) but do not beat random "
            "removal on both measures."
        )
    if hidden:
        sentences.append(
            "Faithful but not plausible: "
            + ", ".join(f"{in_sentence(row.title)} (AUPRC {row.auprc.mean:.2f})" for row in hidden)
            + f" reflect what the model uses but do not match the human rationales better than chance ({chance:.2f})."
        )
    if not sentences:
        both = [in_sentence(row.title) for row in rows if row.quadrant == "plausible and faithful"]
        sentences.append(
            "Against the human rationales, "
            + (", ".join(both) if both else "no explanation")
            + f" is both plausible (AUPRC above chance, {chance:.2f}) and faithful."
        )
    return sentences


def method_details(faithfulness: Sequence[FaithfulnessRow], agreement: Sequence[AgreementRow]) -> list[str]:
    """One paragraph per attention-based explanation, then the most faithful explanations overall."""
    by_method = {row.method: row for row in faithfulness}
    chance = [row.kendall_tau.mean for row in agreement if row.method == BASELINE]
    paragraphs = [
        f"{row.title} {_agreement_words(row.method, agreement, chance)}. "
        f"As an explanation, {_faithfulness_words(row, by_method.get(BASELINE))}."
        for row in faithfulness
        if MethodFamily(row.family) in UNDER_TEST
    ]
    ranked = [r for r in faithfulness if r.method != BASELINE and not math.isnan(r.comprehensiveness.mean)]
    if ranked:
        best = max(ranked, key=lambda r: r.comprehensiveness.mean)
        sentence = (
            f"By AOPC comprehensiveness the most faithful explanation is {in_sentence(best.title)} "
            f"({best.comprehensiveness.mean:.3f})"
        )
        attention = [r for r in ranked if r.family == MethodFamily.ATTENTION]
        if attention:
            top = max(attention, key=lambda r: r.comprehensiveness.mean)
            sentence += (
                f"; the most faithful attention-based one is {in_sentence(top.title)} "
                f"({top.comprehensiveness.mean:.3f})"
            )
        paragraphs.append(sentence + ".")
    return paragraphs


def _agreement_words(method: str, agreement: Sequence[AgreementRow], chance: Sequence[float]) -> str:
    """How an explanation ranks tokens against its best and worst agreeing reference."""
    pairs = [a for a in agreement if a.method == method and not math.isnan(a.kendall_tau.mean)]
    if not pairs:
        return "was not compared with any reference"
    best = max(pairs, key=lambda a: a.kendall_tau.mean)
    worst = min(pairs, key=lambda a: a.kendall_tau.mean)
    words = (
        f"ranks tokens in {best.strength} agreement with {in_sentence(best.reference_title)} "
        f"(mean Kendall τ {best.kendall_tau}) and in {worst.strength} agreement with "
        f"{in_sentence(worst.reference_title)} (τ {worst.kendall_tau})"
    )
    if chance:
        words += f"; a random ranking scores τ ≈ {np.nanmean(chance):.2f}"
    return words


def _faithfulness_words(row: FaithfulnessRow, random_row: FaithfulnessRow | None) -> str:
    """An explanation's AOPC comprehensiveness and sufficiency beside the random ranking's."""
    comparison = row.comprehensiveness_vs_random
    if comparison is None or random_row is None:
        return f"its AOPC comprehensiveness is {row.comprehensiveness:.3f}"
    return (
        f"removing the tokens it ranks highest lowers the predicted-class probability by "
        f"{row.comprehensiveness:.3f} on average (AOPC comprehensiveness; random: "
        f"{random_row.comprehensiveness.mean:.3f}, paired difference {comparison.difference:.3f}), and keeping "
        f"only them leaves a drop of {row.sufficiency:.3f} (AOPC sufficiency, lower is better; random: "
        f"{random_row.sufficiency.mean:.3f}): {BEATS_RANDOM_WORDS[row.beats_random]}"
    )
