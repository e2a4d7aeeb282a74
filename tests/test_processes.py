"""The teardown of the servers and workers the tests start: bounded in time, nothing left running."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from tests.processes import stop_process_group

STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
deaf = "[signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)]"
ignore = f"import signal, time; {deaf}; time.sleep(600)"
child = subprocess.Popen([sys.executable, "-c", ignore])
escaped = subprocess.Popen([sys.executable, "-c", ignore], start_new_session=True)
print(child.pid, escaped.pid, flush=True)
time.sleep(600)
"""
"""A leader ignoring SIGINT and SIGTERM, a child in its group and one in a session of its own, both deaf too."""


def start(code: str) -> tuple[subprocess.Popen, list[int]]:
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert process.stdout is not None
    children = [int(pid) for pid in process.stdout.readline().split()]
    return process, children


def test_a_group_that_ignores_sigint_and_sigterm_is_killed_after_the_grace_period():
    process, children = start(STUBBORN)
    started = time.monotonic()
    killed = stop_process_group(process, grace=1.0)
    assert time.monotonic() - started < 10
    assert len(killed) == 3
    assert process.poll() is not None
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in children)


def test_a_process_that_stops_on_sigint_is_not_killed():
    process, _ = start("import time; print(flush=True); time.sleep(600)")
    assert stop_process_group(process, grace=10.0) == []
    assert process.returncode is not None
