"""Where the time of ``attention-audit run`` goes beyond the computation: the fixed cost, phase by phase.

Runs the real command line (``flows.cli.main``) in a fresh interpreter, from process start to exit, with
a timer around each phase: interpreter start and imports, the Prefect API server's start (the time the
run waits for it), configuration and plan, corpus load and encoding, model loads (calls and cache
misses), the throughput probe, the batches, storing them, the sanity check, the seed baseline, the
verdicts, the report context, the HTML, the JSON summary, the PDF, and the interpreter's exit. Times are
exclusive (a phase inside another counts once, in the inner one); "Prefect and the rest" is what no
phase covers: flow and task-run bookkeeping, logging, the command line's own work.

The computation is the batches, the sanity check's recomputed explanations and the seed baseline; the
fixed cost is the wall time less the computation and less the report (context, HTML, JSON, PDF), which
is printed separately. The phases are found by wrapping the functions that do them (wherever a module
imported them), so the numbers measure the code as it is, not a model of it.

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

ROOT = Path(__file__).resolve().parent.parent
START_VARIABLE = "ATTENTION_AUDIT_FIXED_COST_T0"
"""The parent's wall clock when it started the child, so the child can tell its own start-up time."""

COMPUTATION = ("batches", "sanity: explanations", "seed baseline")
"""Phases that are the audit's computation (the rest is fixed cost or report)."""
REPORT = ("report: context", "report: HTML", "report: JSON summary", "report: PDF")
"""Phases of report rendering, measured apart from the fixed cost."""


class Phases:
    """Exclusive wall and CPU seconds and calls per phase (a nested phase is subtracted from its parent).

    CPU seconds are the process's (every thread's; not those of the Prefect server's own process): on busy
    cores the wall time grows with the load, the CPU time much less.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._local = threading.local()
        self._lock = threading.Lock()

    def add(self, phase: str, seconds: float, cpu: float, calls: int = 1) -> None:
        with self._lock:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
            self.cpu[phase] = self.cpu.get(phase, 0.0) + cpu
            self.calls[phase] = self.calls.get(phase, 0) + calls

    def timed(self, function: Callable[..., Any], phase: str) -> Callable[..., Any]:
        """``function`` with its exclusive time added to ``phase``."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            stack: list[tuple[float, float]] = self._local.__dict__.setdefault("children", [])
            stack.append((0.0, 0.0))
            started, cpu = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed, used = time.perf_counter() - started, time.process_time() - cpu
                nested, nested_cpu = stack.pop()
                self.add(phase, elapsed - nested, used - nested_cpu)
                if stack:
                    stack[-1] = (stack[-1][0] + elapsed, stack[-1][1] + used)

        wrapper.__wrapped__ = function  # type: ignore[attr-defined]
        return wrapper


def instrument(phases: Phases, target: str, phase: str) -> None:
    """Time ``module:attribute`` (or ``module:Class.method``, or ``module:task.fn``) wherever it is bound.

    A function is replaced in its own module and in every loaded module that imported it by name; a
    method on its class; a Prefect task's ``fn`` on the task. A target the code does not have is skipped
    (the phase then does not occur), so the same script measures the code before and after a change.
    """
    import importlib

    module_name, _, path = target.partition(":")
    try:
        owner: Any = importlib.import_module(module_name)
    except ImportError:
        return
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
    for module in list(sys.modules.values()):
        for name, value in list(getattr(module, "__dict__", {}).items()):
            if value is original:
                setattr(module, name, wrapper)


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
    ("tasks.evaluate.sanity:sanity_rows", "sanity: explanations"),
    ("tasks.pipeline.steps:sanity_check_task.fn", "sanity: the rest"),
    ("tasks.evaluate.seeds:seed_baseline", "seed baseline"),
    ("tasks.pipeline.steps:judge_run_task.fn", "verdicts"),
    ("tasks.report:build_context", "report: context"),
    ("tasks.report:render_html", "report: HTML"),
    ("tasks.report:summary_document", "report: JSON summary"),
    ("tasks.report:render_pdf", "report: PDF"),
)
"""What is timed, as ``module:attribute`` and the phase it counts for."""


def child(arguments: list[str], result: Path) -> None:
    """Run the command line under the timers and write the phases to ``result`` (JSON)."""
    began = time.time()
    phases = Phases()
    phases.add("interpreter start", began - float(os.environ[START_VARIABLE]), time.process_time())
    started, cpu = time.perf_counter(), time.process_time()
    from flows.environment import quiet_libraries

    quiet_libraries()
    import flows.audit_flow
    import flows.cli
    import tasks.report  # noqa: F401  (imported here so that its import is not counted as report time)
    from tasks.model.loading import load_model

    phases.add("imports", time.perf_counter() - started, time.process_time() - cpu)
    loads = load_model.cache_info
    for target, phase in TARGETS:
        instrument(phases, target, phase)
    status = flows.cli.main(["run", *arguments])
    result.write_text(
        json.dumps(
            {
                "status": status,
                "seconds": phases.seconds,
                "cpu": phases.cpu,
                "cpu_total": time.process_time(),
                "calls": phases.calls,
                "model_loads": loads().misses,
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
    rows = (
        ("process start to exit", total, cpu_total),
        ("computation (" + ", ".join(COMPUTATION) + ")", total_of(COMPUTATION, seconds), total_of(COMPUTATION, cpu)),
        ("report rendering (context, HTML, JSON, PDF)", total_of(REPORT, seconds), total_of(REPORT, cpu)),
    )
    print()
    for name, wall, used in rows:
        print(f"{name:50} {wall:8.2f} {used:8.2f}")
    fixed_wall = total - rows[1][1] - rows[2][1]
    fixed_cpu = cpu_total - rows[1][2] - rows[2][2]
    print(f"{'fixed cost (total - computation - report)':50} {fixed_wall:8.2f} {fixed_cpu:8.2f}")
    print(f"\noutput: {folder}")


if __name__ == "__main__":
    main()
