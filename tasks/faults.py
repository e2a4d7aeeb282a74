"""Named points where the reliability tests can kill the process, to prove that no kill loses results.

Setting ``ATTENTION_AUDIT_KILL_AT=<point>`` (or ``<point>:<n>``) makes the process send itself SIGKILL
the first (or ``n``-th) time it reaches ``checkpoint(<point>)``. Unset, a checkpoint does nothing.

Points: ``batch-writing`` (inside a batch's database transaction, after its rows are inserted, before
the commit), ``batch-written`` (after the commit), ``verdicts-writing`` (inside the verdict transaction),
``report-html`` and ``report-pdf`` (after the file is rendered, before it replaces the previous one).

``ATTENTION_AUDIT_INTERRUPT_AT=<point>[:n]`` instead sends SIGINT there to the process group, as a user's
Ctrl-C in a terminal reaches every process of the foreground group (the command, its worker processes),
and then holds the calling thread forever, as a batch that is still computing would: the command must end
without it. Point: ``batch-computing`` (a batch's worker, before its methods run). Use it only in a process
started in a session of its own (``start_new_session``), or the signal reaches the caller too.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

KILL_AT = "ATTENTION_AUDIT_KILL_AT"
INTERRUPT_AT = "ATTENTION_AUDIT_INTERRUPT_AT"
_arrivals: Counter[tuple[str, str]] = Counter()


def checkpoint(point: str) -> None:
    """Act if this is the n-th arrival at a point the environment names.

    ``ATTENTION_AUDIT_KILL_AT``: kill this process. ``ATTENTION_AUDIT_INTERRUPT_AT``: interrupt its process
    group, and hold this thread.
    """
    if _arrived(KILL_AT, point):
        os.kill(os.getpid(), signal.SIGKILL)
    if _arrived(INTERRUPT_AT, point):
        os.killpg(os.getpgrp(), signal.SIGINT)  # as Ctrl-C reaches the foreground process group
        threading.Event().wait()  # never set: the thread is busy for as long as the process lives


def _arrived(variable: str, point: str) -> bool:
    """Whether ``variable`` names ``point`` and this is its n-th arrival there."""
    target = os.environ.get(variable)
    if not target:
        return False
    name, _, count = target.partition(":")
    if name != point:
        return False
    _arrivals[(variable, point)] += 1
    return _arrivals[(variable, point)] >= int(count or 1)
