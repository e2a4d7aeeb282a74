"""Integrated gradients' step schedule against the fixed rule, on the default model.

The audit's own sample (``--limit N`` of the default test split) is planned and batched as the audit does
(batch size and gradient token budget of ``ExecutionSettings``). On every batch, after its shared model pass,
integrated gradients runs with the fixed Gauss–Legendre ``m`` (default 50) and with the step schedule (default
the nested ``patterson`` rule at 10, 21, 43, 87 nodes),
in alternating order so that both see the same load. The script prints, for each rule, integrated
gradients' seconds and passes (backward rows and tokens, counted by ``BatchContext``) per example, the share
of examples whose completeness holds and the sizes the schedule kept; then the per-example Pearson
correlation of the schedule's attributions with the fixed rule's over content tokens (median, 5th
percentile, minimum) and the ratios of seconds and of backward tokens.

Targets (issue: adaptive integrated gradients): median Pearson >= 0.999, completeness held, >= 2x less
integrated-gradients time than m = 50.

Usage:
    python benchmarks/ig_schedule.py [--n 100] [--schedule 10,21,43,87] [--rule patterson] [--fixed 50]
        [--sample-seed 0] [--model movie-snippets]

``--schedule 16,32,64 --rule gausslegendre`` is the schedule of fresh Gauss–Legendre nodes.
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
    from tasks.explain.gradients import integrated_gradients, steps_run
    from tasks.explain.passes import BatchContext, PassCounter
    from tasks.model.loading import load_model
    from tasks.pipeline.plan import plan_run

    parser = argparse.ArgumentParser(description="Integrated gradients' step schedule against the fixed rule.")
    parser.add_argument("--n", type=int, default=100, help="examples of the default test split [100]")
    parser.add_argument("--schedule", default="10,21,43,87", help="the step schedule [10,21,43,87]")
    parser.add_argument("--rule", default="patterson", help="the schedule's integration rule [patterson]")
    parser.add_argument("--fixed", type=int, default=50, help="the fixed m it is compared with [50]")
    parser.add_argument("--sample-seed", type=int, default=0, help="seed of the --limit sample [0]")
    parser.add_argument("--model", default="movie-snippets", help="model preset or folder [movie-snippets]")
    args = parser.parse_args()

    config = AuditConfig.model_validate(
        {
            "model": {"name_or_path": args.model},
            "data": {"dataset": "movie-snippets", "split": "test", "limit": args.n, "sample_seed": args.sample_seed},
            "methods": {"methods": ["integrated_gradients"]},
        }
    )
    plan = plan_run(config)
    bundle = load_model(config.model)
    execution = config.execution
    rules = {
        "fixed": MethodOptions(ig_steps=(args.fixed,), ig_rule="gausslegendre"),
        "schedule": MethodOptions(ig_steps=tuple(int(m) for m in args.schedule.split(",")), ig_rule=args.rule),
    }
    seconds = dict.fromkeys(rules, 0.0)
    work = {name: PassCounter() for name in rules}
    records: dict[str, list] = {name: [] for name in rules}
    batches = plan_batches(list(plan.examples), execution.batch_size, execution.token_budget)
    for index, batch in enumerate(batches):
        order = list(rules) if index % 2 == 0 else list(reversed(rules))
        for name in order:
            context = BatchContext(bundle, batch, gradient_token_budget=execution.gradient_token_budget)
            assert context.model_pass.embeddings is not None  # the shared pass, not integrated gradients' work
            before = context.counter.snapshot()
            started = time.perf_counter()
            records[name].extend(integrated_gradients(context, rules[name]))
            seconds[name] += time.perf_counter() - started
            done = context.counter.minus(before)
            work[name].backward_rows += done.backward_rows
            work[name].backward_tokens += done.backward_tokens

    n = len(plan.examples)
    schedule = rules["schedule"].ig_steps
    print(
        f"model {args.model}; sample seed {args.sample_seed}; torch {torch.__version__} on "
        f"{torch.get_num_threads()} threads; {n} examples in "
        f"{len(batches)} batches; gradient token budget {execution.gradient_token_budget}"
    )
    print(f"{'rule':22} {'IG s/example':>13} {'bwd rows/ex':>12} {'bwd tokens/ex':>14} {'complete':>9}")
    for name, label in (("fixed", f"fixed m = {args.fixed}"), ("schedule", f"{args.rule} {args.schedule}")):
        holds = np.mean([record.diagnostics["completeness_holds"] for record in records[name]])
        print(
            f"{label:22} {seconds[name] / n:13.4f} {work[name].backward_rows / n:12.1f} "
            f"{work[name].backward_tokens / n:14.1f} {100 * holds:8.1f}%"
        )
    kept = [int(record.diagnostics["ig_steps"]) for record in records["schedule"]]
    print(
        "schedule kept: "
        + "; ".join(f"{m} steps: {kept.count(m)} examples" for m in schedule)
        + f"; mean steps run {np.mean([steps_run(schedule, m, args.rule) for m in kept]):.1f} per example"
    )
    correlations = []
    for fixed, adaptive in zip(records["fixed"], records["schedule"], strict=True):
        content = fixed.content_mask
        if content.sum() >= 2 and np.ptp(fixed.scores[content]) > 0:
            correlations.append(np.corrcoef(fixed.scores[content], adaptive.scores[content])[0, 1])
    values = np.array(correlations)
    print(
        f"Pearson of the schedule's attributions with m = {args.fixed}, per example ({len(values)} with two or "
        f"more content tokens): median {np.median(values):.5f}, 5th percentile {np.percentile(values, 5):.5f}, "
        f"minimum {values.min():.5f}"
    )
    print(
        f"ratio fixed / schedule: integrated-gradients seconds {seconds['fixed'] / seconds['schedule']:.2f}x, "
        f"backward tokens {work['fixed'].backward_tokens / work['schedule'].backward_tokens:.2f}x"
    )


if __name__ == "__main__":
    main()
