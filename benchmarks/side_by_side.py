"""attention-audit against the libraries its users would otherwise use, on the same examples and model.

The overlapping subset: integrated gradients (m = 50), saliency, gradient x input and leave-one-out as
references; last-layer attention, mean attention, rollout and a random ranking; AOPC comprehensiveness,
AOPC sufficiency and τ with leave-one-out for the eight rankings. The peers (Captum and ferret, one
example at a time as their users write it) run in their own environment (benchmarks/peer_env.sh);
attention-audit runs its real flow (Prefect, DuckDB) on the same seeded, class-balanced sample of the
default test split. The script checks that both give the same numbers where the definitions match
(integrated gradients against Captum; comprehensiveness and sufficiency of last-layer attention against
ferret where ferret's rationale has the same size), then prints seconds per example per component, the
ratio, passes done against the naive count, tokens per second and peak memory.

Usage:
    benchmarks/peer_env.sh                       # once: builds .peer-venv
    python benchmarks/side_by_side.py [--n 100]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flows.environment import quiet_libraries

quiet_libraries(PREFECT_LOGGING_LEVEL="WARNING")

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / ".peer-venv" / "bin" / "python"
SUBSET = ("attention_last", "attention_mean", "rollout", "saliency", "grad_x_input", "integrated_gradients",
          "leave_one_out", "random")  # fmt: skip
CHECK_K = (0.2, 0.5)


def balanced_sample(n: int, seed: int = 0) -> list[dict]:
    """``n`` test examples, half of each class, in seeded hash order."""
    from tasks.data.builtin import BUILTIN_CORPORA

    frame = BUILTIN_CORPORA["movie-snippets"].read("test")
    frame = frame.assign(order=[hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in frame["example_id"]])
    halves = [group.sort_values("order").head(n // 2) for _, group in frame.groupby("label")]
    rows = [row for half in halves for row in half.itertuples(index=False)]
    return [{"id": row.example_id, "text": row.text, "label": row.label} for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="examples (class-balanced) [100]")
    parser.add_argument("--checked", type=int, default=20, help="examples whose numbers are compared [20]")
    args = parser.parse_args()
    if not PEERS.exists():
        sys.exit("the peers' environment is missing: run benchmarks/peer_env.sh first")

    import numpy as np
    import torch

    from flows.audit_flow import audit
    from tasks import store
    from tasks.config import AuditConfig, ModelSpec
    from tasks.evaluate.costs import measure_throughput
    from tasks.model.loading import load_model, resolve_location

    bundle = load_model(ModelSpec())
    model_path, _ = resolve_location(ModelSpec())
    examples = balanced_sample(args.n)
    threads = torch.get_num_threads()

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        job = {"model": model_path, "examples": examples, "threads": threads, "checked": args.checked,
               "check_k": list(CHECK_K)}  # fmt: skip
        (folder / "job.json").write_text(json.dumps(job))
        started = time.perf_counter()
        subprocess.run([str(PEERS), str(ROOT / "benchmarks" / "peers.py"), str(folder / "job.json"),
                        str(folder / "peers.json")], check=True)  # fmt: skip
        peers_wall = time.perf_counter() - started
        peers_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        peers = json.loads((folder / "peers.json").read_text())

        data = folder / "sample.jsonl"
        data.write_text("\n".join(json.dumps(e) for e in examples))
        config = AuditConfig.model_validate(
            {
                "data": {"dataset": str(data), "id_column": "id"},
                "methods": {"methods": list(SUBSET)},
                "interventions": {"interventions": ["none"]},
                "execution": {"cache_batches": False},
                "output": {"db": str(folder / "ours.duckdb"), "out_dir": str(folder), "pdf": False},
            }
        )
        warm = AuditConfig.model_validate(
            {**config.model_dump(mode="json"), "data": {**config.data.model_dump(mode="json"), "limit": 2},
             "output": {"db": str(folder / "warm.duckdb"), "out_dir": str(folder), "pdf": False}}
        )  # fmt: skip
        audit(warm, render_report=False)  # starts Prefect's ephemeral server outside the timed region
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        outcome = audit(config, render_report=False)
        ours_wall = time.perf_counter() - started
        ours_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        with store.connect(config.output.db, read_only=True) as connection:
            costs = store.read_table(connection, "costs", outcome.run_id)
            scores = store.read_table(connection, "token_scores", outcome.run_id)
            metrics = store.read_table(connection, "metrics", outcome.run_id)
            stored = store.read_table(connection, "examples", outcome.run_id)

    n = len(examples)
    # --- same numbers where the definitions match -------------------------------------------------
    ours_ig = scores[scores["method"] == "integrated_gradients"].groupby("example_id")["score"].apply(list)
    gaps = []
    for result in peers["results"]:
        theirs = np.asarray(result["integrated_gradients"])
        mine = np.asarray(ours_ig[result["id"]])
        gaps.append(np.abs(theirs - mine).max() / max(np.abs(theirs).max(), 1e-12))
    per_k = metrics[
        (metrics["method"] == "attention_last") & metrics["metric"].isin(["comprehensiveness", "sufficiency"])
    ]
    matched, differences = 0, []
    content = stored.set_index("example_id")["n_content_tokens"]
    for key, value in peers["checks"].items():
        example_id, metric, k = key.rsplit(":", 2)
        if value is None or int(float(k) * content[example_id]) < 1:
            continue  # ferret skips rationales of int(k·n) = 0 tokens; ours takes one
        row = per_k[(per_k["example_id"] == example_id) & (per_k["metric"] == metric)
                    & np.isclose(per_k["k"].astype(float), float(k))]  # fmt: skip
        differences.append(abs(float(row["value"].iloc[0]) - value))
        matched += 1

    # --- the table --------------------------------------------------------------------------------
    stages = costs.groupby("stage")["seconds"].sum()
    components = [
        ("forward, saliency, grad x input", ["forward", "saliency", "grad_x_input"],
         ["model_pass", "saliency", "grad_x_input", "attention_last", "attention_mean", "rollout", "random"]),
        ("integrated gradients (m = 50)", ["integrated_gradients"], ["integrated_gradients"]),
        ("leave-one-out", ["leave_one_out"], ["leave_one_out"]),
        ("AOPC comprehensiveness + sufficiency, τ-LOO (8 rankings)", ["comprehensiveness", "sufficiency",
                                                                       "taucorr_loo"], ["faithfulness"]),
    ]  # fmt: skip
    print(f"{n} class-balanced movie snippets, default model, torch {torch.__version__} on {threads} threads")
    print(f"{'component':58} {'peers s/ex':>11} {'ours s/ex':>10} {'ratio':>7}")
    for title, theirs, mine in components:
        a = sum(peers["timings"][name] for name in theirs) / n
        b = sum(float(stages.get(name, 0.0)) for name in mine) / n
        print(f"{title:58} {a:11.4f} {b:10.4f} {a / b if b else float('nan'):7.1f}x")
    ours_compute = float(stages.sum()) / n
    print(
        f"{'all computation':58} {peers['seconds'] / n:11.4f} {ours_compute:10.4f} "
        f"{peers['seconds'] / n / ours_compute:7.1f}x"
    )
    print(
        f"{'whole run (peers: process; ours: Prefect flow + DuckDB)':58} {peers_wall / n:11.4f} "
        f"{ours_wall / n:10.4f} {peers_wall / ours_wall:7.1f}x"
    )

    lengths = stored["n_tokens"].to_numpy()
    contents = stored["n_content_tokens"].to_numpy()
    peer_forward = (1 + contents + 8 * (2 * (1 + 10) + 1 + contents)).sum()  # ferret: 10 thresholds, τ-LOO redoes LOO
    peer_backward = (50 + 1 + 1) * n
    ours_forward = costs["forward_rows"].sum()
    ours_backward = costs["backward_rows"].sum()
    throughput = measure_throughput(bundle, int(np.median(lengths)))
    naive_forward = contents + 10 * 2 * 5 + 1  # leave-one-out; 10 rankings x 2 metrics x 5 sizes; IG's baseline
    naive_backward = 1 + 50  # the model pass and IG's steps
    bound = float(
        (naive_forward * lengths / throughput.forward + naive_backward * lengths / throughput.forward_backward).sum()
    )
    print(
        f"\npasses per example: peers {peer_forward / n:.0f} forward + {peer_backward / n:.0f} backward; "
        f"ours {ours_forward / n:.0f} forward + {ours_backward / n:.0f} backward "
        f"(naive count of our subset: {naive_forward.mean():.0f} + {naive_backward})"
    )
    print(
        f"measured throughput: {throughput.forward:,.0f} tokens/s forward, {throughput.forward_backward:,.0f} "
        f"tokens/s forward+backward; naive pass-count bound {bound / n:.3f} s/example; "
        f"tokens/s reached: {(costs['forward_tokens'].sum() + costs['backward_tokens'].sum()) / stages.sum():,.0f}"
    )
    print(f"peak RSS: peers {peers_rss:.0f} MiB, ours {ours_rss:.0f} MiB (before the timed run {before:.0f} MiB)")
    print(
        f"\nsame numbers: integrated gradients vs Captum, largest relative gap per example: "
        f"median {np.median(gaps):.1e}, max {np.max(gaps):.1e} ({len(gaps)} examples)"
    )
    if differences:
        close = sum(d < 1e-4 for d in differences)
        print(
            f"comprehensiveness/sufficiency vs ferret at k = {', '.join(map(str, CHECK_K))} (same rationale size): "
            f"{close}/{matched} within 1e-4, median |difference| {np.median(differences):.1e}, max "
            f"{np.max(differences):.1e} (ferret decodes and re-tokenises the perturbed text; ours deletes ids)"
        )


if __name__ == "__main__":
    main()
