"""attention-audit against Captum and ferret, like for like: the same quantities, counted and timed the same way.

On a seeded, class-balanced sample of the default test split and the default model:

1. ``attention-audit run`` (benchmarks/counted_audit.py: the command line unchanged) with the options
   given after ``--``; by default the methods both sides offer, no interventions, no sanity check, no
   second removal operator and no soft faithfulness, which the peers do not compute (the agreement
   between methods, which needs no model pass, stays).
2. The peers configured to compute exactly the audit's quantities with the audit's configuration
   (benchmarks/peers.py, mode ``exact``, in the peers' environment from benchmarks/peer_env.sh): Captum's
   saliency, gradient x input, integrated gradients (same baseline, rule and steps; a step schedule is
   run as the audit runs it, from Captum's convergence delta) and leave-one-out (feature ablation deleting
   the ids); attention and the random ranking as a user writes them; ferret's comprehensiveness and
   sufficiency at the audit's rationale sizes and removal, and ferret's τ-LOO.
3. The peers at their defaults (mode ``defaults``): leave-one-out replacing each position with ``[PAD]``
   one at a time, special tokens included; ferret's evaluators at their default rationale sizes and
   text-level removal.

Every number the two sides both compute is compared (largest absolute difference per quantity). Both
processes count their model passes with the same forward hook (``likeforlike.PassCounter``), and both are
timed from spawn to results stored (the audit's report, rendered afterwards, is timed on its own line).

Usage:
    benchmarks/peer_env.sh                       # once: builds .peer-venv
    python benchmarks/side_by_side.py --n 100 [-- ATTENTION-AUDIT RUN OPTIONS, e.g. --ig-steps 16,32,64]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from likeforlike import Difference, differences, flatten

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / ".peer-venv" / "bin" / "python"
COMPARABLE = ("attention_last", "attention_mean", "rollout", "saliency", "grad_x_input", "integrated_gradients",
              "leave_one_out", "random")  # fmt: skip
"""The methods both sides compute (the peers' side in benchmarks/peers.py)."""
LIKE_FOR_LIKE = ("--methods", ",".join(COMPARABLE), "--interventions", "none", "--no-sanity",
                 "--removal-check-sample", "0", "--no-soft-faithfulness", "--ig-rule", "gausslegendre",
                 "--ig-steps", "16,32,64")  # fmt: skip
"""Audit options that leave out what the peers do not compute; options given after ``--`` come later and win.

Integrated gradients runs the Gauss–Legendre schedule: Captum has no nested (Patterson) rule, the audit's
default, which needs about 1.4x fewer gradient rows than this schedule (benchmarks/ig_schedule.py)."""
COMPONENTS = (
    ("model pass, attention, saliency, grad x input",
     ["model_pass", "attention_and_random", "saliency", "grad_x_input"],
     ["model_pass", "attention_last", "attention_mean", "rollout", "random", "saliency", "grad_x_input"]),
    ("integrated gradients", ["integrated_gradients"], ["integrated_gradients"]),
    ("leave-one-out", ["leave_one_out"], ["leave_one_out"]),
    ("comprehensiveness, sufficiency, τ-LOO", ["ferret"], ["faithfulness"]),
)  # fmt: skip
"""(title, the peers' timings, the audit's cost stages) per row of the component table."""


def balanced_sample(n: int, seed: int = 0) -> list[dict]:
    """``n`` test examples of the default corpus, half of each class, in seeded hash order."""
    from tasks.data.builtin import BUILTIN_CORPORA

    frame = BUILTIN_CORPORA["movie-snippets"].read("test")
    frame = frame.assign(order=[hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in frame["example_id"]])
    halves = [group.sort_values("order").head(n // 2) for _, group in frame.groupby("label")]
    rows = [row for half in halves for row in half.itertuples(index=False)]
    return [{"id": row.example_id, "text": row.text, "label": row.label} for row in rows]


def audit_config(arguments: list[str]) -> Any:
    """The ``AuditConfig`` the command line builds from ``attention-audit run`` options; refuses what the peers lack."""
    from flows.cli import build_parser, config_from_args

    config = config_from_args(build_parser().parse_args(arguments))
    methods = config.methods
    problems = [
        f"the peers offer no {name}: leave it out of --methods" for name in methods.methods if name not in COMPARABLE
    ]
    if methods.removal != "delete":
        problems.append(f"--removal {methods.removal}: ferret's τ-LOO always deletes tokens; compare with delete")
    if methods.ig_rule == "patterson":
        problems.append("--ig-rule patterson: Captum has no nested rule; compare with --ig-rule gausslegendre")
    if methods.units != "token":
        problems.append(f"--units {methods.units}: the peers rank tokens; compare with token units")
    if methods.explanations:
        problems.append("--explanations: imported explanations have no peer counterpart")
    if problems:
        sys.exit("error: " + "; ".join(problems))
    return config


def spawn(command: list[str], log: Path) -> tuple[float, float, float]:
    """Run ``command`` to its end; its wall-clock start and end (epoch seconds) and its peak RSS in MiB."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with log.open("w") as output:
        started = time.time()
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=environment)
        _, status, usage = os.wait4(process.pid, 0)
        ended = time.time()
    if status:
        sys.exit(f"{command[1]} failed (exit status {os.waitstatus_to_exitcode(status)}); see {log}")
    return started, ended, usage.ru_maxrss / 1024


def audit_numbers(db: Path) -> tuple[dict[tuple[str, Hashable], float], Any]:
    """The audit's stored numbers keyed like the peers' (``peer_numbers``), and its cost table."""
    from tasks import store

    with store.connect(db, read_only=True) as connection:
        run_id = store.read_runs(connection)["run_id"].iloc[0]
        scores = store.read_table(connection, "token_scores", run_id)
        metrics = store.read_table(connection, "metrics", run_id)
        examples = store.read_table(connection, "examples", run_id)
        costs = store.read_table(connection, "costs", run_id)
    numbers: dict[tuple[str, Hashable], float] = {}
    for (method, draw, example_id), group in scores.groupby(["method", "draw", "example_id"]):
        numbers.update(flatten(f"scores: {method}", (example_id, draw), group.sort_values("position")["score"]))
    for row in metrics.to_dict("records"):
        k = None if row["k"] is None or row["k"] != row["k"] else round(float(row["k"]), 6)
        numbers[f"metric: {row['metric']}", (row["example_id"], row["method"], row["draw"], k)] = float(row["value"])
    for row in examples.to_dict("records"):
        numbers["predicted-class probability", row["example_id"]] = float(max(row["probabilities"]))
    return numbers, costs


def peer_numbers(result: dict) -> dict[tuple[str, Hashable], float]:
    """The peers' numbers keyed ``(quantity, item)``."""
    numbers: dict[tuple[str, Hashable], float] = {}
    for key, values in result["scores"].items():
        method, draw, example_id = key.split(":", 2)
        numbers.update(flatten(f"scores: {method}", (example_id, int(draw)), values))
    for example_id, method, draw, metric, k, value in result["metrics"]:
        k = None if k is None else round(float(k), 6)
        numbers[f"metric: {metric}", (example_id, method, draw, k)] = value
    for example_id, prediction in result["predictions"].items():
        numbers["predicted-class probability", example_id] = prediction["probability"]
    return numbers


def main() -> None:
    argv = sys.argv[1:]
    passed = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="examples (class-balanced) [100]")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on both sides [torch's default]")
    parser.add_argument("--keep", type=Path, default=None, help="keep the database, logs and results in this folder")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if not PEERS.exists():
        sys.exit("the peers' environment is missing: run benchmarks/peer_env.sh first")
    import torch

    threads = args.threads or torch.get_num_threads()
    examples = balanced_sample(args.n)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        data = folder / "sample.jsonl"
        data.write_text("\n".join(json.dumps(e) for e in examples))
        db = folder / "audit.duckdb"
        db.unlink(missing_ok=True)
        arguments = ["run", "--dataset", str(data), "--id-column", "id", "--db", str(db), "--out", str(folder),
                     "--no-pdf", "--no-cache", "--threads", str(threads), *LIKE_FOR_LIKE, *passed]  # fmt: skip
        config = audit_config(arguments)
        marks = folder / "audit-marks.json"
        started, _, audit_rss = spawn([sys.executable, str(ROOT / "benchmarks" / "counted_audit.py"), str(marks),
                                    *arguments], folder / "audit.log")  # fmt: skip
        marked = json.loads(marks.read_text())
        audit_stored, audit_report = marked["stored"] - started, marked["rendered"] - marked["stored"]
        ours, costs = audit_numbers(db)

        from tasks.config import ModelSpec
        from tasks.model.loading import resolve_location

        methods = config.methods
        steps = methods.ig_steps if isinstance(methods.ig_steps, tuple) else (methods.ig_steps,)
        job = {"model": resolve_location(ModelSpec())[0], "examples": examples, "threads": threads,
               "max_length": config.data.max_length, "methods": list(methods.methods), "ig_steps": list(steps),
               "ig_rule": methods.ig_rule, "k_fractions": list(methods.k_fractions),
               "random_draws": methods.random_draws, "seed": methods.seed}  # fmt: skip
        peers = {}
        for mode in ("exact", "defaults"):
            (folder / f"job-{mode}.json").write_text(json.dumps({**job, "mode": mode}))
            result = folder / f"peers-{mode}.json"
            command = [str(PEERS), str(ROOT / "benchmarks" / "peers.py"), str(folder / f"job-{mode}.json"), str(result)]
            begun, ended, rss = spawn(command, folder / f"peers-{mode}.log")
            peers[mode] = {**json.loads(result.read_text()), "wall": ended - begun, "rss": rss}

    audit = {"stored": audit_stored, "report": audit_report, "rss": audit_rss, "passes": marked["passes"]}
    print_comparison(len(examples), threads, arguments[1:], audit, costs, ours, peers)


def print_comparison(
    n: int, threads: int, options: list[str], audit: dict, costs: Any, ours: dict, peers: dict[str, dict]
) -> None:
    """The tables: computation per component, whole runs, model passes, and the numbers compared."""
    exact, defaults = peers["exact"], peers["defaults"]
    audit_stored, audit_report, audit_rss = audit["stored"], audit["report"], audit["rss"]
    stages = costs.groupby("stage")["seconds"].sum()
    print(f"{n} class-balanced movie snippets, default model, on {threads} torch threads")
    print(f"audit options: {' '.join(options)}\n")
    print(f"{'computation, seconds per example':50} {'peers':>9} {'audit':>9} {'ratio':>7}")
    for title, theirs, mine in COMPONENTS:
        a = sum(exact["timings"].get(name, 0.0) for name in theirs) / n
        b = sum(float(stages.get(name, 0.0)) for name in mine) / n
        print(f"{title:50} {a:9.4f} {b:9.4f} {a / b if b else float('nan'):6.1f}x")
    rest = sorted(set(stages.index) - {name for _, _, mine in COMPONENTS for name in mine})
    print(f"{'audit only: ' + ', '.join(rest):50} {'':9} {float(stages[rest].sum()) / n:9.4f}")
    peers_compute, audit_compute = sum(exact["timings"].values()) / n, float(stages.sum()) / n
    print(f"{'all computation (like for like)':50} {peers_compute:9.4f} {audit_compute:9.4f} "
          f"{peers_compute / audit_compute:6.1f}x")  # fmt: skip
    print(f"{'all computation (peers at their defaults)':50} {sum(defaults['timings'].values()) / n:9.4f} "
          f"{audit_compute:9.4f} {sum(defaults['timings'].values()) / n / audit_compute:6.1f}x")  # fmt: skip

    print(f"\n{'whole run, spawn to results stored, seconds':50} {'peers':>9} {'audit':>9} {'ratio':>7}")
    for label, peer in (("like for like", exact), ("peers at their defaults", defaults)):
        print(f"{label:50} {peer['wall']:9.1f} {audit_stored:9.1f} {peer['wall'] / audit_stored:6.1f}x")
    print(f"{'the audit report, rendered afterwards (HTML)':50} {'':9} {audit_report:9.1f}")
    print(f"{'peak RSS, MiB (exact / defaults; audit)':50} {exact['rss']:4.0f}/{defaults['rss']:4.0f} {audit_rss:9.0f}")

    print(f"\n{'model passes, per example (forward hook)':50} {'rows':>9} {'positions':>10} {'grad rows':>10} "
          f"{'grad pos.':>10}")  # fmt: skip
    audit_passes = audit["passes"]
    for label, counted in (("peers, like for like", exact["passes"]), ("peers at their defaults", defaults["passes"]),
                           ("audit", audit_passes)):  # fmt: skip
        print(f"{label:50} {counted['forward_rows'] / n:9.1f} {counted['forward_positions'] / n:10.1f} "
              f"{counted['gradient_rows'] / n:10.1f} {counted['gradient_positions'] / n:10.1f}")  # fmt: skip
    print(f"{'audit, its own cost table (forward / backward rows)':50} {costs['forward_rows'].sum() / n:9.1f} "
          f"{'':10} {costs['backward_rows'].sum() / n:10.1f}")  # fmt: skip

    print(f"\n{'same numbers: largest |audit − peers| per quantity':60} {'compared':>9} {'max':>9}")
    compared = differences(ours, peer_numbers(exact))
    for difference in compared:
        if difference.compared:
            print(f"{difference.quantity:60} {difference.compared:9d} {difference.largest:9.1e}")
    print("audit only (not compared): " + ", ".join(d.quantity for d in compared if not d.compared and _ours(d, ours)))
    print(
        "peers only (not compared): " + ", ".join(d.quantity for d in compared if not d.compared and not _ours(d, ours))
    )
    worst = {d.quantity: d.largest for d in compared if d.compared}
    print(f"largest of all: {max(worst.values()):.1e} ({max(worst, key=worst.__getitem__)})" if worst else "")


def _ours(difference: Difference, ours: dict) -> bool:
    return any(quantity == difference.quantity for quantity, _ in ours)


if __name__ == "__main__":
    main()
