"""A Ctrl-C, recorded: an interrupt can surface as another exception.

Python raises ``KeyboardInterrupt`` wherever the main thread is when SIGINT arrives, and inside a library's
compiled code it can come back as that library's own error: pydantic-core's serializer, interrupted while
Prefect's process pool serialises a task's context, raises a ``PydanticSerializationError`` that only names
the ``KeyboardInterrupt`` in its message. Code unwinding from such an error must still treat it as the
interrupt it is (stop waiting for batches, end at once), so ``record_interrupts`` installs a SIGINT handler
that records the interrupt before raising ``KeyboardInterrupt`` as Python's own handler does, and
``interrupted`` tells whether one came.

An interrupt can also be swallowed: DuckDB, interrupted inside a query, cancels it and raises
``RuntimeError('Query interrupted')``, which a task declared with retries would simply run again, and the run
would go on waiting for a batch that the same Ctrl-C stopped. So no task is retried after an interrupt
(``unless_interrupted``, every retried task's ``retry_condition_fn``): its error ends the run as the interrupt.
And where the main thread waits for batches, it waits in slices and raises ``KeyboardInterrupt`` once an
interrupt has come (``stop_if_interrupted``), whatever swallowed the one Python raised.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

_interrupted = threading.Event()


def record_interrupts() -> None:
    """Record every SIGINT from now on (forgetting earlier ones); where SIGINT is ignored, it stays ignored.

    Only the main thread can install a signal handler; elsewhere this does nothing.
    """
    _interrupted.clear()
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _record_and_raise)


def interrupted() -> bool:
    """Whether SIGINT came since ``record_interrupts``."""
    return _interrupted.is_set()


def stop_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` if SIGINT has come: for code that goes on after a library swallowed it."""
    if interrupted():
        raise KeyboardInterrupt


def unless_interrupted(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's ``retry_condition_fn`` of every retried task: retry a failed try unless SIGINT has come."""
    return not interrupted()


def _record_and_raise(signum: int, frame: FrameType | None) -> None:
    _interrupted.set()
    signal.default_int_handler(signum, frame)
