"""How close each stage of a stored run came to this machine's arithmetic limit.

A run's ``costs`` table holds, per batch and stage, the seconds and the forward and backward rows and
tokens it ran. From the model's shape (``L`` layers, width ``D``, feed-forward width ``F``) a counted pass is
a known number of floating-point operations (products only: layer norms, softmax and activations are left
out, so each figure is a lower bound on the work). With ``φ(T) = 2 (4 D² + 2 D F + 2 T D)`` FLOP per token
and layer (query, key, value and output projections, the feed-forward block, the attention's ``QKᵀ`` and
``AV``) and every pass computing its last layer at the classification position only (keys and values at
every position; ``ModelAdapter.logits_from``):

- a full forward row of ``T`` tokens: ``(L − 1) T φ(T) + 4 T D² + φ(T) − 4 D²``;
- its backward, taken with respect to the inputs only (the audit never differentiates the weights): as
  much again (``dX = dY Wᵀ`` for every product);
- a Value Zeroing row of ``T`` tokens: ``LN1``, the feed-forward block and ``LN2`` of every layer, the last
  at ``c`` only: ``4 D F ((L − 1) T + 1)`` (``tasks.explain.value_zeroing``).

The stages of full passes are ``FULL_PASSES``. Interventions run the layers from the one they edit, and
count their tokens weighted by the share of layers run, which does not say the rows' lengths: they are
listed with their seconds only, as are the stages that run no pass (DecompX, ALTI, GlobEnc, the agreement).
A run that computed ``--concurrency`` batches at once has its stored seconds divided by it first
(``tasks.report.facts.wall_shares``), so that the rates are those of the whole machine, as the product's.

The floor of a stage is its FLOP at the rate of this machine's float32 matrix product as the audit runs it
(``[rows × D]·[D × F]``, the feed-forward shape, through a ``PackedLinear``: oneDNN with the weight packed,
``tasks.model.packed_linear``; best of 40 repeats of 10 products, measured at the start): the least time the
stage's counted arithmetic needs here. MKL's product (``nn.Linear``), which the audit ran before 5664e75, is
printed beside it: best of 7 moved between 125 and 165 GFLOP/s on these shared cores, best of 40 between 152
and 171. The ratio of a stage's seconds to its floor says how much
faster it could become without less arithmetic.

Usage:
    python benchmarks/arithmetic_floor.py DB [--run RUN_ID] [--rows 2048]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from flows.environment import quiet_libraries

quiet_libraries()

VALUE_ZEROING = "value_zeroing"
FULL_PASSES = frozenset(
    {"model_pass", "integrated_gradients", "faithfulness", "soft_faithfulness", "leave_one_out", "removal_check"}
)
"""Stages whose every counted row runs the whole model on a (perturbed) input."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("db", type=Path, help="an audit's DuckDB file")
    parser.add_argument("--run", help="run id (default: the latest run)")
    parser.add_argument("--rows", type=int, default=2048, help="rows of the matrix product that sets the rate")
    args = parser.parse_args()

    from tasks import store
    from tasks.config import AuditConfig
    from tasks.report.facts import batches_at_once, wall_shares

    with store.connect(args.db, read_only=True) as connection:
        run = store.read_run(connection, args.run)
        costs = store.read_table(connection, "costs", run["run_id"])
        count = len(store.read_table(connection, "examples", run["run_id"]))
    # batches computed at once (--concurrency) overlap: their seconds as shares of the wall time, as the report
    costs = wall_shares(costs, batches_at_once(AuditConfig.model_validate(run["config"]), run["manifest"]))
    run_id, manifest = run["run_id"], run["manifest"]
    sums = ["seconds", "forward_rows", "forward_tokens", "backward_rows", "backward_tokens"]
    stages = costs.groupby("stage")[sums].sum().sort_values("seconds", ascending=False)
    shape = _model_shape(manifest)
    mkl_rate = gemm_rate(args.rows, shape["D"], shape["F"], packed=False)
    rate = gemm_rate(args.rows, shape["D"], shape["F"], packed=True)
    print(f"run {run_id}: {count} examples; model L={shape['L']} D={shape['D']} F={shape['F']}")
    product = f"[{args.rows}x{shape['D']}]·[{shape['D']}x{shape['F']}]"
    print(f"float32 matrix product {product}: {rate / 1e9:.0f} GFLOP/s packed (MKL's: {mkl_rate / 1e9:.0f})")
    print(f"{'stage':<24}{'seconds':>9}{'GFLOP':>9}{'GFLOP/s':>9}{'floor s':>9}{'x floor':>9}")
    counted_seconds = counted_floor = uncounted = 0.0
    for stage, (seconds, f_rows, f_tokens, b_rows, b_tokens) in zip(stages.index, stages.to_numpy(), strict=True):
        flop = stage_flop(stage, shape, f_rows, f_tokens, b_rows, b_tokens)
        if flop == 0:
            uncounted += seconds
            print(f"{stage:<24}{seconds:>9.1f}{'':>9}{'':>9}{'':>9}{'':>9}")
            continue
        floor = flop / rate
        counted_seconds += seconds
        counted_floor += floor
        achieved = flop / seconds / 1e9
        print(f"{stage:<24}{seconds:>9.1f}{flop / 1e9:>9.0f}{achieved:>9.0f}{floor:>9.1f}{seconds / floor:>9.2f}")
    print(
        f"stages with counted passes: {counted_seconds:.1f} s, floor {counted_floor:.1f} s "
        f"({counted_seconds / max(counted_floor, 1e-9):.2f}x); stages without: {uncounted:.1f} s"
    )
    total = counted_seconds + uncounted
    print(f"all stages: {total:.1f} s; at the floor, with the rest as measured: {counted_floor + uncounted:.1f} s")


