"""Named points where the reliability tests can kill the process, to prove that no kill loses results.

Setting ``ATTENTION_AUDIT_KILL_AT=<point>`` (or ``<point>:<n>``) makes the process send itself SIGKILL
the first (or ``n``-th) time it reaches ``checkpoint(<point>)``. Unset, a checkpoint does nothing.

Points: ``batch-writing`` (inside a batch's database transaction, after its rows are inserted, before
the commit), ``batch-written`` (after the commit), ``verdicts-writing`` (inside the verdict transaction),
``report-html`` and ``report-pdf`` (after the file is rendered, before it replaces the previous one).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

KILL_AT = "ATTENTION_AUDIT_KILL_AT"
_arrivals: Counter[str] = Counter()


def checkpoint(point: str) -> None:
    """Kill this process if ``ATTENTION_AUDIT_KILL_AT`` names this point (and this is the n-th arrival)."""
    target = os.environ.get(KILL_AT)
    if not target:
        return
    name, _, count = target.partition(":")
    if name != point:
        return
    _arrivals[point] += 1
    if _arrivals[point] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
