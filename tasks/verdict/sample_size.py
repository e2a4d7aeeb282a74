"""How many examples a verdict needs: for an inconclusive slice, and for a run before it starts.

Both answers invert the normal approximation of a 95 % interval of a mean (docs/methodology.md, "How many
examples a verdict needs"): with per-example standard deviation ``σ`` the half-width at ``n`` examples is
about ``h(n) = z·σ/√n`` (``z = 1.96``), so an interval around a mean ``μ`` excludes a threshold ``t`` from

    n* = (z·σ / |μ − t|)²

examples on, if the mean stays where it is.

- **An inconclusive slice** (``examples_to_decide``): ``σ`` is read back from the stored interval,
  ``σ̂ ≈ half-width · √n / z`` (the percentile bootstrap interval is close to the normal one), so
  ``n*_e,t = n · (half-width / |μ̂ − t|)²`` for each evidence ``e`` and each threshold ``t`` it is compared
  with (``tasks.verdict.evidence.thresholds``). Every evidence's interval is shrunk as ``1/√n`` around its
  mean and the verdict recomputed by the rules themselves (``judge``) at each ``n*``: the answer is the
  smallest size from which the verdict is decided and stays so, and the *deciding* evidence is the one
  whose interval is the last to leave its threshold there. No size decides a slice whose means sit where
  the rules conflict (say agreement below its threshold while removal beats random).
- **A run** (``--target-precision H``, ``sample_for_precision``): no variance is known before the run, so
  a conservative bound is used. Every per-example evidence lies in [−1, 1] (Kendall τ; the AOPC gains over
  random, whose ``p_ŷ(x)`` terms cancel, are means of differences of two probabilities; the erasure gain
  is a difference of two TVDs; a TVD lies in [0, 1]), so ``σ ≤ 1`` (Popoviciu's inequality,
  ``σ ≤ (b − a)/2``) and ``n = ⌈(z/H)²⌉`` examples give every evidence of the overall slice a 95 % half-width
  of at most about ``H`` (a slice with a share ``f`` of them about ``H/√f``).

References:
    Popoviciu (1935), "Sur les équations algébriques ayant toutes leurs racines réelles", Mathematica 9.
    Efron & Tibshirani (1993), "An Introduction to the Bootstrap", Chapman & Hall.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from tasks.config import AuditConfig, VerdictOptions
from tasks.evaluate.statistics import Estimate
from tasks.verdict.evidence import Judgement, Verdict, judge, thresholds

Z = 1.96
"""The normal quantile of a two-sided 95 % interval."""
SD_BOUND = 1.0
"""The largest standard deviation of any per-example evidence (all lie in [−1, 1]): ``--target-precision``'s bound."""
EVIDENCE_WORDS = {
    "agreement": "agreement with the references",
    "comprehensiveness": "AOPC comprehensiveness gain over random",
    "sufficiency": "AOPC sufficiency difference with random",
    "erasure": "top-minus-random erasure",
    "sensitivity": "permuted-attention TVD",
    "consistency": "agreement between the references",
}
SHORT_WORDS = {
    "agreement": "agreement",
    "comprehensiveness": "comprehensiveness",
    "sufficiency": "sufficiency",
    "erasure": "erasure",
    "sensitivity": "permutation",
    "consistency": "reference consistency",
}
SLICE_SIZE = "slice size"
"""The deciding 'evidence' when only the smallest judged slice size stands in the way."""
NO_NUMBER = "no number of examples would decide this"


def examples_for_half_width(sd: float, half_width: float) -> float:
    """``(z·σ/h)²``: the examples at which a 95 % interval of a mean is about ``±h`` wide (normal approximation).

    Args:
        sd: The per-example standard deviation ``σ``.
        half_width: The half-width ``h`` (or the distance ``|μ − t|`` from the mean to a threshold).
    """
    return (Z * sd / half_width) ** 2


