"""The Prefect API of one command: the configured server, or a temporary one that this process owns.

Without ``PREFECT_API_URL``, Prefect starts a temporary server at a flow's first API call (its
``SubprocessASGIServer``: uvicorn in a child process, 5-13 s here) and stops it at exit; a run killed
with SIGKILL or SIGTERM leaves it running (about 225 MB each). ``PrefectAPI`` starts the same server,
Prefect's ``create_app(ephemeral=True)`` under uvicorn with the UI off, as the first thing a command that
runs a flow does, before the main process imports Prefect, torch or transformers, so that it comes up
while they import and the model and the corpus load; and it ties the server to the command's process:

- the server asks the kernel for SIGTERM when the thread that started it ends
  (``prctl(PR_SET_PDEATHSIG)``, Linux), and exits at once if that thread is already gone, so a command
  killed in any way, SIGKILL included, takes its server with it;
- a command that ends normally sends Prefect's queued logs and events, then stops the server;
- the server runs in a session of its own, so a Ctrl-C in the terminal (SIGINT to the foreground process
  group) reaches the command alone: an interrupted command reports its flow runs' end to the server and
  then stops it, where a server stopped by the same Ctrl-C left the command retrying its API calls for
  minutes.

The flows run against it through ``PREFECT_API_URL`` set for their duration (Prefect's
``temporary_settings``), so nothing else changes for them. A configured ``PREFECT_API_URL`` (a real
server, the test harness) is used as it is and nothing is started. Whether one is configured is decided
without importing Prefect where it is not loaded yet: ``PREFECT_API_URL`` (or ephemeral mode turned off) in
the environment settles it; otherwise the server starts on the chance that it is needed, and Prefect's own
settings (its profile, ``prefect.toml``, ``.env``) are read once Prefect is loaded anyway: if they name an
API, the unused server is stopped then.

Run as ``python -m flows.server PORT PARENT_PID``: the server process itself.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from tasks.errors import AuditError

PR_SET_PDEATHSIG = 1
"""``prctl`` option: the signal this process gets when its parent thread ends (``<linux/prctl.h>``)."""

STOP_WAIT = 5.0
"""Seconds the server may take to stop after SIGTERM before it is killed (Prefect's own choice)."""


class PrefectAPI:
    """The Prefect API the command's flows report to (a context manager).

    On entry, starts the temporary server unless an API is configured (without importing Prefect when it
    is not loaded yet: see the module docstring); ``connected()`` waits until it answers and points
    Prefect, and the processes started within it (worker processes, a local Dask cluster), at it; on exit, the
    server is stopped.
    """

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> PrefectAPI:
        settings = sys.modules.get("prefect.settings")
        if settings is not None:  # Prefect is loaded (a caller's temporary settings, a test harness): ask it
            if _configured(settings):
                return self
            environment = settings.get_current_settings().to_environment_variables(exclude_unset=True)
        elif os.environ.get("PREFECT_API_URL") or _turned_off(os.environ):
            return self  # settled by the environment, which wins over every other source of Prefect's settings
        else:
            environment = {}  # the server reads the same profile and files as Prefect would here
        self.port = _free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flows.server", str(self.port), str(os.getpid())],
            env={**os.environ, **environment, "PREFECT_UI_ENABLED": "0"},
            start_new_session=True,  # a Ctrl-C in the terminal is the command's to handle (see the module docstring)
        )
        return self

    @property
    def url(self) -> str:
        """The temporary server's API address."""
        return f"http://127.0.0.1:{self.port}/api"

    @contextmanager
    def connected(self) -> Iterator[None]:
        """Within it, Prefect talks to this API: waits for the temporary server to answer, if there is one.

        A server started on the chance that none was configured is stopped unused if Prefect's settings
        name an API after all.

        Raises:
            AuditError: The temporary server exited or did not answer within Prefect's ephemeral startup
                timeout (``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``).
        """
        if self.process is not None:
            import prefect.settings

            if _configured(prefect.settings):  # its profile or files name an API: the server started for nothing
                self._stop()
        if self.process is None:
            yield
            return
        import prefect.context
        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
            PREFECT_UI_URL,
            temporary_settings,
        )

        self._wait()
        # No UI to link to; no heartbeats: they let a lasting server tell crashed flow runs, this one ends
        # with the run, and each flow run waits up to a second for its heartbeat thread to stop.
        previous = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = self.url  # what worker processes and a local Dask cluster's inherit
        # Threads that Prefect starts without the caller's context (a process pool's log forwarder) read the
        # global settings, made from the environment when Prefect was imported: made again, they name the server
        # instead of starting a temporary one of Prefect's own.
        prefect.context.refresh_global_settings_context()
        try:
            with temporary_settings(
                updates={PREFECT_API_URL: self.url, PREFECT_UI_URL: "", PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
            ):
                yield
        finally:
            if previous is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = previous
            prefect.context.refresh_global_settings_context()

    def _wait(self) -> None:
        from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

        assert self.process is not None
        deadline = time.monotonic() + PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                ended = self.process.poll()
                raise AuditError(
                    f"the temporary Prefect server on port {self.port} "
                    + ("did not answer in time" if ended is None else f"exited with status {ended}"),
                    "set PREFECT_API_URL to a running Prefect server (prefect server start), or raise "
                    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
                )
            time.sleep(0.1)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Send Prefect's queued logs and events while the server still listens, then stop it."""
        if self.process is not None and self.process.poll() is None and "prefect.settings" in sys.modules:
            from prefect.events.worker import EventsWorker
            from prefect.logging.handlers import APILogWorker

            for worker in (APILogWorker, EventsWorker):
                worker.drain_all(timeout=STOP_WAIT, at_exit=False)
        self._stop()

    def _stop(self) -> None:
        """SIGTERM to the server (uvicorn then stops gracefully); SIGKILL only if it outlasts ``STOP_WAIT``."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _configured(settings: Any) -> bool:
    """Whether Prefect's settings (the module ``prefect.settings``) name an API or forbid a temporary server."""
    return bool(settings.PREFECT_API_URL.value()) or not settings.PREFECT_SERVER_EPHEMERAL_ENABLED.value()


def _turned_off(environment: Mapping[str, str]) -> bool:
    """Whether the environment turns Prefect's temporary server off (either of its two names)."""
    names = ("PREFECT_SERVER_EPHEMERAL_ENABLED", "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE")
    return any(environment.get(name, "").strip().lower() in ("false", "0", "no", "off") for name in names)


def _free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now (the kernel's choice)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def die_with_parent(parent: int) -> None:
    """Ask for SIGTERM when the thread that started this process ends; exit now if ``parent`` is gone already.

    Linux only (``prctl``); elsewhere nothing is asked and the server stops only when its command ends
    normally, as Prefect's own does.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent ended before the request: nobody would stop this server
        sys.exit(0)


def serve(port: int, parent: int) -> None:
    """Serve Prefect's API on 127.0.0.1:``port`` until SIGTERM, as Prefect's temporary server does."""
    die_with_parent(parent)
    import uvicorn
    from prefect.server.api.server import create_app

    uvicorn.run(create_app(ephemeral=True, final=True), host="127.0.0.1", port=port, log_level="error", lifespan="on")


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
