"""Every supported family, encoder and decoder, through every method and intervention.

A tiny random ``*ForSequenceClassification`` of each family is built from its config in code, with the
kind of tokenizer the family ships (``tests/tiny_families.py``), and loaded as the audit loads any
model. On each, the methods must satisfy the properties of docs/methodology.md, a padded batch must give the
numbers of one example at a time, and the adapter's view of the model (classification position,
value and output projections, layers run from cached states) must agree with the model's own forward.
"""

from __future__ import annotations

import copy
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import torch

from tasks.config import InterventionOptions, MethodOptions, ModelSpec
from tasks.errors import AuditError
from tasks.explain.gradients import completeness_holds
from tasks.explain.passes import BatchContext
from tasks.explain.registry import METHODS
from tasks.explain.value_zeroing import value_zeroing_maps, value_zeroing_rollout
from tasks.interventions.head_masking import head_mask_edit
from tasks.interventions.mechanism import tvd
from tasks.interventions.registry import INTERVENTIONS, run_interventions
from tasks.model.bundle import ModelBundle
from tasks.model.loading import load_model
from tasks.report import heatmaps
from tests.conftest import SAMPLES, TEXTS, encode
from tests.tiny_families import FAMILIES, save_tiny

OPTIONS = MethodOptions(ig_steps=16, ig_rule="gausslegendre")
NOT_EDITABLE = {"deberta-v2"}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def bundle(request, tmp_path_factory) -> ModelBundle:
    folder = tmp_path_factory.mktemp(request.param)
    save_tiny(FAMILIES[request.param], folder)
    return load_model(ModelSpec(name_or_path=str(folder)))


@pytest.fixture(scope="module")
def examples(bundle):
    return encode(bundle, TEXTS)


@pytest.fixture(scope="module")
def context(bundle, examples) -> BatchContext:
    return BatchContext(bundle, examples, need_gradients=True, need_attention_grads=True)


def own_logits(model: torch.nn.Module, input_ids: np.ndarray) -> torch.Tensor:
    """The model's own forward on one unpadded example, ``[C]``."""
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(input_ids)[None]).logits[0].double()


def editable(bundle: ModelBundle) -> bool:
    return bundle.model.config.model_type not in NOT_EDITABLE


def test_the_adapter_serves_the_family_and_reads_the_right_position(bundle, context):
    adapter = bundle.adapter
    assert bundle.model.config.model_type in adapter.model_types
    assert len(adapter.layer_modules(bundle.model)) == bundle.model.config.num_hidden_layers
    lengths = [example.length for example in context.examples]
    expected = [length - 1 for length in lengths] if adapter.causal else [0] * len(lengths)
    assert context.classification_positions.tolist() == expected
    assert adapter.supports_interventions == editable(bundle)


def test_a_batch_gives_the_models_own_logits_for_every_example(bundle, context):
    for row, example in enumerate(context.examples):
        torch.testing.assert_close(
            context.model_pass.logits[row].double(), own_logits(bundle.model, example.input_ids), atol=1e-5, rtol=1e-5
        )


