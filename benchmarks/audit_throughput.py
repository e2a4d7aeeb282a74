"""Throughput of the full audit on the default model: examples per second, passes per example, memory.

Runs the real ``audit`` flow (Prefect, DuckDB, HTML and PDF report) on a seeded sample of the default
test split and prints, from the run's ``costs`` table, where the time and the model passes went.

Usage:
    python benchmarks/audit_throughput.py [--n 100] [--model PATH] [--batch-size 32] [--no-report]

The default model is built first if the cache lacks it (about 7 minutes on 2 cores, not timed here).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

for _name, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(_name, _value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="examples to audit [100]")
    parser.add_argument("--model", default="movie-snippets", help="model preset or folder [movie-snippets]")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--token-budget", type=int, default=8192)
    parser.add_argument("--no-report", action="store_true", help="time the computation and storage only")
    args = parser.parse_args()

    import torch

    from flows.audit import audit
    from tasks import storage
    from tasks.config import AuditConfig
    from tasks.models import load_model

    with tempfile.TemporaryDirectory() as scratch:
        config = AuditConfig.model_validate(
            {
                "model": {"name_or_path": args.model},
                "data": {"dataset": "movie-snippets", "split": "test", "limit": args.n},
                "execution": {"batch_size": args.batch_size, "token_budget": args.token_budget},
                "output": {"db": Path(scratch) / "bench.duckdb", "out_dir": Path(scratch)},
            }
        )
        load_model(config.model)  # build or load outside the timed region
        started = time.perf_counter()
        outcome = audit(config, render_report=not args.no_report)
        wall = time.perf_counter() - started
        with storage.connect(config.output.db, read_only=True) as connection:
            costs = storage.read_table(connection, "costs", outcome.run_id)
            examples = storage.read_table(connection, "examples", outcome.run_id)

    n = len(examples)
    stages = costs.groupby("stage", sort=False)[
        ["seconds", "forward_rows", "backward_rows", "forward_tokens", "backward_tokens"]
    ].sum()
    compute = float(stages["seconds"].sum())
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"model {args.model}, {n} examples, median {examples['n_tokens'].median():.0f} tokens, "
        f"torch {torch.__version__} on {torch.get_num_threads()} threads"
    )
    print(f"{'stage':24} {'s/example':>10} {'fwd/example':>12} {'bwd/example':>12} {'tokens/s':>10}")
    for stage, row in stages.iterrows():
        tokens = row["forward_tokens"] + row["backward_tokens"]
        rate = tokens / row["seconds"] if row["seconds"] else 0.0
        print(
            f"{stage:24} {row['seconds'] / n:10.4f} {row['forward_rows'] / n:12.1f} "
            f"{row['backward_rows'] / n:12.1f} {rate:10.0f}"
        )
    print(
        f"{'all stages':24} {compute / n:10.4f} {stages['forward_rows'].sum() / n:12.1f} "
        f"{stages['backward_rows'].sum() / n:12.1f}"
    )
    print(
        f"computation: {n / compute:.2f} examples/s; whole flow{'' if args.no_report else ' with report'}: "
        f"{n / wall:.2f} examples/s ({wall:.1f} s)"
    )
    print(f"peak RSS: {peak_rss_mib:.0f} MiB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
