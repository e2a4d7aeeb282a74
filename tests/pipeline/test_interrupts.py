"""A Ctrl-C is recorded, so that an interrupt that surfaces as another exception still ends the run at once."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import Future

import duckdb
import pytest
from prefect import flow, task

from tasks.config import ExecutionSettings
from tasks.pipeline import interrupts, runners, steps


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


def test_every_retried_task_gives_up_after_a_ctrl_c():
    retried = [value for value in vars(steps).values() if getattr(value, "retries", 0)]
    assert {task.name for task in retried} >= {"store-batch", "register-run", "judge-run", "render-pdf"}
    for retried_task in retried:
        assert retried_task.retry_condition_fn is interrupts.unless_interrupted, retried_task.name


def test_a_ctrl_c_that_duckdb_turns_into_its_own_error_is_not_retried(sigint_handler, prefect_harness):
    """DuckDB cancels a query on SIGINT and raises ``RuntimeError('Query interrupted')``: retried, the run would
    go on as if no Ctrl-C had come (and wait for ever on the batch the same Ctrl-C stopped in a worker)."""
    tries = []

    @task(retries=2, retry_condition_fn=interrupts.unless_interrupted)
    def write_to_duckdb() -> None:
        tries.append(1)
        connection = duckdb.connect()
        connection.execute("SET enable_progress_bar = true; SET enable_progress_bar_print = false")
        threading.Thread(target=_ctrl_c_once_running, args=(connection,), daemon=True).start()
        connection.execute("SELECT sum(i) FROM range(10000000000) t(i)").fetchall()  # about 10 s uninterrupted

    @flow
    def storing() -> None:
        write_to_duckdb()

    interrupts.record_interrupts()
    with pytest.raises(RuntimeError, match="Query interrupted"):
        storing()
    assert interrupts.interrupted()
    assert len(tries) == 1, "the interrupted write was tried again"


def _ctrl_c_once_running(connection: duckdb.DuckDBPyConnection) -> None:
    """SIGINT to this process as soon as ``connection``'s query reports progress (it is running)."""
    while connection.query_progress() < 0:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGINT)


def test_batches_in_flight_come_back_in_the_order_they_finish_with_what_they_carry():
    in_flight: runners.InFlight[Future[str], list[str]] = runners.InFlight()
    first, second = Future[str](), Future[str]()
    in_flight.add(first, ["a", "b"])
    in_flight.add(second, ["c"])
    second.set_result("done")
    first.set_result("done")
    assert in_flight.next_finished() == (second, ["c"])
    assert len(in_flight) == 1
    assert in_flight.next_finished() == (first, ["a", "b"])
    assert not in_flight


def test_a_ctrl_c_swallowed_on_the_way_still_ends_the_wait_for_batches(monkeypatch):
    """The interrupt recorded but no ``KeyboardInterrupt`` in flight: a library caught it and went on."""
    swallowed = threading.Event()
    monkeypatch.setattr(interrupts, "_interrupted", swallowed)
    in_flight: runners.InFlight[Future[str], list[str]] = runners.InFlight()
    never_finishing = Future[str]()
    in_flight.add(never_finishing, ["a"])
    threading.Timer(0.2, swallowed.set).start()
    watchdog = threading.Timer(20.0, never_finishing.set_result, args=("a wait that ignores it ends after 20 s",))
    watchdog.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            in_flight.next_finished()
    finally:
        watchdog.cancel()
