"""Throughput of the full audit on the default model, against the naive pass-count bound.

For each sample size (a seeded sample of the default test split), the real ``audit`` flow (Prefect, DuckDB,
HTML and PDF report) runs in a fresh process, and the script prints: seconds per example for the whole
flow and per stage (every explanation method is a stage of its own: ALTI, GlobEnc, Value Zeroing and
DecompX included), forward and backward passes per example, tokens per second, peak RSS, seconds per
example by length bucket, and the **naive pass-count bound**: every pass the audit needs counted as a
full forward (or forward-and-backward) pass of a fresh input, times its tokens, divided by the batched
throughput measured in the same run. Below the bound means the savings (shared passes, de-duplicated
perturbations, cached hidden states, the last layer at the classification position only) outweigh all
overheads.

Usage:
    python benchmarks/audit_throughput.py [--n 100,300,1000] [--model PATH] [--no-report]

The default model is built first if the cache lacks it (about 7 minutes on 2 cores, not timed).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flows.environment import quiet_libraries

quiet_libraries(PREFECT_LOGGING_LEVEL="WARNING")

LENGTH_BUCKETS = ((0, 16), (16, 32), (32, 64), (64, 10_000))


def measure_throughput(model: str, length: int) -> tuple[float, float]:
    """Batched tokens/s of the model (``tasks.evaluate.costs.measure_throughput``, batch 64, best of 3)."""
    from tasks.config import ModelSpec
    from tasks.evaluate.costs import measure_throughput as measure
    from tasks.model.loading import load_model

    rates = measure(load_model(ModelSpec(name_or_path=model)), length, rows=64, repeats=3)
    return rates.forward, rates.forward_backward


def naive_passes(config: dict, tokens: int, content: int, layers: int, heads: int, ig_steps: int) -> tuple[int, int]:
    """Forward-only and forward-and-backward passes of one example, counted as full fresh passes
    (``tasks.evaluate.costs.naive_passes``: Value Zeroing's ``L · T``, the attention-derived methods' none;
    ``ig_steps``, the step-schedule size the example's integrated gradients was kept at)."""
    from tasks.config import AuditConfig
    from tasks.evaluate.costs import naive_passes as passes
    from tasks.verdict.resolve import resolve

    return passes(resolve(AuditConfig.model_validate(config)), tokens, content, layers, heads, ig_steps)


def run_one(n: int, model: str, report: bool) -> dict:
    """One audit of ``n`` examples in this process; returns its figures."""
    from flows.audit_flow import audit
    from tasks import store
    from tasks.config import AuditConfig

    with tempfile.TemporaryDirectory() as scratch:
        config = AuditConfig.model_validate(
            {
                "model": {"name_or_path": model},
                "data": {"dataset": "movie-snippets", "split": "test", "limit": n},
                "execution": {"cache_batches": False},
                "output": {"db": str(Path(scratch) / "bench.duckdb"), "out_dir": scratch},
            }
        )
        from tasks.model.loading import load_model

        load_model(config.model)  # build or load outside the timed region
        started = time.perf_counter()
        outcome = audit(config, render_report=report)
        wall = time.perf_counter() - started
        with store.connect(config.output.db, read_only=True) as connection:
            costs = store.read_table(connection, "costs", outcome.run_id)
            examples = store.read_table(connection, "examples", outcome.run_id)
            metrics = store.read_table(connection, "metrics", outcome.run_id)
            manifest = store.read_run(connection, outcome.run_id)["manifest"]
    stages = costs.groupby("stage", sort=False)[
        ["seconds", "forward_rows", "backward_rows", "forward_tokens", "backward_tokens"]
    ].sum()
    per_batch = costs.groupby("batch_id")["seconds"].sum()
    lengths = examples.groupby("batch_id")["n_tokens"].agg(["median", "size"])
    buckets = {}
    for low, high in LENGTH_BUCKETS:
        chosen = lengths[(lengths["median"] >= low) & (lengths["median"] < high)]
        if not chosen.empty:
            buckets[f"{low}-{high - 1}"] = [
                float(per_batch[chosen.index].sum() / chosen["size"].sum()),
                int(chosen["size"].sum()),
            ]
    return {
        "n": len(examples),
        "wall": wall,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "stages": {stage: row.to_dict() for stage, row in stages.iterrows()},
        "buckets": buckets,
        "tokens": examples["n_tokens"].tolist(),
        "content": examples["n_content_tokens"].tolist(),
        "ig_steps": metrics[(metrics["method"] == "integrated_gradients") & (metrics["metric"] == "ig_steps")]
        .set_index("example_id")["value"]
        .reindex(examples["example_id"])
        .astype(int)
        .tolist(),
        "layers": manifest["model"]["layers"],
        "heads": manifest["model"]["heads"],
        "config": config.model_dump(mode="json"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="100", help="comma-separated sample sizes [100]")
    parser.add_argument("--model", default="movie-snippets", help="model preset or folder [movie-snippets]")
    parser.add_argument("--no-report", action="store_true", help="time the computation and storage only")
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        print(json.dumps(run_one(args.single, args.model, not args.no_report)))
        return

    import numpy as np
    import torch

    from tasks.config import ModelSpec
    from tasks.model.loading import load_model

    load_model(ModelSpec(name_or_path=args.model))  # make sure it is built before timing anything
    results = []
    for n in (int(x) for x in args.n.split(",")):
        command = [sys.executable, __file__, "--single", str(n), "--model", args.model]
        if args.no_report:
            command.append("--no-report")
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    median = int(np.median(results[0]["tokens"]))
    forward_rate, backward_rate = measure_throughput(args.model, median)
    print(f"model {args.model}; torch {torch.__version__} on {torch.get_num_threads()} threads; median {median} tokens")
    print(
        f"measured batched throughput: {forward_rate:,.0f} tokens/s forward, {backward_rate:,.0f} tokens/s "
        "forward+backward"
    )
    for result in results:
        n = result["n"]
        stages = result["stages"]
        compute = sum(stage["seconds"] for stage in stages.values())
        bound = 0.0
        for tokens, content, steps in zip(result["tokens"], result["content"], result["ig_steps"], strict=True):
            forward, backward = naive_passes(
                result["config"], tokens, content, result["layers"], result["heads"], steps
            )
            bound += forward * tokens / forward_rate + backward * tokens / backward_rate
        print(
            f"\n== {n} examples: whole flow {result['wall'] / n:.3f} s/example ({result['wall']:.0f} s), "
            f"computation {compute / n:.3f} s/example, naive pass-count bound {bound / n:.3f} s/example, "
            f"peak RSS {result['rss_mib']:.0f} MiB"
        )
        print(f"{'stage':24} {'s/example':>10} {'fwd/example':>12} {'bwd/example':>12} {'tokens/s':>10}")
        for stage, row in stages.items():
            tokens = row["forward_tokens"] + row["backward_tokens"]
            rate = tokens / row["seconds"] if row["seconds"] else 0.0
            print(
                f"{stage:24} {row['seconds'] / n:10.4f} {row['forward_rows'] / n:12.1f} "
                f"{row['backward_rows'] / n:12.1f} {rate:10.0f}"
            )
        print(
            "by length (tokens): "
            + "; ".join(
                f"{bucket}: {seconds:.3f} s/example ({count} examples)"
                for bucket, (seconds, count) in result["buckets"].items()
            )
        )


if __name__ == "__main__":
    main()