def test_the_layer_by_layer_forward_gives_the_models_logits(bundle, context):
    with torch.no_grad():
        ours = bundle.adapter.forward_logits(
            bundle.model,
            context.attention_mask,
            input_ids=context.input_ids,
            token_type_ids=context._token_types().get("token_type_ids"),
        )
    torch.testing.assert_close(ours, context.model_pass.logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_scores_a_padded_batch_as_one_example_at_a_time(bundle, examples, context, method):
    check = METHODS[method].unsupported
    if check is not None and check(bundle.adapter):
        pytest.skip("not applicable to the family (see the not-applicable test)")
    compute = METHODS[method].compute
    check = METHODS[method].unsupported
    if check is not None and check(bundle.adapter):
        pytest.skip(check(bundle.adapter))  # recorded as not applicable (test_decompx_applies_or_says_why)
    together = {(r.example_id, r.draw): r.scores for r in compute(context, OPTIONS)}
    assert {example_id for example_id, _ in together} == {example.example_id for example in examples}
    for example in examples:
        alone = BatchContext(bundle, [example], need_gradients=True, need_attention_grads=True)
        for record in compute(alone, OPTIONS):
            scores = together[(record.example_id, record.draw)]
            assert scores.shape == (example.length,)
            np.testing.assert_allclose(scores, record.scores, rtol=1e-4, atol=1e-6)


DECOMPOSABLE = {"bert", "roberta", "xlm-roberta", "electra", "distilbert", "albert"}


def test_decompx_logits_sum_to_the_models_logit_or_it_says_why(bundle, context):
    """DecompX on the post-LN encoders: Σ_k z_ŷ^(k) = z_ŷ within 1e-4; elsewhere a not-applicable reason."""
    reason = METHODS["decompx"].unsupported(bundle.adapter)  # type: ignore[misc]
    if bundle.model.config.model_type not in DECOMPOSABLE:
        assert reason.startswith(bundle.adapter.family) and "DecompX" in reason
        return
    assert reason == ""
    logits = context.model_pass.logits.gather(1, context.targets[:, None])[:, 0]
    for record, logit in zip(METHODS["decompx"].compute(context, OPTIONS), logits.tolist(), strict=True):
        assert record.scores.sum() == pytest.approx(logit, abs=1e-4)


@pytest.mark.parametrize("method", ["attention_last", "attention_mean", "rollout"])
def test_attention_rows_and_rollout_are_distributions_over_the_real_tokens(context, method):
    for record in METHODS[method].compute(context, OPTIONS):
        assert record.scores.sum() == pytest.approx(1.0, abs=1e-5)
        assert (record.scores >= 0).all()


FIRST_NORMS = {
    "bert": "attention.output.LayerNorm",
    "electra": "attention.output.LayerNorm",
    "roberta": "attention.output.LayerNorm",
    "xlm-roberta": "attention.output.LayerNorm",
    "deberta-v2": "attention.output.LayerNorm",
    "distilbert": "sa_layer_norm",
    "albert": "attention.LayerNorm",
}
"""Where each post-LN family's LN1 (after the attention block's residual) is, read independently of the adapter."""
SECOND_NORMS = {
    "gpt2": "ln_2",
    "llama": "post_attention_layernorm",
    "mistral": "post_attention_layernorm",
    "qwen2": "post_attention_layernorm",
}
"""Each pre-norm decoder's norm before the feed-forward block: its input is the attention block's output."""


@pytest.mark.parametrize("method", ["alti", "globenc"])
def test_alti_applies_to_every_family_globenc_to_the_post_ln_encoders_and_both_are_distributions(
    bundle, context, method
):
    applies = method == "alti" or bundle.model.config.model_type in FIRST_NORMS
    assert (METHODS[method].unsupported(bundle.adapter) == "") == applies  # type: ignore[misc]
    if not applies:
        with pytest.raises(AuditError, match="pre-norm"):
            METHODS[method].compute(context, OPTIONS)
        return
    for record in METHODS[method].compute(context, OPTIONS):
        assert record.scores.sum() == pytest.approx(1.0, abs=1e-5)
        assert (record.scores >= 0).all()


def test_the_attention_block_decomposition_reconstructs_the_hooked_block_output(bundle, context):
    """``Σ_j T_i(x_j) + b̃_i`` (ALTI, GlobEnc) equals the block's real output, every layer: what a post-LN
    family's LN1 returns, or what a pre-norm decoder's second norm reads (``x_i + Attn(LN(x))_i``)."""
    from tasks.explain.decomposition import reconstructions

    model_type = bundle.model.config.model_type
    modules = bundle.adapter.layer_modules(bundle.model)
    captured: list[torch.Tensor] = []
    if model_type in FIRST_NORMS:
        norms = {id(n): n for n in (_path(inner_of(m), FIRST_NORMS[model_type]) for m in modules)}.values()
        handles = [n.register_forward_hook(lambda _m, _i, output: captured.append(output.detach())) for n in norms]
    else:
        norms = [_path(m, SECOND_NORMS[model_type]) for m in modules]
        handles = [n.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach())) for n in norms]
    rebuilt = reconstructions(context)
    try:
        for row, example in enumerate(context.examples):
            captured.clear()
            with torch.no_grad():
                bundle.model(input_ids=torch.from_numpy(example.input_ids)[None])
            assert len(captured) == len(rebuilt)
            for layer, output in enumerate(captured):
                torch.testing.assert_close(
                    rebuilt[layer][row, : example.length], output[0].double(), atol=1e-4, rtol=1e-4
                )
    finally:
        for handle in handles:
            handle.remove()


