"""Audit over time: what moved between two runs (a scheduled re-audit, or another model on the same data).

For every attention-based explanation judged in both runs, the per-example evidence of the verdict
(``example_verdicts``: agreement with the references, AOPC comprehensiveness and sufficiency gains over
random, erasure and permutation sensitivity) is compared as the difference of means ``B − A`` with a
95 % bootstrap interval: paired by example when both runs audited the same examples (the same data
fingerprint and examples), independent otherwise. A number *moved* when its interval excludes 0; a
verdict moved when it differs. Slices whose verdict changed are listed too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from tasks import store
from tasks.evaluate.statistics import RESAMPLES, Estimate, paired_comparison
from tasks.explain.registry import METHODS

EVIDENCE = {
    "agreement": "Kendall τ with the references",
    "comprehensiveness": "AOPC comprehensiveness gain over random",
    "sufficiency": "AOPC sufficiency gain over random (lower is better)",
    "erasure": "top minus random key erased (TVD)",
    "sensitivity": "permuted attention (median TVD)",
}


@dataclass(frozen=True)
class Movement:
    """One number of one explanation in two runs."""

    method: str
    evidence: str
    before: float
    after: float
    difference: Estimate

    @property
    def moved(self) -> bool:
        """Whether the interval of the difference excludes 0."""
        return self.difference.excludes_zero


@dataclass(frozen=True)
class Comparison:
    """Two runs side by side."""

    before: dict[str, Any]
    after: dict[str, Any]
    paired: bool
    shared_examples: int
    same_model: bool
    same_data: bool
    verdicts: Sequence[tuple[str, str, str]]  # (method, verdict before, verdict after)
    movements: Sequence[Movement]
    slice_changes: Sequence[tuple[str, str, str, str, str]]  # (method, slice, value, before, after)

    def sentences(self) -> list[str]:
        """What moved, in words."""
        out = [
            f"Compared with run {self.before['run_id']} ({str(self.before['updated_at'])[:16]}, "
            f"{'the same model' if self.same_model else 'another model'}, "
            f"{'the same data' if self.same_data else 'other data'}; "
            f"{'paired over ' if self.paired else 'independent samples, '}{self.shared_examples} shared examples):"
        ]
        changed = [(m, a, b) for m, a, b in self.verdicts if a != b]
        if changed:
            out += [f"the verdict of {_title(m)} moved from {a} to {b}" for m, a, b in changed]
        else:
            out.append("no overall verdict moved")
        moved = [m for m in self.movements if m.moved]
        out += [
            f"{_title(m.method)}: {EVIDENCE[m.evidence]} moved by {m.difference:+.3f} ({m.before:.3f} → {m.after:.3f})"
            for m in moved
        ]
        if not moved:
            out.append("no number moved beyond its 95 % interval")
        if self.slice_changes:
            out.append(f"{len(self.slice_changes)} slice verdict(s) changed")
        return out


def _title(method: str) -> str:
    return METHODS[method].title.lower() if method in METHODS else method


def difference_of_means(before: pd.Series, after: pd.Series, *, paired: bool, seed: int = 0) -> Estimate:
    """``mean(after) − mean(before)`` with a 95 % bootstrap interval (paired by index when ``paired``)."""
    if paired:
        before, after = before.align(after, join="inner")
        return paired_comparison(after.to_numpy(), before.to_numpy(), seed=seed).difference
    a, b = before.dropna().to_numpy(), after.dropna().to_numpy()
    if a.size < 2 or b.size < 2:
        return Estimate(float(np.mean(b) - np.mean(a)) if a.size and b.size else math.nan, math.nan, math.nan, 0)
    result = stats.bootstrap(
        (a, b),
        lambda x, y, axis: np.mean(y, axis=axis) - np.mean(x, axis=axis),
        n_resamples=RESAMPLES,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return Estimate(
        float(b.mean() - a.mean()),
        float(result.confidence_interval.low),
        float(result.confidence_interval.high),
        int(min(a.size, b.size)),
    )


@dataclass(frozen=True)
class RunVerdicts:
    """What a comparison reads of one run: its ``runs`` row and its verdict tables."""

    run: Mapping[str, Any]
    example_verdicts: pd.DataFrame
    slice_verdicts: pd.DataFrame


def read_run_verdicts(connection: Any, run_id: str) -> RunVerdicts:
    """Read one run's row, ``example_verdicts`` and ``slice_verdicts`` (each once).

    Raises:
        AuditError: The run does not exist.
    """
    return RunVerdicts(
        store.read_run(connection, run_id),
        store.read_table(connection, "example_verdicts", run_id),
        store.read_table(connection, "slice_verdicts", run_id),
    )


def compare_runs(connection: Any, before_id: str, after_id: str, seed: int = 0) -> Comparison:
    """Compare two stored runs of one database.

    Raises:
        AuditError: Either run does not exist.
    """
    return compare(read_run_verdicts(connection, before_id), read_run_verdicts(connection, after_id), seed=seed)


def compare(before: RunVerdicts, after: RunVerdicts, seed: int = 0) -> Comparison:
    """Compare two runs already read: verdicts, per-example evidence and slice verdicts."""
    evidence_before = before.example_verdicts.set_index(["method", "example_id"])
    evidence_after = after.example_verdicts.set_index(["method", "example_id"])
    shared_ids = set(evidence_before.index.get_level_values("example_id")) & set(
        evidence_after.index.get_level_values("example_id")
    )
    same_data = before.run["manifest"]["data"]["fingerprint"] == after.run["manifest"]["data"]["fingerprint"]
    paired = same_data and bool(shared_ids)
    methods = [
        m
        for m in dict.fromkeys(evidence_after.index.get_level_values("method"))
        if m in set(evidence_before.index.get_level_values("method"))
    ]
    verdicts, slice_changes = _verdict_changes(before.slice_verdicts, after.slice_verdicts, methods)
    return Comparison(
        before=dict(before.run),
        after=dict(after.run),
        paired=paired,
        shared_examples=len(shared_ids),
        same_model=before.run["manifest"]["model"]["fingerprint"] == after.run["manifest"]["model"]["fingerprint"],
        same_data=same_data,
        verdicts=verdicts,
        movements=_movements(evidence_before, evidence_after, methods, paired=paired, seed=seed),
        slice_changes=slice_changes,
    )


def _movements(
    before: pd.DataFrame, after: pd.DataFrame, methods: Sequence[str], *, paired: bool, seed: int
) -> list[Movement]:
    """Every evidence column measured in both runs, per method, as a difference of means."""
    movements = []
    for method in methods:
        a, b = before.xs(method), after.xs(method)
        for column in EVIDENCE:
            if a[column].notna().any() and b[column].notna().any():
                movements.append(
                    Movement(
                        method,
                        column,
                        float(a[column].mean()),
                        float(b[column].mean()),
                        difference_of_means(a[column], b[column], paired=paired, seed=seed),
                    )
                )
    return movements


def _verdict_changes(
    before: pd.DataFrame, after: pd.DataFrame, methods: Sequence[str]
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str, str, str]]]:
    """The overall verdict of each method in both runs ('—' when absent), and the slice verdicts that changed."""
    keyed = [
        {(str(r.method), str(r.slice), str(r.slice_value)): str(r.verdict) for r in frame.itertuples(index=False)}
        for frame in (before, after)
    ]
    verdicts = [
        (m, keyed[0].get((m, "overall", "all examples"), "—"), keyed[1].get((m, "overall", "all examples"), "—"))
        for m in methods
    ]
    slice_changes = [
        (key[0], key[1], key[2], keyed[0][key], verdict)
        for key, verdict in keyed[1].items()
        if key in keyed[0] and keyed[0][key] != verdict and key[1] != "overall"
    ]
    return verdicts, slice_changes


def previous_run(connection: Any, run_id: str) -> str | None:
    """The most recent other finished run on the same data (same data fingerprint), if any."""
    runs = store.read_runs(connection)
    current = runs[runs["run_id"] == run_id]
    if current.empty:
        return None
    fingerprint = store.read_run(connection, run_id)["manifest"].get("data", {}).get("fingerprint")
    for row in runs.itertuples(index=False):
        if row.run_id == run_id or not str(row.status).startswith("finished"):
            continue
        manifest = store.read_run(connection, str(row.run_id))["manifest"]
        if (
            manifest.get("data", {}).get("fingerprint") == fingerprint
            and row.updated_at <= current.iloc[0]["updated_at"]
        ):
            return str(row.run_id)
    return None
