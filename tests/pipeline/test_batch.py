"""One batch through every method and metric."""

from __future__ import annotations

from collections import Counter

from tasks.config import ExecutionSettings, InterventionOptions, MethodOptions
from tasks.explain.registry import METHODS, default_methods
from tasks.pipeline.batch import audit_batch
from tasks.records import MethodFamily

NO_INTERVENTIONS = InterventionOptions(interventions=("none",))


def test_every_method_gives_one_record_per_example_and_draw(tiny_bundle, examples):
    options = MethodOptions(methods=default_methods(), ig_steps=8, ig_rule="gausslegendre", random_draws=2)
    result = audit_batch(tiny_bundle, examples, options, NO_INTERVENTIONS, ExecutionSettings())
    counts = Counter(record.method for record in result.scores)
    for name in options.methods:
        assert counts[name] == len(examples) * (2 if name == "random" else 1)
    assert [p.example_id for p in result.predictions] == [e.example_id for e in examples]


def test_agreement_covers_every_pair_of_methods_once(tiny_bundle, examples):
    options = MethodOptions(methods=default_methods(), ig_steps=8, ig_rule="gausslegendre", random_draws=2)
    result = audit_batch(tiny_bundle, examples, options, NO_INTERVENTIONS, ExecutionSettings())
    pairs = {(m.method, m.reference) for m in result.metrics if m.metric == "kendall_tau"}
    expected = {frozenset((a, b)) for a in options.methods for b in options.methods if a != b}
    assert {frozenset(pair) for pair in pairs} == expected
    assert len(pairs) == len(expected), "a pair is stored in both orientations"
    explanations = [n for n in options.methods if METHODS[n].family == MethodFamily.ATTENTION]
    references = [n for n in options.methods if METHODS[n].family == MethodFamily.REFERENCE]
    assert {(e, r) for e in explanations for r in references} <= pairs  # an explanation is the method side
    assert all(method == "random" for method, other in pairs if "random" in (method, other))
    random_rows = [m for m in result.metrics if m.method == "random" and m.metric == "kendall_tau"]
    assert {m.draw for m in random_rows} == {0, 1}


def test_every_method_gets_faithfulness_metrics(tiny_bundle, examples):
    options = MethodOptions(methods=default_methods(), ig_steps=8, ig_rule="gausslegendre")
    result = audit_batch(tiny_bundle, examples, options, NO_INTERVENTIONS, ExecutionSettings())
    for metric in ("aopc_comprehensiveness", "aopc_sufficiency", "taucorr_loo"):
        assert {m.method for m in result.metrics if m.metric == metric} == set(options.methods)
    completeness = [m for m in result.metrics if m.metric == "completeness_error"]
    assert len(completeness) == len(examples)


def test_the_stages_report_their_cost_and_the_model_pass_runs_once(tiny_bundle, examples):
    options = MethodOptions(
        methods=("attention_last", "saliency", "integrated_gradients", "leave_one_out"),
        ig_steps=8,
        ig_rule="gausslegendre",
    )
    result = audit_batch(tiny_bundle, examples, options, NO_INTERVENTIONS, ExecutionSettings())
    costs = {cost.stage: cost for cost in result.costs}
    assert list(costs) == [
        "model_pass",
        *options.methods,
        "faithfulness",
        "soft_faithfulness",
        "agreement",
        "removal_check",
    ]
    assert costs["model_pass"].forward_rows == costs["model_pass"].backward_rows == len(examples)
    assert costs["saliency"].forward_rows == costs["attention_last"].forward_rows == 0
    assert costs["integrated_gradients"].backward_rows == 8 * len(examples)
    content = sum(int(e.content_mask.sum()) for e in examples)
    assert costs["leave_one_out"].forward_rows == content


def test_attention_only_runs_need_no_backward_pass(tiny_bundle, examples):
    options = MethodOptions(methods=("attention_last", "rollout", "random"))
    result = audit_batch(tiny_bundle, examples, options, NO_INTERVENTIONS, ExecutionSettings())
    assert sum(cost.backward_rows for cost in result.costs) == 0


def test_a_run_without_soft_faithfulness_has_neither_its_passes_nor_its_values_and_the_rest_unchanged(
    tiny_bundle, examples
):
    options = MethodOptions(methods=("attention_last", "leave_one_out", "random"))
    full = audit_batch(tiny_bundle, examples, options, NO_INTERVENTIONS, ExecutionSettings())
    without = audit_batch(
        tiny_bundle,
        examples,
        options.model_copy(update={"soft_faithfulness": False}),
        NO_INTERVENTIONS,
        ExecutionSettings(),
    )

    soft = {"soft_comprehensiveness", "soft_sufficiency"}
    assert soft <= {m.metric for m in full.metrics}
    assert not soft & {m.metric for m in without.metrics}
    assert "soft_faithfulness" in {c.stage for c in full.costs}
    assert "soft_faithfulness" not in {c.stage for c in without.costs}
    rest = [(m.example_id, m.method, m.metric, m.draw, m.value) for m in full.metrics if m.metric not in soft]
    assert rest == [(m.example_id, m.method, m.metric, m.draw, m.value) for m in without.metrics]