def test_globenc_on_a_decoder_is_recorded_not_applicable_with_the_reason_and_alti_runs(bundle):
    from tasks.config import AuditConfig
    from tasks.pipeline.plan import not_applicable, without
    from tasks.verdict.resolve import resolve

    config = resolve(
        AuditConfig.model_validate(
            {"model": {"name_or_path": "unused"}, "methods": {"methods": ["rollout", "alti", "globenc"]}}
        )
    )
    skipped = [item for item in not_applicable(config, bundle) if item.kind == "method"]
    if bundle.model.config.model_type in FIRST_NORMS:
        assert skipped == []
        return
    assert [item.name for item in skipped] == ["globenc"]
    assert all("pre-norm" in item.reason and bundle.adapter.family in item.reason for item in skipped)
    assert without(config, tuple(skipped)).methods.methods == ("rollout", "alti")


def inner_of(module: torch.nn.Module) -> torch.nn.Module:
    return module.albert_layers[-1] if hasattr(module, "albert_layers") else module  # type: ignore[return-value]


def test_integrated_gradients_are_complete(context):
    # Random weights of standard deviation 0.2 make some of these models sharp (tiny DeBERTa needs about
    # 500 steps); completeness is a property of the limit, so the path is integrated finely here.
    for record in METHODS["integrated_gradients"].compute(
        context, MethodOptions(ig_steps=512, ig_rule="gausslegendre")
    ):
        assert completeness_holds(record.diagnostics["completeness_error"], record.diagnostics["logit_gap"])


def test_leave_one_out_is_the_probability_drop_when_the_token_is_deleted(bundle, context):
    records = METHODS["leave_one_out"].compute(context, OPTIONS)
    for row, example in enumerate(context.examples[:2]):
        target = int(context.targets[row])
        full = torch.softmax(own_logits(bundle.model, example.input_ids), -1)[target]
        for position in np.flatnonzero(example.content_mask)[:4]:
            without = torch.softmax(own_logits(bundle.model, np.delete(example.input_ids, position)), -1)[target]
            assert records[row].scores[position] == pytest.approx(float(full - without), abs=1e-5)


def test_saliency_is_the_norm_of_the_gradient_of_the_target_logit(bundle, context):
    records = METHODS["saliency"].compute(context, OPTIONS)
    table = bundle.adapter.word_embeddings(bundle.model)
    for row, example in enumerate(context.examples):
        embeddings = table(torch.from_numpy(example.input_ids)[None]).detach().requires_grad_(True)
        logit = bundle.model(inputs_embeds=embeddings).logits[0, int(context.targets[row])]
        (gradient,) = torch.autograd.grad(logit, embeddings)
        expected = gradient[0].norm(dim=-1).numpy()
        np.testing.assert_allclose(records[row].scores, expected, rtol=1e-4, atol=1e-7)


def test_the_norm_vectors_add_up_to_the_attention_output_projection(bundle, context):
    """``Σ_j Σ_h A[h,c,j] W_O,h v_h(x_j)`` is what the output projection returns at ``c``, less its bias."""
    adapter, model = bundle.adapter, bundle.model
    last = model.config.num_hidden_layers - 1
    module = adapter.layer_modules(model)[last]
    inner = module.albert_layers[-1] if hasattr(module, "albert_layers") else module
    projection = _path(inner, OUTPUT_PROJECTIONS[model.config.model_type])
    captured: list[torch.Tensor] = []
    handle = projection.register_forward_hook(lambda _m, _i, output: captured.append(output.detach()))
    try:
        for example in context.examples:
            captured.clear()
            with torch.no_grad():
                out = model(input_ids=torch.from_numpy(example.input_ids)[None], output_attentions=True,
                            output_hidden_states=True)  # fmt: skip
                values, weight = adapter.norm_vectors(model, last, out.hidden_states[last])
            c = example.length - 1 if adapter.causal else 0
            vectors = torch.einsum("jhd,ohd->jho", values[0], weight)  # f_h(x_j), [T, H, D]
            total = torch.einsum("hj,jho->o", out.attentions[last][0, :, c], vectors)
            bias = getattr(projection, "bias", None)
            expected = captured[-1][0, c] - (0 if bias is None else bias)
            torch.testing.assert_close(total, expected, atol=1e-5, rtol=1e-4)
    finally:
        handle.remove()


