"""Seconds per example of each explanation method on the default model, batched as the audit plans it.

The audit's own sample (``--limit N`` of the default test split) is planned and batched as the audit does
(batch size and token budget of ``ExecutionSettings``). On every batch the shared model pass is computed
first (not counted), then each method runs on it in turn, in an order that alternates between batches so
that every method sees the same load. The script prints, for each method, wall-clock and process CPU
seconds per example (CPU seconds count every thread) and the forward rows it ran per example.

``--save FILE`` writes every method's scores (``.npz``, one array per method and example); ``--against
FILE`` prints the largest absolute difference of this run's scores from a saved run's, method by method:
a speed-up that must keep the numbers shows it here (the saved run made with the code before it).

Usage:
    python benchmarks/method_costs.py [--n 64] [--methods decompx,value_zeroing] [--preset bbc-news] [--units sentence]
                                      [--threads T] [--save F] [--against F]

``--preset`` audits that preset's model on its corpus's test split at its length (default: the movie
snippets); ``--units`` the unit level methods that depend on it work in (``token`` by default).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from flows.environment import quiet_libraries

quiet_libraries(PREFECT_LOGGING_LEVEL="WARNING")


def main() -> None:
    from tasks.config import AuditConfig, MethodOptions
    from tasks.data.encoding import plan_batches
    from tasks.explain.passes import BatchContext
    from tasks.explain.registry import METHODS
    from tasks.model.loading import load_model
    from tasks.model.presets import PRESETS
    from tasks.pipeline.plan import plan_run

    parser = argparse.ArgumentParser(description="Seconds per example of each explanation method.")
    parser.add_argument("--n", type=int, default=64, help="examples of the default test split [64]")
    parser.add_argument("--methods", default="decompx,value_zeroing", help="methods, comma-separated")
    parser.add_argument("--model", default=None, help="model preset or folder [the preset's]")
    parser.add_argument("--preset", default="movie-snippets", choices=sorted(PRESETS), help="[movie-snippets]")
    parser.add_argument("--units", default="token", choices=("token", "word", "sentence"), help="[token]")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 keeps torch's default [0]")
    parser.add_argument("--token-budget", type=int, default=None, help="tokens per perturbed pass [the audit's]")
    parser.add_argument("--save", help="write the scores to this .npz file")
    parser.add_argument("--against", help="print the largest absolute difference from this .npz file's scores")
    args = parser.parse_args()
    names = args.methods.split(",")
    if args.threads:
        torch.set_num_threads(args.threads)

    preset = PRESETS[args.preset]
    args.model = args.model or preset.name
    config = AuditConfig.model_validate(
        {
            "model": {"name_or_path": args.model},
            "data": {
                "dataset": preset.corpus,
                "split": preset.audit_split,
                "limit": args.n,
                "max_length": preset.audit_max_length,
            },
            "methods": {"methods": names, "units": args.units},
            **({"execution": {"token_budget": args.token_budget}} if args.token_budget else {}),
        }
    )
    plan = plan_run(config)
    bundle = load_model(config.model)
    execution = config.execution
    options = MethodOptions(units=args.units)
    wall = dict.fromkeys(names, 0.0)
    cpu = dict.fromkeys(names, 0.0)
    rows = dict.fromkeys(names, 0)
    scores: dict[str, np.ndarray] = {}
    batches = plan_batches(list(plan.examples), execution.batch_size, execution.token_budget)
    for index, batch in enumerate(batches):
        context = BatchContext(
            bundle,
            batch,
            token_budget=execution.token_budget,
            gradient_token_budget=execution.gradient_token_budget,
            need_gradients=any(METHODS[name].needs_gradients for name in names),
            need_attention_grads=any(METHODS[name].needs_attention_grads for name in names),
        )
        _ = context.model_pass
        for name in names if index % 2 == 0 else reversed(names):
            before = context.counter.snapshot()
            started_wall, started_cpu = time.perf_counter(), time.process_time()
            records = METHODS[name].compute(context, options)
            wall[name] += time.perf_counter() - started_wall
            cpu[name] += time.process_time() - started_cpu
            rows[name] += context.counter.minus(before).forward_rows
            scores.update({f"{name}/{record.example_id}/{record.draw}": record.scores for record in records})

    n = len(plan.examples)
    tokens = np.mean([example.length for example in plan.examples])
    print(
        f"model {args.model}; torch {torch.__version__} on {torch.get_num_threads()} threads; {n} examples "
        f"({tokens:.1f} tokens on average) in {len(batches)} batches; token budget {execution.token_budget}"
    )
    print(f"{'method':22} {'wall s/example':>15} {'CPU s/example':>14} {'fwd rows/ex':>12}")
    for name in names:
        print(f"{name:22} {wall[name] / n:15.4f} {cpu[name] / n:14.4f} {rows[name] / n:12.1f}")
    if args.save:
        np.savez(args.save, allow_pickle=False, **scores)
    if args.against:
        saved = np.load(args.against)
        for name in names:
            keys = [key for key in scores if key.startswith(f"{name}/")]
            missing = [key for key in keys if key not in saved]
            if missing:
                print(f"{name}: {len(missing)} records not in {args.against}")
                continue
            gap = max(float(np.abs(scores[key] - saved[key]).max()) for key in keys)
            print(f"{name}: max |score - saved| over {len(keys)} records = {gap:.3g}")


if __name__ == "__main__":
    main()