@dataclass(frozen=True)
class ExamplesToDecide:
    """How many examples would decide an inconclusive verdict if the means stayed where they are.

    Attributes:
        examples: About this many examples in the slice would decide it; None when no number would.
        verdict: The verdict they would give (None when no number would).
        deciding: The evidence whose interval is the last to leave its threshold (``EVIDENCE_WORDS`` keys, or
            ``SLICE_SIZE``); empty when no number would decide it.
        reason: Why no number is given, in a sentence (empty otherwise).
        blocked: The same in a few words, for a table cell (empty otherwise).
    """

    examples: int | None
    verdict: Verdict | None
    deciding: tuple[str, ...] = ()
    reason: str = ""
    blocked: str = ""

    @property
    def words(self) -> str:
        """'about 400 examples would decide this (faithful; deciding: agreement with the references)'."""
        if self.examples is None:
            return self.reason
        deciding = ", ".join(EVIDENCE_WORDS.get(name, name) for name in self.deciding)
        return f"about {self.examples:,} examples would decide this ({self.verdict}; deciding: {deciding})"

    @property
    def sentence(self) -> str:
        """``words`` as a sentence: capitalised, with a full stop."""
        return f"{self.words[0].upper()}{self.words[1:]}."

    @property
    def short(self) -> str:
        """For a table cell: '≈ 400 examples decide: faithful (agreement)', or why no number is given."""
        if self.examples is None:
            return self.blocked
        deciding = ", ".join(SHORT_WORDS.get(name, name) for name in self.deciding)
        return f"≈ {self.examples:,} examples decide: {self.verdict} ({deciding})"


def examples_to_decide(
    estimates: Mapping[str, Estimate], n: int, options: VerdictOptions, *, weights: bool = True
) -> ExamplesToDecide | None:
    """How many examples would decide the verdict of a slice of ``n`` examples; None when it is decided.

    Args:
        estimates: Each evidence's mean and 95 % interval (the ``EVIDENCE_COLUMNS``; one that was not
            measured stays unmeasured).
        n: The slice's examples.
        options: The verdict's thresholds.
        weights: The interventions on the attention weights take part in the verdict
            (``tasks.verdict.evidence.interventions_decide``); when False they are left out here, so that
            they neither decide nor block a verdict.
    """
    if not weights:
        unmeasured = Estimate(float("nan"), float("nan"), float("nan"), 0)
        estimates = {**estimates, "erasure": unmeasured, "sensitivity": unmeasured}
    if judge(estimates, options, n=n, weights=weights).verdict != "inconclusive":
        return None
    if n < 2:
        reason = "the examples needed are unknown: one example gives no interval, so no variance to size from"
        return ExamplesToDecide(None, None, reason=reason, blocked="n unknown: one example, no variance")
    crossings = _crossings(estimates, n, options)
    if not crossings:
        return ExamplesToDecide(
            None,
            None,
            reason=f"{NO_NUMBER}: every unclear evidence has its mean exactly on its threshold",
            blocked="no n decides: a mean on its threshold",
        )
    ordered = sorted({size for _, size in crossings}, reverse=True)
    judged = {size: _judged_past(estimates, n, size, options, weights) for size in ordered}
    final = judged[ordered[0]]  # past every crossing each evidence has its final status
    if final.verdict == "inconclusive":
        return _undecidable(final, weights)
    decided_from = ordered[0]
    for size in ordered[1:]:
        if judged[size].verdict != final.verdict:
            break
        decided_from = size
    deciding = tuple(dict.fromkeys(name for name, size in crossings if size == decided_from))
    return ExamplesToDecide(decided_from, final.verdict, deciding)


def _judged_past(
    estimates: Mapping[str, Estimate], n: int, size: int, options: VerdictOptions, weights: bool
) -> Judgement:
    """The verdict at ``size`` examples, just past any crossing there (so that strict comparisons hold)."""
    shrink = math.sqrt(n / (size * (1 + 1e-9)))
    return judge(_projected(estimates, shrink), options, n=size, weights=weights)


def _crossings(estimates: Mapping[str, Estimate], n: int, options: VerdictOptions) -> list[tuple[str, int]]:
    """Every (evidence, size) at which an end of the evidence's interval crosses one of its thresholds.

    ``n*_e,t = n · (half-width / |μ̂ − t|)²`` rounded up, and at least ``n + 1`` (an asymmetric bootstrap
    interval can straddle a threshold that the centred one already excludes); ``(SLICE_SIZE,
    min_examples)`` when ``n`` is below ``min_examples``. An evidence of zero width, unmeasured, or with
    its mean on a threshold never crosses it.
    """
    crossings: list[tuple[str, int]] = []
    if n < options.min_examples:
        crossings.append((SLICE_SIZE, max(options.min_examples, n + 1)))
    for name, values in thresholds(options).items():
        estimate = estimates.get(name)
        if estimate is None or not _measured(estimate) or estimate.high == estimate.low:
            continue
        half = (estimate.high - estimate.low) / 2
        for threshold in values:
            if estimate.mean != threshold:
                size = math.ceil(round(n * (half / abs(estimate.mean - threshold)) ** 2, 6))
                crossings.append((name, max(n + 1, size)))
    return crossings


