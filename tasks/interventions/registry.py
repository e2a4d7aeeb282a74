"""Interventions on the attention: does changing what the model attends to change its output?

Each intervention replaces attention probabilities inside the forward pass (``tasks.model.attention_hook``),
never the input, and measures the change of the output distribution as the total variation distance
``TVD(p, q) = ½ Σ_i |p_i − q_i|`` and as decision flips (``argmax q ≠ ŷ``). An edit of layer ``l`` starts
from the cached hidden states entering ``l`` and runs only the layers above it.

- ``permutation`` (Jain & Wallace 2019): permute row ``c`` of every head of a layer over the content keys,
  ``n`` random permutations; median and mean TVD and the flip rate.
- ``uniform`` (Wiegreffe & Pinter 2019): replace a layer's attention (every head and query) with uniform
  weights over the non-padding keys, each layer alone and all layers at once; TVD, flip and the
  prediction under the change (for the dataset-level accuracy with and without it).
- ``top_vs_random_erasure`` (Serrano & Smith 2019): zero the attention of every head's row ``c`` on the
  content key most attended on average over heads, renormalise, and compare with erasing a random other
  content key; TVDs and flips of both.
- ``adversarial`` (Jain & Wallace 2019): optimise every head's row ``c`` of a layer to maximise
  ``JSD(α, α')`` (base 2, averaged over heads) subject to ``TVD(p(α'), p(α)) ≤ ε``, with Adam on the
  logits of ``α'`` and the penalty ``λ · max(0, TVD − ε)``; the largest JSD reached within the constraint,
  its TVD, and whether the last iterate held the constraint.
- ``head_masking`` (Michel et al. 2019): mask one head (its probabilities set to 0, so it contributes
  nothing); TVD and flip for every head of every layer.

References:
    Jain & Wallace (2019), "Attention is not Explanation", NAACL. https://arxiv.org/abs/1902.10186
    Wiegreffe & Pinter (2019), "Attention is not not Explanation", EMNLP. https://arxiv.org/abs/1908.04626
    Serrano & Smith (2019), "Is Attention Interpretable?", ACL. https://arxiv.org/abs/1906.03731
    Michel, Levy & Neubig (2019), "Are Sixteen Heads Really Better than One?", NeurIPS.
    https://arxiv.org/abs/1905.10650
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from tasks.config import InterventionOptions
from tasks.explain.passes import BatchContext
from tasks.model.attention_hook import AttentionEdit
from tasks.records import EncodedExample, InterventionValue

ADVERSARIAL_PENALTY = 100.0
"""``λ`` of the adversarial objective: a TVD 0.01 over ε costs as much as a JSD gain of 1."""


def tvd(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Total variation distance ``½ Σ |p − q|`` along the last axis."""
    return 0.5 * (p - q).abs().sum(dim=-1)


