"""Where the time of ``attention-audit run`` goes beyond the computation: the fixed cost, phase by phase.

Runs the real command line (``flows.cli.main``) in a fresh interpreter, from process start to exit, with
a timer around each phase: interpreter start, imports (every module's execution, wherever it happens), the
Prefect API server's start (the time the run waits for it), configuration and plan, corpus load and
encoding, model loads (calls and cache misses), the batches, storing them, the sanity check, the seed
baseline, the verdicts; then, once the results are stored (the ``audit`` flow calls the ``report`` flow),
the report: its imports, context, HTML, JSON summary, PDF and the report flow's own Prefect work; then
Prefect's last logs and events and the server's stop, and the interpreter's exit. Times are exclusive (a
phase inside another counts once, in the inner one: a module imported inside the model load counts as
imports); "Prefect and the rest" is what no phase covers: flow and task-run bookkeeping, logging, the
command line's own work.

Nothing is imported before the command line runs (``after_import.ImportWatch`` wraps each timed function
as its module loads), so the command's imports stay on its own path, overlapped with what it overlaps
them with, as when a user types it.

The computation is the batches, the sanity check's recomputed explanations and the seed baseline; the
fixed cost is the wall time less the computation and less the report, which is printed separately, as is
the time from process start to results stored.

Usage:
    python benchmarks/fixed_cost.py [--limit 24] [--no-sanity] [--pdf] [--out DIR] [-- MORE RUN OPTIONS]

Each run writes into a fresh folder (``--out``, default a temporary one), so nothing is reused; a second
run of the same command with ``--out`` of the first one measures a resumed run instead. On shared or busy
cores the figures scale with the load: the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from after_import import ImportWatch

ROOT = Path(__file__).resolve().parent.parent
START_VARIABLE = "ATTENTION_AUDIT_FIXED_COST_T0"
"""The parent's wall clock when it started the child, so the child can tell its own start-up time."""

COMPUTATION = ("batches", "sanity: explanations", "seed baseline")
"""Phases that are the audit's computation (the rest is fixed cost or report)."""
REPORT = (
    "report: imports",
    "report: flow and artifacts",
    "report: context",
    "report: HTML",
    "report: JSON summary",
    "report: PDF",
)
"""Phases of report rendering (everything after the results are stored, in the report flow), measured apart."""
PACKAGES = ("tasks", "flows")
"""Where a timed function may have been imported by name (and is replaced there too)."""


class Phases:
    """Exclusive wall and CPU seconds and calls per phase (a nested phase is subtracted from its parent).

    CPU seconds are the process's (every thread's; not those of the Prefect server's own process): on busy
    cores the wall time grows with the load, the CPU time much less.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.stored: float | None = None
        """When the results were stored (the audit flow called the report flow); None before."""
        self._local = threading.local()
        self._lock = threading.Lock()

    def imports(self) -> str:
        """The phase of a module's import: the report's once the results are stored."""
        return "imports" if self.stored is None else "report: imports"

    def add(self, phase: str, seconds: float, cpu: float, calls: int = 1) -> None:
        with self._lock:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
            self.cpu[phase] = self.cpu.get(phase, 0.0) + cpu
            self.calls[phase] = self.calls.get(phase, 0) + calls

    def timed(self, function: Callable[..., Any], phase: str | Callable[[], str]) -> Callable[..., Any]:
        """``function`` with its exclusive time added to ``phase`` (a name, or a function of nothing giving it)."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            stack: list[tuple[float, float]] = self._local.__dict__.setdefault("children", [])
            stack.append((0.0, 0.0))
            started, cpu = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed, used = time.perf_counter() - started, time.process_time() - cpu
                nested, nested_cpu = stack.pop()
                self.add(phase if isinstance(phase, str) else phase(), elapsed - nested, used - nested_cpu)
                if stack:
                    stack[-1] = (stack[-1][0] + elapsed, stack[-1][1] + used)

        wrapper.__wrapped__ = function  # type: ignore[attr-defined]
        return wrapper


def instrument(phases: Phases, target: str, phase: str) -> None:
    """Time ``module:attribute`` (or ``module:Class.method``, or ``module:task.fn``) wherever it is bound.

    Called once the module is loaded. A function is replaced in its own module and in every loaded module of
    ``PACKAGES`` that imported it by name (those loaded later import the replacement); a method on its
    class; a Prefect task's ``fn`` on the task. A target the code does not have is skipped (the phase then
    does not occur), so the same script measures the code before and after a change.
    """
    module_name, _, path = target.partition(":")
    owner: Any = sys.modules[module_name]
    *parents, attribute = path.split(".")
    for name in parents:
        owner = getattr(owner, name, None)
        if owner is None:
            return
    original = getattr(owner, attribute, None)
    if original is None:
        return
    wrapper = phases.timed(original, phase)
    setattr(owner, attribute, wrapper)
    if parents:
        return
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] in PACKAGES:
            for key, value in list(getattr(module, "__dict__", {}).items()):
                if value is original:
                    setattr(module, key, wrapper)


TARGETS = (
    ("prefect.server.api.server:SubprocessASGIServer.start", "Prefect API server start"),
    ("flows.server:PrefectAPI._wait", "Prefect API server start"),
    ("tasks.pipeline.plan:plan_run", "plan (configuration, manifest, identity)"),
    ("tasks.data.corpora:load_corpus", "corpus load"),
    ("tasks.data.encoding:encode_corpus", "corpus encoding"),
    ("tasks.model.loading:load_model", "model load"),
    ("tasks.evaluate.costs:measure_throughput", "throughput probe"),
    ("tasks.pipeline.batch:audit_batch", "batches"),
    ("tasks.store:write_batch", "store batches"),
    ("tasks.evaluate.sanity:stage_scores", "sanity: explanations"),
    ("tasks.pipeline.steps:store_sanity_check_task.fn", "sanity: the rest"),
    ("tasks.evaluate.seeds:seed_baseline", "seed baseline"),
    ("tasks.pipeline.steps:judge_run_task.fn", "verdicts"),
    ("tasks.report:build_context", "report: context"),
    ("tasks.report:render_html", "report: HTML"),
    ("tasks.report:summary_document", "report: JSON summary"),
    ("tasks.report:render_pdf", "report: PDF"),
    ("flows.server:PrefectAPI.__exit__", "Prefect: last logs and events, server stop"),
)
"""What is timed, as ``module:attribute`` and the phase it counts for."""


