"""Audit one batch: the shared passes, every method, every metric. No Prefect, no DuckDB.

``audit_batch`` is the unit of work the flow maps over; it is a pure function of the model, the
examples and the method options (given the same floating-point arithmetic), and it reports what each
stage cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager

import numpy as np

from tasks.config import ExecutionSettings, InterventionOptions, MethodOptions
from tasks.data.units import records_in_units, unit_indices
from tasks.evaluate.batch_metrics import (
    agreement_values,
    diagnostic_values,
    faithfulness_values,
    head_agreement_values,
    plausibility_values,
    segment_share_values,
)
from tasks.evaluate.removal_check import second_removal_values
from tasks.evaluate.soft import soft_values
from tasks.explain.passes import BatchContext
from tasks.explain.registry import METHODS, MethodSpec, methods_of
from tasks.interventions.registry import INTERVENTIONS
from tasks.model.bundle import ModelBundle
from tasks.records import (
    BatchResult,
    EncodedExample,
    InterventionValue,
    MethodFamily,
    MetricValue,
    Progress,
    StageCost,
    TokenScores,
    no_progress,
)

StageMeter = Callable[[str], AbstractContextManager[None]]
"""``with measure(stage):`` records the time and the model work of ``stage`` as a ``StageCost``."""


def audit_batch(
    bundle: ModelBundle,
    examples: Sequence[EncodedExample],
    options: MethodOptions,
    interventions: InterventionOptions,
    execution: ExecutionSettings,
    removal_sample: Collection[str] = frozenset(),
    progress: Progress = no_progress,
) -> BatchResult:
    """Compute every requested method, metric and intervention for one batch of examples.

    The examples of ``removal_sample`` (``tasks.evaluate.removal_check.removal_sample`` of the run) also
    have their removal metrics recomputed with the second removal operator. ``progress`` is told after
    each measured stage (the model pass, each method, the metrics, the removal check, each intervention).

    The model pass runs first and once; methods then read it (and the shared perturbation cache)
    in registry order; faithfulness and agreement metrics follow; the interventions on the attention
    start from the model pass's hidden states. Each head's agreement with the references is measured
    when heads are masked, to relate a head's importance to its agreement.
    """
    specs = [METHODS[name] for name in options.methods]
    context = BatchContext(
        bundle,
        examples,
        token_budget=execution.token_budget,
        gradient_token_budget=execution.gradient_token_budget,
        removal=options.removal,
        need_gradients=any(spec.needs_gradients for spec in specs),
        need_attention_grads=any(spec.needs_attention_grads for spec in specs),
    )
    costs: list[StageCost] = []
    stages = 1 + len(specs) + 4 + len(interventions.names)  # the measured stages below
    measure = _stage_meter(
        context, costs, lambda cost: progress(len(costs), stages, f"{cost.stage} {cost.seconds:.1f} s")
    )
    with measure("model_pass"):
        predictions = context.predictions()
    records = _explanations(context, specs, options, measure)
    units = unit_indices(examples, options.units)
    ranked = records_in_units(records, units, options.units, methods_of(MethodFamily.BASELINE))
    by_unit = None if options.units == "token" else units
    metrics = _metric_values(context, records, ranked, options, by_unit, measure)
    with measure("removal_check"):
        metrics.extend(second_removal_values(context, records, options, removal_sample, by_unit))
    intervention_values = _intervention_values(context, interventions, measure)
    head_agreement = head_agreement_values(ranked, context, by_unit) if "head_masking" in interventions.names else []
    return BatchResult(
        examples=tuple(examples),
        predictions=predictions,
        scores=tuple(records),
        metrics=tuple(metrics),
        costs=tuple(costs),
        interventions=tuple(intervention_values),
        head_agreement=tuple(head_agreement),
    )


def _explanations(
    context: BatchContext, specs: Sequence[MethodSpec], options: MethodOptions, measure: StageMeter
) -> list[TokenScores]:
    """Every method's records in registry order (one measured stage each), then the imported ones."""
    records: list[TokenScores] = []
    for spec in specs:
        with measure(spec.name):
            records.extend(spec.compute(context, options))
    records.extend(
        TokenScores(example.example_id, name, scores, example.content_mask)
        for example in context.examples
        for name, scores in example.imported.items()
    )
    return records


def _metric_values(
    context: BatchContext,
    records: Sequence[TokenScores],
    ranked: Sequence[TokenScores],
    options: MethodOptions,
    by_unit: Mapping[str, np.ndarray] | None,
    measure: StageMeter,
) -> list[MetricValue]:
    """Faithfulness, soft faithfulness (unless left out), agreement, plausibility, diagnostics, text-pair shares.

    The first three are measured stages. ``ranked`` are the records in the run's units (``by_unit``, None at
    token level); diagnostics and text-pair shares read the token-level ``records``.
    """
    metrics: list[MetricValue] = []
    with measure("faithfulness"):
        metrics.extend(faithfulness_values(ranked, context, options, by_unit))
    if options.soft_faithfulness:
        with measure("soft_faithfulness"):
            metrics.extend(soft_values(ranked, context, options, by_unit))
    with measure("agreement"):
        metrics.extend(agreement_values(ranked, options))
    metrics.extend(plausibility_values(ranked, context.examples, by_unit))
    metrics.extend(diagnostic_values(records))
    metrics.extend(segment_share_values(records, context.examples))
    return metrics


def _intervention_values(
    context: BatchContext, interventions: InterventionOptions, measure: StageMeter
) -> list[InterventionValue]:
    """The configured interventions on the attention, one measured stage each (refused up front if unsupported)."""
    if interventions.interventions:
        context.bundle.adapter.require("interventions on the attention")
    values: list[InterventionValue] = []
    for name in interventions.names:
        with measure(name):
            values.extend(INTERVENTIONS[name].compute(context, interventions))
    return values


def _stage_meter(context: BatchContext, costs: list[StageCost], done: Callable[[StageCost], None]) -> StageMeter:
    """A meter appending one ``StageCost`` to ``costs`` per measured stage of ``context``, then telling ``done``."""

    @contextmanager
    def measure(stage: str) -> Iterator[None]:
        before = context.counter.snapshot()
        started = time.perf_counter()
        yield
        work = context.counter.minus(before)
        costs.append(
            StageCost(
                stage=stage,
                examples=len(context.examples),
                seconds=time.perf_counter() - started,
                forward_rows=work.forward_rows,
                forward_tokens=work.forward_tokens,
                backward_rows=work.backward_rows,
                backward_tokens=work.backward_tokens,
            )
        )
        done(costs[-1])

    return measure
