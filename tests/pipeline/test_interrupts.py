"""A Ctrl-C is recorded, so that an interrupt that surfaces as another exception still ends the run at once."""

from __future__ import annotations

import signal
import threading

import pytest

from tasks.config import ExecutionSettings
from tasks.pipeline import interrupts, runners


@pytest.fixture
def sigint_handler():
    """Python's own SIGINT handler for the test, whatever the test runner installed; restored after."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
    interrupts.record_interrupts()  # forget the test's interrupt


def test_a_sigint_is_recorded_and_still_raises_keyboard_interrupt(sigint_handler):
    interrupts.record_interrupts()
    assert not interrupts.interrupted()
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    assert interrupts.interrupted()
    interrupts.record_interrupts()  # the next command starts afresh
    assert not interrupts.interrupted()


def test_an_ignored_sigint_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        interrupts.record_interrupts()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_after_a_ctrl_c_any_exception_leaves_the_batches_still_computing_behind(monkeypatch):
    """As pydantic-core's serialisation error does when the interrupt lands inside it: the runner does not wait."""
    monkeypatch.setattr(runners, "interrupted", lambda: True)
    batch_done = threading.Event()
    watchdog = threading.Timer(20.0, batch_done.set)  # a runner that waits ends the test, failing, after 20 s
    watchdog.start()
    try:
        pool = runners.task_runner_for(ExecutionSettings(task_runner="threads", concurrency=1))
        with pytest.raises(ValueError), pool as runner:
            computing = runner._executor.submit(batch_done.wait)
            raise ValueError("Error calling function `_ser_model`: KeyboardInterrupt")
        assert not computing.done(), "the runner waited for the batch still computing"
    finally:
        batch_done.set()
        watchdog.cancel()
