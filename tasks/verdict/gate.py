"""The gate: checks a scheduled or CI audit must pass, or the run fails (exit status 4).

A check is ``KIND:METHOD``, ``METHOD`` an attention-based method id, ``any`` (at least one passes) or
``all`` (every one passes), judged on the overall verdict row of the run:

- ``faithful``: the verdict is *faithful*;
- ``not-unfaithful``: the verdict is not *not faithful* (faithful or inconclusive);
- ``beats-random``: the lower end of the AOPC comprehensiveness gain over random is above 0;
- ``agrees``: the agreement evidence supports faithfulness (its interval reaches the threshold).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

CHECKS: dict[str, Callable[[pd.Series], bool]] = {
    "faithful": lambda row: row["verdict"] == "faithful",
    "not-unfaithful": lambda row: row["verdict"] != "not faithful",
    "beats-random": lambda row: bool(pd.notna(row["comprehensiveness_low"]) and row["comprehensiveness_low"] > 0),
    "agrees": lambda row: row["agreement"] == "supports",
}


class GateFailed(Exception):
    """Some gate checks failed; the audit itself finished and its results and report are stored."""

    def __init__(self, failures: Sequence[str], outcome: Mapping[str, Any]) -> None:
        super().__init__("the audit did not pass its gate: " + "; ".join(failures))
        self.failures = list(failures)
        self.outcome = dict(outcome)


def parse_check(check: str) -> tuple[str, str]:
    """``KIND:METHOD`` into its parts.

    Raises:
        ValueError: Unknown kind or missing method.
    """
    kind, _, method = check.partition(":")
    if kind not in CHECKS or not method:
        raise ValueError(f"a gate check is KIND:METHOD with KIND one of {', '.join(CHECKS)}; got {check!r}")
    return kind, method


def check_gate(checks: tuple[str, ...]) -> tuple[str, ...]:
    """``checks`` unchanged when each is a well-formed ``KIND:METHOD`` (see ``parse_check``).

    Raises:
        ValueError: A check has an unknown kind or no method.
    """
    for check in checks:
        parse_check(check)
    return checks


def failed_checks(checks: Sequence[str], slice_verdicts: pd.DataFrame) -> list[str]:
    """The checks that fail, each with the numbers behind it (empty when all pass)."""
    overall = slice_verdicts[(slice_verdicts["slice"] == "overall") & (slice_verdicts["method"] != "attention heads")]
    rows = {row["method"]: row for _, row in overall.iterrows()}
    failures = []
    for check in checks:
        kind, method = parse_check(check)
        chosen = list(rows) if method in ("any", "all") else [method]
        missing = [m for m in chosen if m not in rows]
        if missing or not chosen:
            failures.append(f"{check}: the run has no verdict for {', '.join(missing) or 'any attention method'}")
            continue
        passed = {m: CHECKS[kind](rows[m]) for m in chosen}
        ok = any(passed.values()) if method == "any" else all(passed.values())
        if not ok:
            described = ", ".join(
                f"{m} is {rows[m]['verdict']} (AOPC gain {rows[m]['comprehensiveness_mean']:+.3f} "
                f"[{rows[m]['comprehensiveness_low']:+.3f}, {rows[m]['comprehensiveness_high']:+.3f}], "
                f"τ {rows[m]['agreement_mean']:.2f})"
                for m, result in passed.items()
                if not result
            )
            failures.append(f"{check}: {described}")
    return failures