def child(arguments: list[str], result: Path) -> None:
    """Run the command line under the timers and write the phases to ``result`` (JSON)."""
    began = time.time()
    phases = Phases()
    phases.add("interpreter start", began - float(os.environ[START_VARIABLE]), time.process_time())
    watch = ImportWatch(lambda execute: phases.timed(execute, phases.imports)).install()
    loads: list[Callable[[], Any]] = []
    watch.when_loaded("tasks.model.loading", lambda module: loads.append(module.load_model.cache_info))
    for target, phase in TARGETS:
        watch.when_loaded(
            target.partition(":")[0], lambda _, target=target, phase=phase: instrument(phases, target, phase)
        )

    def mark_stored(module: Any) -> None:  # flows.audit_flow
        render = module.report

        def report(*args: Any, **kwargs: Any) -> Any:
            phases.stored = time.time()
            return render(*args, **kwargs)

        module.report = phases.timed(report, "report: flow and artifacts")

    watch.when_loaded("flows.audit_flow", mark_stored)
    from flows.cli import main

    sys.argv = ["attention-audit", "run", *arguments]
    status = main()  # as the console script calls it
    result.write_text(
        json.dumps(
            {
                "status": status,
                "seconds": phases.seconds,
                "cpu": phases.cpu,
                "cpu_total": time.process_time(),
                "calls": phases.calls,
                "model_loads": loads[0]().misses if loads else 0,
                "stored": phases.stored,
                "main_returned": time.time(),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--limit", type=int, default=24, help="examples audited [24]")
    parser.add_argument("--no-sanity", action="store_true", help="skip the sanity check")
    parser.add_argument("--pdf", action="store_true", help="also render the PDF (off by default: measured apart)")
    parser.add_argument("--out", type=Path, default=None, help="output folder [a fresh temporary one]")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args, more = parser.parse_known_args()
    more = [item for item in more if item != "--"]
    if args.child is not None:
        child(more, args.child)
        return

    folder = args.out or Path(tempfile.mkdtemp(prefix="fixed-cost-"))
    run = ["--limit", str(args.limit), "--db", str(folder / "audit.duckdb"), "--out", str(folder)]
    run += [] if args.pdf else ["--no-pdf"]
    run += ["--no-sanity"] if args.no_sanity else []
    result = folder / "phases.json"
    load_before = os.getloadavg()[0]
    started = time.time()
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(result), "--", *run, *more],
        cwd=ROOT,
        env={**os.environ, START_VARIABLE: repr(started), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    ended = time.time()
    if done.returncode != 0 or not result.exists():
        sys.exit(f"the run failed (status {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    measured = json.loads(result.read_text())
    seconds: dict[str, float] = measured["seconds"]
    cpu: dict[str, float] = measured["cpu"]
    calls: dict[str, int] = measured["calls"]
    seconds["interpreter exit"], cpu["interpreter exit"] = ended - measured["main_returned"], float("nan")
    calls["interpreter exit"] = 1
    total = ended - started
    seconds["Prefect and the rest"] = total - sum(seconds.values())
    cpu["Prefect and the rest"] = measured["cpu_total"] - sum(v for k, v in cpu.items() if k != "interpreter exit")
    calls["Prefect and the rest"] = 1

    print(f"attention-audit run {' '.join(run + more)}")
    print(f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after ({os.cpu_count()} cores)")
    print(f"\n{'phase':44} {'calls':>5} {'wall s':>8} {'CPU s':>8}")
    for phase, value in seconds.items():
        print(f"{phase:44} {calls.get(phase, 0):5d} {value:8.2f} {cpu.get(phase, float('nan')):8.2f}")
    print(f"{'(models loaded: cache misses of load_model)':44} {measured['model_loads']:5d}")

    def total_of(phases: tuple[str, ...], figures: dict[str, float]) -> float:
        return sum(figures.get(phase, 0.0) for phase in phases)

    cpu_total = measured["cpu_total"]
    computation, report = total_of(COMPUTATION, seconds), total_of(REPORT, seconds)
    rows = (
        ("process start to exit", total, cpu_total),
        ("computation (" + ", ".join(COMPUTATION) + ")", computation, total_of(COMPUTATION, cpu)),
        ("report rendering (after the results are stored)", report, total_of(REPORT, cpu)),
    )
    print()
    for name, wall, used in rows:
        print(f"{name:50} {wall:8.2f} {used:8.2f}")
    fixed_wall = total - rows[1][1] - rows[2][1]
    fixed_cpu = cpu_total - rows[1][2] - rows[2][2]
    print(f"{'fixed cost (total - computation - report)':50} {fixed_wall:8.2f} {fixed_cpu:8.2f}")
    if measured["stored"] is not None:
        stored = measured["stored"] - started
        print(f"{'process start to results stored':50} {stored:8.2f}")
        print(f"{'  fixed cost before results stored':50} {stored - computation:8.2f}")
        print(f"{'  after the report (Prefect stop, exit)':50} {total - stored - report:8.2f}")
    print(f"\noutput: {folder}")


if __name__ == "__main__":
    main()