OUTPUT_PROJECTIONS = {
    "bert": "attention.output.dense",
    "electra": "attention.output.dense",
    "roberta": "attention.output.dense",
    "xlm-roberta": "attention.output.dense",
    "deberta-v2": "attention.output.dense",
    "distilbert": "attention.out_lin",
    "albert": "attention.dense",
    "gpt2": "attn.c_proj",
    "llama": "self_attn.o_proj",
    "qwen2": "self_attn.o_proj",
    "mistral": "self_attn.o_proj",
}
"""Where each family's attention output projection is, from a layer (read independently of the adapter)."""


def _path(root: object, dotted: str) -> torch.nn.Module:
    for part in dotted.split("."):
        root = getattr(root, part)
    return root  # type: ignore[return-value]


@pytest.mark.parametrize("start", ["first", "last"])
def test_intervening_with_the_original_attention_reproduces_the_output(bundle, context, start):
    if not editable(bundle):
        pytest.skip("the family's attention cannot be replaced (see the not-applicable test)")
    layer = 0 if start == "first" else bundle.model.config.num_hidden_layers - 1
    rows = np.arange(len(context.examples))
    probabilities = context.intervened_probabilities(rows, layer, lambda members: lambda _layer, p: p)
    original = torch.softmax(context.model_pass.logits.double(), dim=-1)
    torch.testing.assert_close(probabilities.double(), original, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("intervention", sorted(INTERVENTIONS))
def test_every_intervention_runs_and_gives_changes_within_their_range(bundle, context, intervention):
    if not editable(bundle):
        pytest.skip("the family's attention cannot be replaced (see the not-applicable test)")
    options = InterventionOptions(permutation_draws=3, adversarial_steps=5)
    values = run_interventions(context, options, [intervention])
    assert values
    for value in values:
        if value.statistic in ("tvd", "jsd") and np.isfinite(value.value):
            assert -1e-9 <= value.value <= 1 + 1e-9


@pytest.mark.parametrize("depth", ["first", "last"])
def test_masking_a_head_equals_zeroing_its_columns_of_the_output_projection(bundle, context, depth):
    if not editable(bundle):
        pytest.skip("the family's attention cannot be replaced (see the not-applicable test)")
    if bundle.model.config.model_type == "albert":
        pytest.skip("ALBERT shares one layer's weights across depths: zeroing them masks the head at every depth")
    layer, head = 0 if depth == "first" else bundle.num_layers - 1, 1
    values = run_interventions(context, InterventionOptions(), ["head_masking"])
    ours = [v.value for v in values if v.layer == layer and v.head == head and v.statistic == "tvd"]
    model = copy.deepcopy(bundle.model)
    hidden = torch.zeros(1, 1, model.config.hidden_size)
    with torch.no_grad():
        _, weight = bundle.adapter.norm_vectors(model, layer, hidden)  # a view of the projection's weight
        weight[:, head] = 0
        logits = torch.stack([own_logits(model, e.input_ids) for e in context.examples])
    expected = tvd(torch.softmax(context.model_pass.logits.double(), -1), torch.softmax(logits, -1))
    np.testing.assert_allclose(ours, expected.numpy(), atol=1e-6)


def test_masking_every_head_of_every_layer_equals_the_forward_with_its_probabilities_zeroed(bundle, context):
    """Post-LN encoders compute the masked layer from its clean attention block (ALBERT's shared layer too)."""
    if not editable(bundle):
        pytest.skip("the family's attention cannot be replaced (see the not-applicable test)")
    values = run_interventions(context, InterventionOptions(), ["head_masking"])
    heads = bundle.num_heads
    rows = np.repeat(np.arange(len(context.examples)), heads)
    masked = torch.as_tensor(np.tile(np.arange(heads), len(context.examples)))
    original = torch.softmax(context.model_pass.logits.double(), -1)[torch.as_tensor(rows)]
    for layer in range(bundle.num_layers):
        edited = context.intervened_probabilities(
            rows, layer, lambda members, layer=layer: head_mask_edit(layer, masked[torch.as_tensor(members)])
        )
        ours = [v.value for v in values if v.layer == layer and v.statistic == "tvd"]  # example-major, then head
        np.testing.assert_allclose(ours, tvd(original, edited).numpy(), atol=1e-6)


VALUE_PROJECTIONS = (".value", ".v_lin", ".v_proj", ".c_attn")
"""Names of the value projections of the tiny families (GPT-2's ``c_attn`` fuses Q, K, V; V is the last third)."""


def value_zeroed_outputs(model: torch.nn.Module, input_ids: np.ndarray, layer: int, token: int) -> torch.Tensor:
    """The model's own ``hidden_states`` with token ``token``'s value vector zeroed in ``layer`` only.

    A hook on every value projection counts the calls (the ``k``-th is depth ``k``, ALBERT's shared
    module included) and zeroes row ``token`` of its output at depth ``layer``, every head at once.
    """
    calls = [0]

    def zero(module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        at, calls[0] = calls[0], calls[0] + 1
        if at != layer:
            return output
        output = output.clone()
        first = 2 * output.shape[-1] // 3 if type(module).__name__ == "Conv1D" else 0
        output[:, token, first:] = 0
        return output

    hooks = [m.register_forward_hook(zero) for n, m in model.named_modules() if n.endswith(VALUE_PROJECTIONS)]
    try:
        with torch.no_grad():
            return torch.stack(
                model(input_ids=torch.from_numpy(input_ids)[None], output_hidden_states=True).hidden_states
            )
    finally:
        for hook in hooks:
            hook.remove()


def test_value_zeroing_maps_equal_the_models_own_forward_with_one_value_vector_zeroed(bundle, context):
    if not editable(bundle):
        with pytest.raises(AuditError, match="value zeroing is not applicable"):
            METHODS["value_zeroing"].compute(context, OPTIONS)
        return
    maps = value_zeroing_maps(context)
    layers = bundle.model.config.num_hidden_layers
    checked = range(layers - 1) if bundle.adapter.causal else range(layers)  # a decoder's last state is final-normed
    row = 1
    example = context.examples[row]
    clean = value_zeroed_outputs(bundle.model, example.input_ids, -1, 0)[:, 0].double()
    for layer in checked:
        expected = np.zeros((example.length, example.length))
        for token in range(example.length):
            zeroed = value_zeroed_outputs(bundle.model, example.input_ids, layer, token)[layer + 1, 0].double()
            expected[:, token] = 1 - torch.nn.functional.cosine_similarity(zeroed, clean[layer + 1], dim=-1).numpy()
        np.testing.assert_allclose(maps[row][layer].numpy(), expected, atol=2e-5)
        assert expected.max() > 1e-4
    positions = context.classification_positions.tolist()
    records = METHODS["value_zeroing"].compute(context, OPTIONS)  # the last layer computed at c alone
    for record, matrices, position in zip(records, maps, positions, strict=True):
        assert record.scores.sum() == pytest.approx(1.0, abs=1e-9)
        assert (record.scores >= 0).all()
        np.testing.assert_allclose(record.scores, value_zeroing_rollout(matrices)[position].numpy(), atol=1e-6)


def test_interventions_on_deberta_are_refused_with_the_reason(bundle, context):
    if editable(bundle):
        pytest.skip("only families whose attention cannot be replaced")
    with pytest.raises(AuditError, match="disentangled attention"):
        run_interventions(context, InterventionOptions(), ["uniform"])


def test_heatmap_cells_read_as_the_text_without_tokenizer_artefacts(bundle, examples):
    for example in examples:
        tokens = pd.DataFrame(example.offsets, columns=["char_start", "char_end"])
        cells = heatmaps.cells(example.text, tokens, np.ones(example.length))
        shown = "".join((" " if cell.space_before else "") + cell.text for cell in cells)
        assert not any(marker in cell.text for cell in cells for marker in ("##", "Ġ", "▁", "Ċ"))
        assert " ".join(shown.split()) == " ".join(example.text.split())


def test_the_classification_position_is_the_last_real_token_under_left_padding_too():
    from tasks.model.adapters import adapter_for

    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert adapter_for("llama").classification_positions(mask).tolist() == [2, 4, 4]
    assert adapter_for("gpt2").classification_positions(mask).tolist() == [2, 4, 4]
    assert adapter_for("bert").classification_positions(mask).tolist() == [0, 0, 0]


def test_a_deberta_run_leaves_out_the_interventions_records_why_and_the_report_says_so(tmp_path):
    """The not-applicable path end to end, without Prefect: plan, compute, store, report."""
    from tasks import store
    from tasks.config import AuditConfig
    from tasks.pipeline.batch import audit_batch
    from tasks.pipeline.plan import plan_run
    from tasks.report import build_context
    from tasks.verdict.resolve import resolve

    folder = save_tiny(FAMILIES["deberta-v2"], tmp_path / "deberta")
    sample = SAMPLES / "handmade-reviews.csv"
    config = AuditConfig.model_validate(
        {
            "model": {"name_or_path": str(folder)},
            "data": {"dataset": str(sample), "id_column": "id", "label_column": None, "limit": 4},
            "methods": {"ig_steps": 8, "ig_rule": "gausslegendre"},
        }
    )
    config = resolve(config)  # the default methods and interventions, named
    plan = plan_run(config)
    # Value Zeroing edits the attention inside the forward pass; DecompX does not cover DeBERTa's convolution
    inapplicable_methods = {"value_zeroing", "decompx"}
    inapplicable = set(config.interventions.interventions) | inapplicable_methods
    assert {item.name for item in plan.not_applicable} == inapplicable
    assert plan.config.interventions.interventions == ()
    assert set(plan.config.methods.methods) == set(config.methods.methods) - inapplicable_methods
    bundle = load_model(plan.config.model)
    result = audit_batch(bundle, plan.examples, plan.config.methods, plan.config.interventions, plan.config.execution)
    assert {record.method for record in result.scores} == set(config.methods.methods) - inapplicable_methods
    db = tmp_path / "audit.duckdb"
    with store.connect(db) as connection:
        store.register_run(connection, plan.run_id, plan.config.model_dump(mode="json"), plan.manifest)
        store.write_not_applicable(connection, plan.run_id, plan.not_applicable)
        store.write_not_applicable(connection, plan.run_id, plan.not_applicable)  # replaced, never duplicated
        store.write_batch(connection, plan.run_id, result, bundle.labels)
        stored = store.read_table(connection, "not_applicable", plan.run_id)
        assert sorted(stored["name"]) == sorted(inapplicable)
        context = build_context(connection, plan.run_id, generated_at=datetime(2026, 1, 1))
    assert sorted(row["name"] for row in context.not_applicable) == sorted(inapplicable)
    sentence = next(s for s in context.summary if s.startswith("Not applicable to this model"))
    assert "uniform (intervention)" in sentence and "disentangled attention" in sentence


def test_the_sanity_cascade_randomises_every_family_from_the_head_down(bundle, examples):
    from tasks.evaluate.sanity import sanity_rows

    rows = sanity_rows(bundle, examples[:2], ["attention_last", "saliency"], OPTIONS, 0, 4096)
    shared = bundle.model.config.model_type == "albert"  # one layer group shared by every depth
    stages = 1 + (1 if shared else bundle.model.config.num_hidden_layers)
    assert sorted(rows["stage"].unique()) == list(range(stages))  # stage 0: the head alone
    assert rows.loc[rows["stage"] == 0, "randomised"].unique().tolist() == ["classification head"]
    assert rows["spearman"].between(-1, 1).all()
