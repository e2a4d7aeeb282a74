"""Stopping the servers and workers the tests start, in bounded time, with nothing left behind.

A ``prefect worker start`` or ``prefect server start`` is started in a session of its own
(``start_new_session=True``), so its process id is also its process group id. Prefect documents Ctrl-C
(SIGINT) as the way to stop both: a worker stops polling and waits for its flow runs, a server passes
SIGTERM on to its web server; a worker turns its first SIGTERM into that SIGINT and a second one into
SIGKILL (``prefect.utilities.processutils.setup_signal_handlers_worker``). A graceful stop can still
hang (a worker waiting on a flow run or the API), so ``stop_process_group`` sends SIGINT, waits
``grace`` seconds, then sends SIGKILL to the whole group and to every descendant that left it, and
checks that none of them is still running.
"""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import suppress

import psutil

KILL_WAIT = 10.0
"""Seconds a process may take to disappear after SIGKILL (the kernel's part: normally milliseconds)."""


def process_family(pid: int) -> list[psutil.Process]:
    """The process ``pid``, its descendants and every member of its process group that is still running."""
    family: dict[int, psutil.Process] = {}
    with suppress(psutil.NoSuchProcess):
        leader = psutil.Process(pid)
        family[pid] = leader
        family.update({child.pid: child for child in leader.children(recursive=True)})
    for candidate in psutil.process_iter():
        with suppress(psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            if os.getpgid(candidate.pid) == pid:
                family[candidate.pid] = candidate
    return list(family.values())


def stop_process_group(process: subprocess.Popen, *, grace: float = 20.0) -> list[str]:
    """Stop ``process`` (started with ``start_new_session=True``) and everything it started.

    SIGINT to the leader, up to ``grace`` seconds for the group to exit, then SIGKILL to the group and
    to every descendant seen before or after the signal (a child in a session of its own included).

    Returns:
        What had to be killed, as ``"pid name"`` (empty when the graceful stop sufficed).

    Raises:
        RuntimeError: A process of the family was still running ``KILL_WAIT`` seconds after SIGKILL.
    """
    family = {member.pid: member for member in process_family(process.pid)}
    with suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    family.update({member.pid: member for member in process_family(process.pid)})
    _, running = psutil.wait_procs(list(family.values()), timeout=0)
    killed = []
    for member in running:
        with suppress(psutil.NoSuchProcess):
            killed.append(f"{member.pid} {member.name()}")
            member.kill()
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=KILL_WAIT)  # reaps the leader
    _, survivors = psutil.wait_procs(running, timeout=KILL_WAIT)
    if survivors or process.poll() is None:
        raise RuntimeError(f"still running after SIGKILL: {[member.pid for member in survivors]}")
    return killed