def _model_shape(manifest: dict) -> dict[str, int]:
    """``L``, ``D`` and ``F`` of the run's model, from its configuration (a preset's or a local folder's)."""
    from transformers import AutoConfig

    source = manifest["model"]["source"]
    config = AutoConfig.from_pretrained(source.get("path") or manifest["model"]["name_or_path"])
    return {"L": config.num_hidden_layers, "D": config.hidden_size, "F": config.intermediate_size}


def stage_flop(stage: str, shape: dict[str, int], f_rows: int, f_tokens: int, b_rows: int, b_tokens: int) -> float:
    """The floating-point operations of a stage's counted passes, 0 where they are not converted (see above)."""
    layers, width, ffn = shape["L"], shape["D"], shape["F"]
    if stage == VALUE_ZEROING:
        return 4.0 * width * ffn * ((layers - 1) * f_tokens + f_rows)
    if stage not in FULL_PASSES:
        return 0.0
    flop = 0.0
    for rows, tokens in ((f_rows, f_tokens), (b_rows, b_tokens)):
        if rows:
            length = tokens / rows
            per_token = 2.0 * (4 * width**2 + 2 * width * ffn + 2 * length * width)
            flop += tokens * ((layers - 1) * per_token + 4 * width**2) + rows * (per_token - 4 * width**2)
    return flop


def gemm_rate(rows: int, width: int, ffn: int, packed: bool, repeats: int = 40, calls: int = 10) -> float:
    """FLOP per second of a linear layer on ``[rows × width]·[width × ffn]``, best of ``repeats``.

    ``packed``: the layer as the audit runs it (``pack_linears``; MKL's where oneDNN is missing), else ``nn.Linear``.
    """
    from tasks.model.packed_linear import pack_linears

    layer = torch.nn.Linear(width, ffn, bias=False).requires_grad_(False)
    if packed:
        pack_linears(layer)
    inputs = torch.randn(rows, width)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats):
            layer(inputs)
            started = time.perf_counter()
            for _ in range(calls):
                layer(inputs)
            best = min(best, (time.perf_counter() - started) / calls)
    return 2.0 * rows * width * ffn / best


if __name__ == "__main__":
    main()
