"""Progress of the long stages: a bar where the output is a terminal, and log lines.

Every stage that can run for minutes (a batch's methods, the sanity check, the seed baseline, the verdicts,
the report) takes a ``tasks.records.Progress`` callback and tells it after each step; ``StepProgress``
turns that into a tqdm bar (shown only on a terminal, like the batches' bar) and a log line per step, or
per ``every`` seconds where steps are short and many.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger
from prefect.exceptions import MissingContextError
from tqdm.auto import tqdm


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's logger of the running flow or task, or this module's logger when called outside a run (``.fn()``)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


class StepProgress:
    """A ``Progress`` for one stage: ``stage: what (done/total, elapsed s)`` log lines and a bar."""

    def __init__(
        self, stage: str, logger: logging.Logger | logging.LoggerAdapter, *, bar: bool = True, every: float = 0.0
    ) -> None:
        """Report ``stage`` to ``logger``, with a tqdm bar when ``bar``, at most one line per ``every`` seconds."""
        self.stage, self.logger, self.bar_wanted, self.every = stage, logger, bar, every
        self.started = self.logged = time.perf_counter()
        self.bar: tqdm | None = None

    def __call__(self, done: int, total: int, what: str) -> None:
        """Tell that ``done`` of ``total`` steps are done, the last being ``what``."""
        now = time.perf_counter()
        if self.bar_wanted:
            if self.bar is None:
                self.bar = tqdm(total=total, desc=self.stage, unit="step", disable=None, leave=False)
            self.bar.update(done - self.bar.n)
        if now - self.logged >= self.every or done == total:
            self.logger.info("%s: %s (%d/%d, %.0f s)", self.stage, what, done, total, now - self.started)
            self.logged = now

    def close(self) -> None:
        """Close the bar, if one was shown."""
        if self.bar is not None:
            self.bar.close()


@contextmanager
def reported(
    stage: str, logger: logging.Logger | logging.LoggerAdapter, *, bar: bool = True, every: float = 0.0
) -> Iterator[StepProgress]:
    """A ``StepProgress`` for ``stage`` whose bar is closed when the block ends."""
    progress = StepProgress(stage, logger, bar=bar, every=every)
    try:
        yield progress
    finally:
        progress.close()
