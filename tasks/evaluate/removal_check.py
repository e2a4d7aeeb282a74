"""The faithfulness evidence recomputed with a second removal operator, on a seeded sample.

Removing tokens produces inputs the model never saw in training (Hooker et al. 2019), so comprehensiveness,
sufficiency, their AOPC and τ with leave-one-out may depend on *how* a token is removed. On a seeded
sample of the run's examples (the first ``removal_check_sample`` in the order of ``sha256(seed:id)``,
independent of the batches), they are computed again with the second operator
(``MethodOptions.second_removal``: ``[MASK]``, as Abnar & Zuidema 2020 remove tokens, or the pad token
for a tokenizer without a mask token; ``delete`` when the run itself masks or pads). Leave-one-out is
recomputed with that operator too, since its scores are removals; every other method's scores are the
run's own. The values are stored under the metric ids with ``SECOND_REMOVAL_SUFFIX``;
``tasks.verdict.removal`` says whether the verdict's evidence survives the choice.

References:
    Hooker, Erhan, Kindermans & Kim (2019), "A Benchmark for Interpretability Methods in Deep Neural
    Networks", NeurIPS. https://arxiv.org/abs/1806.10758
    Abnar & Zuidema (2020), "Quantifying Attention Flow in Transformers", ACL.
    https://arxiv.org/abs/2005.00928
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

import numpy as np

from tasks.config import MethodOptions, RemovalOperator
from tasks.data.units import records_in_units
from tasks.evaluate.batch_metrics import faithfulness_values
from tasks.evaluate.metrics import SECOND_REMOVAL_SUFFIX
from tasks.evaluate.sanity import sample
from tasks.explain.passes import BatchContext
from tasks.explain.registry import METHODS, methods_of
from tasks.records import EncodedExample, MethodFamily, MetricValue, TokenScores


def second_operator(tokenizer: object, options: MethodOptions) -> RemovalOperator:
    """The operator the check uses: ``options.second_removal``, with ``pad`` for a tokenizer without ``[MASK]``."""
    operator = options.second_removal
    if operator == "mask" and getattr(tokenizer, "mask_token_id", None) is None:
        return "pad"
    return operator


def removal_sample(examples: Sequence[EncodedExample], options: MethodOptions) -> frozenset[str]:
    """Ids of the examples the second operator recomputes (all of them when the run has fewer)."""
    return frozenset(e.example_id for e in sample(examples, options.removal_check_sample, options.seed))


def second_removal_values(
    context: BatchContext,
    records: Sequence[TokenScores],
    options: MethodOptions,
    chosen: Collection[str],
    units: Mapping[str, np.ndarray] | None = None,
) -> list[MetricValue]:
    """The hard faithfulness metrics of the sampled examples of ``context``'s batch, with the second operator.

    Args:
        context: The batch (its model pass gives ``ŷ`` and ``p_ŷ(x)``).
        records: The batch's token-level records (leave-one-out's are recomputed).
        options: The run's method options.
        chosen: The sample's example ids (``removal_sample``).
        units: ``unit[t]`` per example for word or sentence units; None at token level.

    Returns:
        ``MetricValue`` rows under the ``…_removal2`` metric ids.
    """
    examples = [example for example in context.examples if example.example_id in chosen]
    if not examples or options.removal_check_sample == 0:
        return []
    operator = second_operator(context.bundle.tokenizer, options)
    check = BatchContext(
        context.bundle,
        examples,
        token_budget=context.token_budget,
        gradient_token_budget=context.gradient_token_budget,
        removal=operator,
        need_gradients=False,
        counter=context.counter,
    )
    ids = {example.example_id for example in examples}
    kept = [r for r in records if r.example_id in ids and r.method != "leave_one_out"]
    if "leave_one_out" in options.methods:
        kept.extend(METHODS["leave_one_out"].compute(check, options))
    level = "token" if units is None else options.units
    ranked = records_in_units(kept, units or {}, level, methods_of(MethodFamily.BASELINE))
    values = faithfulness_values(ranked, check, options, units)
    return [replace(value, metric=f"{value.metric}{SECOND_REMOVAL_SUFFIX}") for value in values]