def _measured(estimate: Estimate) -> bool:
    return estimate.n > 0 and not (math.isnan(estimate.mean) or math.isnan(estimate.low) or math.isnan(estimate.high))


def _projected(estimates: Mapping[str, Estimate], shrink: float) -> dict[str, Estimate]:
    """Every measured interval centred on its mean, its half-width times ``shrink``."""
    out = {}
    for name, estimate in estimates.items():
        if _measured(estimate):
            half = (estimate.high - estimate.low) / 2 * shrink
            estimate = Estimate(estimate.mean, estimate.mean - half, estimate.mean + half, estimate.n)
        out[name] = estimate
    return out


def _undecidable(final: Judgement, weights: bool) -> ExamplesToDecide:
    """Why no number of examples decides a verdict: each evidence's status once every interval has crossed."""
    if final.reason.startswith("references disagree"):
        reason = f"{NO_NUMBER}: the references disagree with each other, so agreement with them says little"
        return ExamplesToDecide(None, None, reason=reason, blocked="no n decides: the references disagree")
    status = {"supports": "supports", "contradicts": "contradicts", "unclear": "stays unclear"}
    plural = {"supports": "support", "contradicts": "contradict", "unclear": "stay unclear"}
    interventions = (
        f" and the interventions {plural[final.interventions]}"
        if weights
        else " (the interventions on the weights do not decide this explanation)"
    )
    reason = (
        f"{NO_NUMBER}: with the means where they are, agreement {status[final.agreement]}, removal against random "
        f"{status[final.faithfulness]}{interventions}, which the rules do not combine into a verdict"
    )
    return ExamplesToDecide(None, None, reason=reason, blocked="no n decides: the evidence conflicts")


def sample_for_precision(half_width: float, min_examples: int) -> int:
    """Examples for a 95 % half-width of at most about ``half_width`` on every evidence: ``⌈(z·σ_max/H)²⌉``.

    At least ``min_examples``, so that the overall slice is judged.
    """
    return max(min_examples, math.ceil(round(examples_for_half_width(SD_BOUND, half_width), 6)))


def sized(config: AuditConfig) -> AuditConfig:
    """``config`` with ``data.limit`` set from ``data.target_precision`` (unchanged without a target).

    A ``--limit`` also given caps the sized sample. Idempotent: a sized configuration sizes to itself.
    """
    data = config.data
    if data.target_precision is None:
        return config
    needed = sample_for_precision(data.target_precision, config.verdict.min_examples)
    limit = needed if data.limit is None else min(data.limit, needed)
    return config.model_copy(update={"data": data.model_copy(update={"limit": limit})})


def sample_record(target_precision: float, limit: int, min_examples: int, rows_in_split: int) -> dict[str, float]:
    """What ``--target-precision`` chose, for the manifest: the target, the bound, the sizes, the half-width.

    Args:
        target_precision: The half-width asked for.
        limit: The sized configuration's ``data.limit`` (``sized``).
        min_examples: The smallest judged slice.
        rows_in_split: The examples the split has.

    Returns:
        ``needed`` examples under the bound, the ``examples`` audited (no more than the split has), and
        ``half_width_bound``, ``z·σ_max/√examples``: the half-width they guarantee under the bound.
    """
    examples = min(limit, rows_in_split)
    return {
        "target_precision": target_precision,
        "sd_bound": SD_BOUND,
        "needed": sample_for_precision(target_precision, min_examples),
        "limit": limit,
        "rows_in_split": rows_in_split,
        "examples": examples,
        "half_width_bound": Z * SD_BOUND / math.sqrt(examples),
    }


def sample_words(record: Mapping[str, float]) -> str:
    """The sizing in words, for the command line and the report."""
    words = (
        f"sized for a 95 % interval half-width of at most about ±{record['target_precision']:g} on every verdict "
        f"evidence of the overall slice: {int(record['needed']):,} examples under the conservative bound σ ≤ "
        f"{record['sd_bound']:g} (every per-example evidence lies in [−1, 1])"
    )
    if record["examples"] < record["needed"]:
        cap = "--limit" if record["limit"] <= record["rows_in_split"] else "the split"
        words += (
            f"; {cap} allows only {int(record['examples']):,}, so the half-width is at most about "
            f"±{record['half_width_bound']:.2f}"
        )
    return words
