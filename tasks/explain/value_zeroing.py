"""Value Zeroing: how much each token's value vector shapes every other token's layer output.

Definition (docs/methodology.md, ``value_zeroing``), for layer ``l`` with output ``h^l`` (after the
whole layer: attention block, feed-forward block, their residual connections and norms, before any
final norm of a decoder), its clean input ``h^{l-1}`` and ``h̃^l_i(v_j := 0)`` the output at ``i`` when
token ``j``'s value vector is zeroed in every head of layer ``l`` only:

- ``C^l[i,j] = 1 − cos(h̃^l_i(v_j := 0), h^l_i)``, in ``[0, 2]``; ``C^l[i,j] = 0`` where ``j`` cannot reach
  ``i`` (a padding key; a later key under a decoder's causal mask);
- ``Ĉ^l = C^l`` with rows normalised to sum to 1 over the real keys;
- ``R = Ĉ^L ··· Ĉ^1`` (rollout without an added identity: the residual connection is already inside
  ``h^l``, as in the authors' code), and the score of token ``j`` is ``R[c, j]`` for the classification
  position ``c``: non-negative, summing to 1 over the example's tokens.

Zeroing ``v_j`` in every head is exactly zeroing column ``j`` of every head's attention probabilities
(``Σ_k A[i,k] v_k`` without the ``k = j`` term; no renormalisation), so it is an edit of the same kind as
the interventions' (``tasks.model.attention_hook``). All layers are zeroed at once, each layer run on
its own clean input from the model pass (``ModelAdapter.patched_layer_outputs``): an example of ``n``
tokens costs ``n + 1`` forward rows (``n`` zeroings and the clean reference, as inseq computes it), not
``L · n``, batched under the token budget. On a post-LN encoder (``LayerParts``) zeroing ``v_j`` only
subtracts ``Σ_h A_h[i,j] W_O^h v_j^h`` from ``LN1``'s input ``z_i``, so each run starts from the clean ``z``
and the model pass's probabilities and runs only ``LN1``, the feed-forward block and ``LN2``: the query,
key, value and output projections and the softmax, over a third of a layer, are not repeated ``n + 1``
times; and since ``LN1`` is affine up to its scale, the feed-forward block's first map is applied to each
clean position and each zeroed value vector once, not to every position of every run, which halves what is
left (``_post_norm_outputs``).

The scores read row ``c`` of ``R = Ĉ^L (Ĉ^{L-1} ··· Ĉ^1)``, which reads row ``c`` of ``Ĉ^L`` only, so the
method computes the last layer at ``c`` alone on a post-LN encoder (``value_zeroing_maps(..., last_at_c=True)``),
about ``1/L`` less work (a decoder's last layer runs whole and is read at ``c``). Families whose attention
cannot be edited (DeBERTa) are refused with the reason.

References:
    Mohebbi, Zuidema, Chrupała & Alishahi (2023), "Quantifying Context Mixing in Transformers", EACL.
    https://arxiv.org/abs/2301.12971
    Sarti, Feldhus, Sickert, van der Wal, Nissim & Bisazza (2023), "Inseq: An Interpretability Toolkit
    for Sequence Generation Models", ACL (demo). https://arxiv.org/abs/2302.13942
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from tasks.config import MethodOptions
from tasks.explain.batching import chunks_under_budget
from tasks.explain.clean_mixing import CleanMixing, clean_mixing, layer_output
from tasks.explain.passes import BatchContext
from tasks.model.adapters.base import ModelAdapter
from tasks.model.attention_hook import AttentionEdit
from tasks.records import TokenScores

NOT_ZEROED = -1
"""The column of a run that zeroes nothing: the clean reference."""

ChunkConsumer = Callable[[np.ndarray, list[torch.Tensor]], None]
"""``consume(members, outputs)``: a chunk's run indices and its layer outputs ``L × [n, W', D]`` (the last
``[n, 1, D]``, at ``c``, when only ``c`` is asked for)."""


def zero_value_columns(columns: torch.Tensor) -> AttentionEdit:
    """An edit zeroing column ``columns[r]`` of every head's probabilities of run ``r``, in every layer.

    Args:
        columns: ``[N]`` key position per run, ``NOT_ZEROED`` for a run left as it is.

    Returns:
        ``edit(layer, A [N, H, Q, K]) -> A'`` with ``A'[r, :, :, columns[r]] = 0``; the value vector of
        that key then reaches no query (``A' V = Σ_{k ≠ j} A[:, k] v_k``).
    """
    runs = torch.nonzero(columns >= 0).squeeze(1)

    def edit(_layer: int, probabilities: torch.Tensor) -> torch.Tensor:
        if runs.numel() == 0:
            return probabilities
        edited = probabilities.clone()
        edited[runs.to(edited.device), :, :, columns[runs].to(edited.device)] = 0
        return edited

    return edit


def _post_norm_outputs(
    context: BatchContext,
    clean: list[CleanMixing],
    selected: torch.Tensor,
    width: int,
    columns: torch.Tensor,
    last_at_c: bool,
) -> list[torch.Tensor]:
    """A post-LN encoder's layer outputs with value column ``columns[r]`` zeroed in run ``r``, ``NOT_ZEROED`` none.

    Zeroing ``v_j`` takes ``δ_i = Σ_h A_h[i,j] W_O^h v_j^h`` away from the clean ``z_i``, and ``N δ_i`` from ``N z_i``
    (``tasks.explain.clean_mixing``): ``W_O^h v_j^h`` and ``N W_O^h v_j^h`` once per run, then per position of a
    run a product over the ``H`` heads (``H`` terms instead of ``D``), ``LN1``, the activation, ``W2`` and ``LN2``.
    Outputs as ``ModelAdapter.patched_layer_outputs``' (the last layer's ``[n, 1, D]`` at ``c`` with ``last_at_c``).
    """
    bundle, attentions = context.bundle, context.model_pass.attentions
    rows = torch.arange(len(selected), device=selected.device)
    positions = context.classification_positions[selected]
    zeroing = columns >= 0
    column = columns.clamp(min=0)  # a run that zeroes nothing reads column 0 with weight 0
    examples, counts = torch.unique_consecutive(selected, return_counts=True)  # adjacent runs of one example
    groups = list(zip(examples.tolist(), torch.split(rows, counts.tolist()), strict=True))
    last = bundle.num_layers - 1
    outputs = []
    for layer in range(bundle.num_layers):
        mixing = clean[layer]
        at_c = last_at_c and layer == last
        weights = attentions[layer][selected, :, :width, column] * zeroing[:, None, None]  # [n, H, W']: A_h[i, j]
        residual = mixing.residual[selected, :width]
        if at_c:
            residual, weights = residual[rows, positions][:, None], weights[rows, :, positions][:, :, None]
        values = mixing.values[selected, column]  # v_j^h of each run, [n, H, d]
        heads, mapped_heads = torch.einsum("nhd,hdE->nhE", values, mixing.head_maps).split(  # f_h(v_j), N f_h(v_j)
            [residual.shape[-1], mixing.offset.shape[0]], dim=-1
        )
        residual = torch.baddbmm(residual, weights.transpose(1, 2), heads, alpha=-1.0)  # z_i − δ_i
        mapped = residual.new_empty((*residual.shape[:2], mapped_heads.shape[-1]))
        for example, members in groups:  # N z_i − Σ_h A_h[i, j] N W_O^h v_j^h, from a view of the example's N z
            clean_map = mixing.mapped_residual[example]
            clean_map = clean_map[positions[members[0]], None] if at_c else clean_map[:width]
            torch.baddbmm(
                clean_map.expand(len(members), *clean_map.shape),
                weights[members].transpose(1, 2),
                mapped_heads[members],
                alpha=-1.0,
                out=mapped[members[0] : members[-1] + 1],
            )
        outputs.append(layer_output(mixing, residual, mapped))
    return outputs


def _run_chunks(
    context: BatchContext,
    rows: np.ndarray,
    columns: np.ndarray,
    consume: ChunkConsumer,
    last_at_c: bool,
    clean: list[CleanMixing],
) -> None:
    """Run ``(rows[r], columns[r])`` through every layer from the clean inputs, chunked under the token budget.

    Runs are length-sorted; each chunk is padded to its widest member ``W'`` and handed to
    ``consume(members, outputs)`` (``outputs``: ``L × [n, W', D]``; with ``last_at_c`` the last layer's is
    ``[n, 1, D]``, at ``c`` only). With ``clean`` (a post-LN encoder's), the runs start from it
    (``_post_norm_outputs``); without, they run the layers with the attention edited. Counts one forward row
    and the run's tokens per run.
    """
    bundle = context.bundle
    hidden = context.model_pass.hidden_states
    lengths = context.lengths[rows]
    order = np.argsort(lengths, kind="stable")
    for chunk in chunks_under_budget(lengths[order].tolist(), context.token_budget):
        members = order[chunk]
        width = int(lengths[members].max())
        selected = torch.as_tensor(rows[members], device=hidden[0].device)
        zeroed = torch.as_tensor(columns[members], device=hidden[0].device)
        with torch.inference_mode():
            if clean:
                outputs = _post_norm_outputs(context, clean, selected, width, zeroed, last_at_c)
            else:
                edit = zero_value_columns(zeroed)
                inputs = [state[selected, :width] for state in hidden[: bundle.num_layers]]
                mask = context.attention_mask[selected, :width]
                outputs = bundle.adapter.patched_layer_outputs(bundle.model, inputs, mask, edit)
                if last_at_c:
                    at_c = context.classification_positions[selected]
                    outputs[-1] = outputs[-1][torch.arange(len(selected), device=at_c.device), at_c][:, None]
            consume(members, outputs)
        context.counter.forward_rows += len(members)
        context.counter.forward_tokens += int(lengths[members].sum())


def _cosines(context: BatchContext, rows: np.ndarray, columns: np.ndarray, last_at_c: bool) -> torch.Tensor:
    """``cos(h̃^l_i, h^l_i)`` of every zeroing run ``(rows[r], columns[r])``: ``[N, L, W]``, float64, on the CPU.

    The clean outputs (one run per example) are computed first and kept, in float64 as the cosines take them;
    each chunk of zeroing runs is reduced to its cosines at once, so memory holds one chunk's layer outputs,
    not every run's. With ``last_at_c`` the last layer is kept at ``i = c`` only (computed there alone on a
    post-LN encoder) and its other cosines are left at 1.
    """
    count, width = len(context.examples), context.input_ids.shape[1]
    clean: list[torch.Tensor] = []

    def keep_clean(members: np.ndarray, outputs: list[torch.Tensor]) -> None:
        if not clean:
            clean.extend(
                torch.zeros((count, width, o.shape[-1]), dtype=torch.float64, device=o.device) for o in outputs
            )
        for kept, output in zip(clean, outputs, strict=True):
            kept[torch.as_tensor(members, device=output.device), : output.shape[1]] = output.double()

    cosines = torch.ones((len(rows), context.bundle.num_layers, width), dtype=torch.float64)
    positions = context.classification_positions.cpu()
    last = context.bundle.num_layers - 1

    def reduce(members: np.ndarray, outputs: list[torch.Tensor]) -> None:
        at = torch.as_tensor(rows[members], device=outputs[0].device)
        runs = torch.as_tensor(members)
        for layer, output in enumerate(outputs):
            reference = clean[layer][at, : output.shape[1]]
            similarity = torch.nn.functional.cosine_similarity(output.double(), reference, dim=-1).cpu()
            if layer == last and last_at_c:
                cosines[runs, layer, positions[at.cpu()]] = similarity[:, 0]
            else:
                cosines[runs, layer, : output.shape[1]] = similarity

    layers = range(context.bundle.num_layers) if context.bundle.adapter.post_norm else range(0)
    mixing = [clean_mixing(context, layer) for layer in layers]
    _run_chunks(context, np.arange(count), np.full(count, NOT_ZEROED), keep_clean, last_at_c, mixing)
    _run_chunks(context, rows, columns, reduce, last_at_c, mixing)
    return cosines


def value_zeroing_maps(context: BatchContext, *, last_at_c: bool = False) -> list[torch.Tensor]:
    """The unnormalised ``C^l[i, j]`` of every example: ``[L, T, T]`` each, float64, rows = outputs ``i``.

    Args:
        context: The batch.
        last_at_c: Compute the last layer's row ``c`` only (its other rows are 0): all that row ``c`` of
            the rollout reads, ``R[c] = Ĉ^L[c] Ĉ^{L-1} ··· Ĉ^1``, at the cost of one position instead of ``T``.

    Raises:
        AuditError: The family's attention cannot be edited inside the forward pass.
    """
    context.bundle.adapter.require("value zeroing")
    rows = np.concatenate([np.full(int(length), row) for row, length in enumerate(context.lengths)])
    columns = np.concatenate([np.arange(int(length)) for length in context.lengths])
    cosines = _cosines(context, rows, columns, last_at_c)
    maps = []
    for row, length in enumerate(context.lengths.tolist()):
        runs = torch.as_tensor(np.flatnonzero(rows == row))  # ordered by the zeroed column j
        matrix = (1.0 - cosines[runs, :, :length]).permute(1, 2, 0).contiguous()  # [j, L, i] -> [L, i, j]
        if context.bundle.adapter.causal:
            matrix = matrix.tril()  # key j reaches only outputs i >= j
        maps.append(matrix.clamp(min=0.0))
    return maps


def value_zeroing_rollout(maps: torch.Tensor) -> torch.Tensor:
    """``R = Ĉ^L ··· Ĉ^1`` with ``Ĉ^l`` the rows of ``C^l`` normalised to sum to 1: ``[L, T, T] -> [T, T]``."""
    normalised = maps / maps.sum(dim=-1, keepdim=True).clamp(min=torch.finfo(maps.dtype).tiny)
    result = normalised[0]
    for layer in normalised[1:]:
        result = layer @ result
    return result


def value_zeroing(context: BatchContext, options: MethodOptions) -> list[TokenScores]:
    """Value Zeroing (Mohebbi et al. 2023), layers combined by rollout: row ``c`` of ``R``."""
    positions = context.classification_positions.cpu().tolist()
    scores = [
        value_zeroing_rollout(maps)[position].numpy()
        for maps, position in zip(value_zeroing_maps(context, last_at_c=True), positions, strict=True)
    ]
    return context.records("value_zeroing", scores)


def unsupported(adapter: ModelAdapter) -> str:
    """Why Value Zeroing is not defined for ``adapter``'s family (its attention cannot be edited), or ``""``."""
    return "" if adapter.supports_interventions else f"{adapter.family} models: {adapter.not_editable}"