def jsd(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon divergence in bits along the last axis (0 ≤ JSD ≤ 1); zero entries are handled."""
    middle = 0.5 * (p + q)

    def kl(a: torch.Tensor) -> torch.Tensor:
        ratio = torch.where(a > 0, a / middle.clamp_min(1e-30), torch.ones_like(a))
        return (a * torch.log2(ratio)).sum(dim=-1)

    return 0.5 * kl(p) + 0.5 * kl(q)


def resolve_layer(layer: int, layers: int) -> int:
    """A layer index with negatives counted from the top (-1 is the last), checked against the model.

    Raises:
        ValueError: The layer does not exist.
    """
    resolved = layer + layers if layer < 0 else layer
    if not 0 <= resolved < layers:
        raise ValueError(f"layer {layer} does not exist in a model with {layers} layers")
    return resolved


def example_rng(example: EncodedExample, *keys: int) -> np.random.Generator:
    """A generator seeded by ``keys`` and the example id: independent of the batch the example is in."""
    example_key = int.from_bytes(hashlib.sha256(example.example_id.encode()).digest()[:8], "little")
    return np.random.default_rng([*keys, example_key])


# --- edits ------------------------------------------------------------------------------------


def edit_classification_rows(
    layer: int, positions: torch.Tensor, new_rows: Callable[[torch.Tensor], torch.Tensor]
) -> AttentionEdit:
    """An edit replacing row ``positions[n]`` of every head of ``layer`` by ``new_rows(old_rows)``.

    ``new_rows`` maps ``[n, H, W]`` to ``[n, H, W]``; other layers and rows are left as they are.
    """

    def edit(at: int, probabilities: torch.Tensor) -> torch.Tensor:
        if at != layer:
            return probabilities
        runs = torch.arange(probabilities.shape[0], device=probabilities.device)
        # A last layer computed at the classification position only has that single query row.
        queries = positions if probabilities.shape[-2] > 1 else torch.zeros_like(positions)
        rows = probabilities[runs, :, queries]
        edited = probabilities.clone()
        edited[runs, :, queries] = new_rows(rows)
        return edited

    return edit


RowTransform = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``transform(rows [n, H, W'], runs [n]) -> rows``: new classification rows for the runs of one chunk."""


def row_edits(layer: int, positions: torch.Tensor, transform: RowTransform) -> Callable[[np.ndarray], AttentionEdit]:
    """Per-chunk edits of the classification rows of ``layer`` for ``intervened_probabilities``."""

    def edit_for(members: np.ndarray) -> AttentionEdit:
        runs = torch.as_tensor(members, device=positions.device)
        return edit_classification_rows(layer, positions[runs], lambda old: transform(old, runs))

    return edit_for


def permuted_rows(index: torch.Tensor, rows: torch.Tensor, runs: torch.Tensor) -> torch.Tensor:
    """Rows whose keys are reordered by ``index[run]`` (``[N, W]``, identity outside the content keys)."""
    return rows.gather(-1, index[runs][:, None, : rows.shape[-1]].expand_as(rows))


def erased_rows(keys: torch.Tensor, rows: torch.Tensor, runs: torch.Tensor) -> torch.Tensor:
    """Rows with key ``keys[run]`` erased and the rest renormalised."""
    return erase_key(rows, keys[runs])


def uniform_edit(layers: set[int], key_mask: torch.Tensor) -> AttentionEdit:
    """An edit replacing the attention of ``layers`` by uniform weights over the keys in ``key_mask``.

    ``key_mask`` is ``[n, W]`` (1 at real tokens) and may be wider than the chunk being run.
    """

    def edit(at: int, probabilities: torch.Tensor) -> torch.Tensor:
        if at not in layers:
            return probabilities
        keys = key_mask[:, : probabilities.shape[-1]].to(probabilities.dtype)
        weights = keys / keys.sum(dim=-1, keepdim=True)
        return weights[:, None, None, :].expand_as(probabilities).contiguous()

    return edit


def erase_key(rows: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Zero key ``keys[n]`` in every head's row of run ``n`` and renormalise: ``[n, H, W] -> [n, H, W]``."""
    kept = rows.clone()
    kept[torch.arange(rows.shape[0]), :, keys] = 0.0
    return kept / kept.sum(dim=-1, keepdim=True)


def head_mask_edit(layer: int, heads: torch.Tensor) -> AttentionEdit:
    """An edit zeroing head ``heads[n]`` of ``layer`` in run ``n`` (the head then adds nothing)."""

    def edit(at: int, probabilities: torch.Tensor) -> torch.Tensor:
        if at != layer:
            return probabilities
        keep = torch.ones(probabilities.shape[:2], dtype=probabilities.dtype, device=probabilities.device)
        keep[torch.arange(probabilities.shape[0]), heads] = 0.0
        return probabilities * keep[:, :, None, None]

    return edit


# --- the interventions --------------------------------------------------------------------------


def _changes(context: BatchContext, rows: np.ndarray, probabilities: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """TVD from the original output and whether the decision flipped, per run."""
    original = torch.softmax(context.model_pass.logits.double().cpu(), dim=-1)[torch.as_tensor(rows)]
    predicted = context.targets.cpu()[torch.as_tensor(rows)]
    return tvd(original, probabilities).numpy(), (probabilities.argmax(dim=-1) != predicted).numpy()


def _content_positions(example: EncodedExample) -> np.ndarray:
    return np.flatnonzero(example.content_mask)


def permutation(context: BatchContext, options: InterventionOptions) -> list[InterventionValue]:
    """Permute row ``c`` of every head of each chosen layer over the content keys, ``n`` draws."""
    examples, draws = context.examples, options.permutation_draws
    width = int(context.lengths.max())
    values = []
    for requested in options.layers:
        layer = resolve_layer(requested, context.bundle.num_layers)
        rows = np.repeat(np.arange(len(examples)), draws)
        index = np.tile(np.arange(width), (len(rows), 1))
        for run, row in enumerate(rows):
            if run % draws == 0:
                rng = example_rng(examples[row], options.seed, layer, 1)
            content = _content_positions(examples[row])
            index[run, content] = rng.permutation(content)
        positions = context.classification_positions[torch.as_tensor(rows)]
        edit_for = row_edits(layer, positions, partial(permuted_rows, torch.as_tensor(index, device=positions.device)))
        changes, flips = _changes(context, rows, context.intervened_probabilities(rows, layer, edit_for))
        for row, example in enumerate(examples):
            these = slice(row * draws, (row + 1) * draws)
            values += [
                InterventionValue(
                    example.example_id, "permutation", "median_tvd", float(np.median(changes[these])), layer
                ),
                InterventionValue(example.example_id, "permutation", "mean_tvd", float(np.mean(changes[these])), layer),
                InterventionValue(example.example_id, "permutation", "flip_rate", float(np.mean(flips[these])), layer),
            ]
    return values


def uniform(context: BatchContext, options: InterventionOptions) -> list[InterventionValue]:
    """Uniform attention over the non-padding keys in each layer alone and in all layers at once."""
    layers = context.bundle.num_layers
    batch_rows = np.arange(len(context.examples))
    values = []
    for layer in [*range(layers), None]:
        changed = set(range(layers)) if layer is None else {layer}

        def edit_for(members: np.ndarray, changed: set[int] = changed) -> AttentionEdit:
            return uniform_edit(changed, context.attention_mask[torch.as_tensor(batch_rows[members])])

        probabilities = context.intervened_probabilities(batch_rows, 0 if layer is None else layer, edit_for)
        changes, flips = _changes(context, batch_rows, probabilities)
        predicted = probabilities.argmax(dim=-1).numpy()
        for row, example in enumerate(context.examples):
            values += [
                InterventionValue(example.example_id, "uniform", "tvd", float(changes[row]), layer),
                InterventionValue(example.example_id, "uniform", "flip", float(flips[row]), layer),
                InterventionValue(example.example_id, "uniform", "predicted", float(predicted[row]), layer),
            ]
    return values


def top_vs_random_erasure(context: BatchContext, options: InterventionOptions) -> list[InterventionValue]:
    """Erase the most-attended content key of row ``c`` versus a random other content key."""
    examples, draws = context.examples, options.erasure_draws
    values = []
    for requested in options.layers:
        layer = resolve_layer(requested, context.bundle.num_layers)
        mean_rows = context.model_pass.attentions[layer].mean(dim=1)
        mean_rows = mean_rows[torch.arange(len(examples)), context.classification_positions].cpu().numpy()
        rows, keys, is_top = [], [], []
        for row, example in enumerate(examples):
            content = _content_positions(example)
            if content.size < 2:
                values += _undefined_erasure(example, layer)
                continue
            top = int(content[np.argmax(mean_rows[row, content])])
            others = content[content != top]
            rng = example_rng(example, options.seed, layer, 2)
            for key, top_flag in [(top, True), *((int(k), False) for k in rng.choice(others, draws))]:
                rows.append(row)
                keys.append(key)
                is_top.append(top_flag)
        if not rows:
            continue
        rows_array = np.array(rows)
        positions = context.classification_positions[torch.as_tensor(rows_array)]
        edit_for = row_edits(layer, positions, partial(erased_rows, torch.as_tensor(keys, device=positions.device)))
        probabilities = context.intervened_probabilities(rows_array, layer, edit_for)
        changes, flips = _changes(context, rows_array, probabilities)
        top_mask = np.array(is_top)
        for row in np.unique(rows_array):
            example_id = examples[row].example_id
            top_run = (rows_array == row) & top_mask
            random_runs = (rows_array == row) & ~top_mask
            values += [
                InterventionValue(example_id, "top_vs_random_erasure", "top_tvd", float(changes[top_run][0]), layer),
                InterventionValue(example_id, "top_vs_random_erasure", "top_flip", float(flips[top_run][0]), layer),
                InterventionValue(
                    example_id, "top_vs_random_erasure", "random_tvd", float(changes[random_runs].mean()), layer
                ),
                InterventionValue(
                    example_id, "top_vs_random_erasure", "random_flip", float(flips[random_runs].mean()), layer
                ),
            ]
    return values


def _undefined_erasure(example: EncodedExample, layer: int) -> list[InterventionValue]:
    """An input with fewer than two content tokens has no 'other' key to compare with."""
    return [
        InterventionValue(example.example_id, "top_vs_random_erasure", statistic, float("nan"), layer)
        for statistic in ("top_tvd", "top_flip", "random_tvd", "random_flip")
    ]


def adversarial(context: BatchContext, options: InterventionOptions) -> list[InterventionValue]:
    """Adversarial attention rows: as different as possible from the original, the output within ε."""
    bundle, examples = context.bundle, context.examples
    values = []
    original = torch.softmax(context.model_pass.logits.double(), dim=-1).float()
    rows = torch.arange(len(examples), device=context.input_ids.device)
    positions = context.classification_positions
    keys = context.attention_mask.bool()  # [B, W]
    for requested in options.layers:
        layer = resolve_layer(requested, bundle.num_layers)
        attention = context.model_pass.attentions[layer][rows, :, positions].float()  # [B, H, W]
        generator = torch.Generator().manual_seed(options.seed * 1_000_003 + layer)
        noise = torch.randn(attention.shape, generator=generator).to(attention.device)
        logits = (attention.clamp_min(1e-12).log() + noise).requires_grad_(True)
        optimiser = torch.optim.Adam([logits], lr=options.adversarial_learning_rate)
        best_jsd = torch.zeros(len(examples))
        best_tvd = torch.zeros(len(examples))
        hidden = context.model_pass.hidden_states[layer]
        share = (bundle.num_layers - layer) / bundle.num_layers
        for _step in range(options.adversarial_steps):
            candidate = torch.softmax(logits.masked_fill(~keys[:, None, :], float("-inf")), dim=-1)
            edit = edit_classification_rows(layer, positions, lambda old, new=candidate: new.to(old.dtype))
            with torch.enable_grad():
                output = bundle.adapter.logits_from(bundle.model, hidden, context.attention_mask, layer, edit)
                changed = tvd(torch.softmax(output.float(), dim=-1), original)
                divergence = jsd(attention, candidate).mean(dim=-1)
                loss = (-divergence + ADVERSARIAL_PENALTY * (changed - options.adversarial_epsilon).clamp_min(0)).sum()
            (logits.grad,) = torch.autograd.grad(loss, [logits])  # not the model's parameters
            optimiser.step()
            with torch.no_grad():
                feasible = (changed <= options.adversarial_epsilon) & (divergence > best_jsd)
                best_jsd = torch.where(feasible, divergence.detach(), best_jsd)
                best_tvd = torch.where(feasible, changed.detach(), best_tvd)
            tokens = int(context.lengths.sum() * share)
            context.counter.forward_rows += len(examples)
            context.counter.backward_rows += len(examples)
            context.counter.forward_tokens += tokens
            context.counter.backward_tokens += tokens
        final_held = (changed.detach() <= options.adversarial_epsilon).numpy()
        for row, example in enumerate(examples):
            values += [
                InterventionValue(example.example_id, "adversarial", "jsd", float(best_jsd[row]), layer),
                InterventionValue(example.example_id, "adversarial", "tvd", float(best_tvd[row]), layer),
                InterventionValue(example.example_id, "adversarial", "constraint_held", float(final_held[row]), layer),
            ]
    return values


def head_masking(context: BatchContext, options: InterventionOptions) -> list[InterventionValue]:
    """Mask each head of each layer alone; TVD and flip per head."""
    bundle, examples = context.bundle, context.examples
    heads = bundle.num_heads
    values = []
    rows = np.repeat(np.arange(len(examples)), heads)
    masked_heads = torch.as_tensor(np.tile(np.arange(heads), len(examples)))
    for layer in range(bundle.num_layers):

        def edit_for(members: np.ndarray, layer: int = layer) -> AttentionEdit:
            return head_mask_edit(layer, masked_heads[torch.as_tensor(members)])

        changes, flips = _changes(context, rows, context.intervened_probabilities(rows, layer, edit_for))
        for run, (row, head) in enumerate(zip(rows, masked_heads.tolist(), strict=True)):
            example_id = examples[row].example_id
            values += [
                InterventionValue(example_id, "head_masking", "tvd", float(changes[run]), layer, head),
                InterventionValue(example_id, "head_masking", "flip", float(flips[run]), layer, head),
            ]
    return values


# --- the registry -----------------------------------------------------------------------------


Intervention = Callable[[BatchContext, InterventionOptions], list[InterventionValue]]


@dataclass(frozen=True)
class InterventionSpec:
    """A registered intervention.

    Attributes:
        name: Stable snake_case id (DuckDB key, report label).
        compute: The intervention.
        title: Display name.
        definition: One line for the methodology appendix.
        reading: What a large or small effect says about attention as an explanation.
        citation: The paper.
        default: Run when the configuration names no interventions.
    """

    name: str
    compute: Intervention
    title: str
    definition: str
    reading: str
    citation: str
    default: bool = True


INTERVENTIONS: dict[str, InterventionSpec] = {
    spec.name: spec
    for spec in (
        InterventionSpec(
            name="permutation",
            compute=permutation,
            title="Permuted attention",
            definition="permute row c of every head of the layer over the content keys; n draws; median TVD, flip rate",
            reading="if scrambling which token gets which weight barely moves the output, the weights do not "
            "single out the tokens the decision rests on",
            citation="Jain & Wallace 2019",
        ),
        InterventionSpec(
            name="uniform",
            compute=uniform,
            title="Uniform attention",
            definition="replace a layer's attention (or every layer's) by uniform weights over the non-padding "
            "keys; TVD, flip, accuracy",
            reading="if uniform attention predicts as well, the learned attention distribution is not needed "
            "for the decision",
            citation="Wiegreffe & Pinter 2019",
        ),
        InterventionSpec(
            name="top_vs_random_erasure",
            compute=top_vs_random_erasure,
            title="Erasing the top key versus a random key",
            definition="zero the attention of row c on the most-attended content key (mean over heads) and "
            "renormalise, versus a random other content key; TVD and flips of both",
            reading="attention ranks importance faithfully when erasing its top key changes the output more "
            "than erasing a random key",
            citation="Serrano & Smith 2019",
        ),
        InterventionSpec(
            name="adversarial",
            compute=adversarial,
            title="Adversarial attention",
            definition="maximise JSD(α, α') of row c (every head) subject to TVD(p(α'), p(α)) ≤ ε with Adam; "
            "largest feasible JSD",
            reading="a large JSD with an unchanged output means very different attention explains the same "
            "prediction, so this attention is not the explanation",
            citation="Jain & Wallace 2019",
        ),
        InterventionSpec(
            name="head_masking",
            compute=head_masking,
            title="Head masking",
            definition="set one head's attention to zero (the head contributes nothing); TVD and flip per head",
            reading="heads whose removal changes the output matter to the decision; their attention is the "
            "one worth explaining",
            citation="Michel et al. 2019",
        ),
    )
}


def default_interventions() -> tuple[str, ...]:
    """The interventions a run performs when it names none."""
    return tuple(name for name, spec in INTERVENTIONS.items() if spec.default)


def resolve_interventions(names: tuple[str, ...] | None) -> tuple[str, ...]:
    """The interventions a run performs: ``names``, or the default ones when None (``()`` is none).

    Raises:
        ValueError: A name is not a registered intervention, or is listed twice.
    """
    if names is None:
        return default_interventions()
    unknown = [name for name in names if name not in INTERVENTIONS]
    if unknown:
        raise ValueError(f"unknown intervention(s) {', '.join(unknown)}; known: {', '.join(INTERVENTIONS)}, or none")
    if len(set(names)) != len(names):
        raise ValueError("an intervention is listed twice")
    return tuple(names)


def run_interventions(
    context: BatchContext, options: InterventionOptions, names: Sequence[str] | None = None
) -> list[InterventionValue]:
    """Run the named interventions (default: the configured ones) on one batch."""
    context.bundle.adapter.require("interventions on the attention")
    return [
        value for name in (names or options.interventions) for value in INTERVENTIONS[name].compute(context, options)
    ]
