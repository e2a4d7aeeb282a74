"""DecompX on every family it is wired for: the per-token logits sum to the model's logit, a padded batch
equals one example at a time, and a computation token by token in numpy gives the same scores."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from math import erf, pi, sqrt

import numpy as np
import pytest
import torch

from tasks.config import MethodOptions, ModelSpec
from tasks.data.units import INDEX, word_index
from tasks.errors import AuditError
from tasks.explain import decompx as module
from tasks.explain.decompx import decompose, decompx, linear, position_chunks, split_bias, unsupported
from tasks.explain.passes import BatchContext
from tasks.model.adapters import ADAPTERS
from tasks.model.bundle import ModelBundle
from tasks.model.loading import load_model
from tests.conftest import TEXTS, encode
from tests.tiny_families import FAMILIES, save_tiny

OPTIONS = MethodOptions()
LOGIT_TOLERANCE = 1e-4
"""``|Σ_k z^(k) − z|``: the model's own pass is float32 (logits of size ~5), and so are the decomposition's
products (``float32_products_tolerance``: under 1e-5 on these models); sums and bias shares are float64."""
DECOMPOSABLE = ("bert", "roberta", "electra", "distilbert", "albert")
"""The layouts DecompX is wired for (XLM-R and CamemBERT are RoBERTa's), each on its family's tiny model."""


@pytest.fixture(scope="module", params=DECOMPOSABLE)
def bundle(request, tmp_path_factory) -> ModelBundle:
    folder = tmp_path_factory.mktemp(request.param)
    return load_model(ModelSpec(name_or_path=str(save_tiny(FAMILIES[request.param], folder))))


@pytest.fixture(scope="module")
def family_examples(bundle):
    return encode(bundle, TEXTS)


@pytest.fixture(scope="module")
def family_context(bundle, family_examples) -> BatchContext:
    return BatchContext(bundle, family_examples, need_gradients=False)


def _decomposition(context: BatchContext, row: int, unit: torch.Tensor | None = None):
    bundle = context.bundle
    length = context.examples[row].length
    attentions = [a[row, :, :length, :length] for a in context.model_pass.attentions]
    with torch.inference_mode():
        return decompose(
            bundle.adapter.decomposable(bundle.model),
            context.model_pass.hidden_states[0][row, :length],
            attentions,
            int(context.classification_positions[row]),
            context.token_budget,
            unit,
        )


def test_the_per_token_logits_sum_to_the_models_logits_of_every_class(family_context):
    for row in range(len(family_context.examples)):
        result = _decomposition(family_context, row)
        np.testing.assert_allclose(
            result.logits.sum(dim=0).numpy(),
            family_context.model_pass.logits[row].double().numpy(),
            atol=LOGIT_TOLERANCE,
        )


def test_the_decomposition_reconstructs_every_hidden_state(family_context):
    """Every layer's state at every position; the last layer's at ``c``, the only position it computes."""
    for row, example in enumerate(family_context.examples):
        result = _decomposition(family_context, row)
        *states, last = result.states
        for state, hidden in zip(states, family_context.model_pass.hidden_states[:-1], strict=True):
            np.testing.assert_allclose(state.numpy(), hidden[row, : example.length].double().numpy(), atol=1e-4)
        position = int(family_context.classification_positions[row])
        top = family_context.model_pass.hidden_states[-1][row, position : position + 1].double().numpy()
        np.testing.assert_allclose(last.numpy(), top, atol=1e-4)


def test_scores_are_the_target_class_column_and_change_with_the_input(family_context):
    records = decompx(family_context, OPTIONS)
    targets = family_context.targets.tolist()
    for row, record in enumerate(records):
        assert record.scores.shape == (family_context.examples[row].length,)
        assert record.scores.sum() == pytest.approx(
            float(family_context.model_pass.logits[row, targets[row]]), abs=1e-4
        )
        assert np.ptp(record.scores) > 1e-3  # the tokens' parts differ


def test_a_padded_batch_scores_each_example_as_alone(bundle, family_examples, family_context):
    together = {r.example_id: r.scores for r in decompx(family_context, OPTIONS)}
    for example in family_examples:
        (alone,) = decompx(BatchContext(bundle, [example], need_gradients=False), OPTIONS)
        np.testing.assert_allclose(together[example.example_id], alone.scores, rtol=1e-4, atol=1e-6)  # float32 pass


@pytest.mark.parametrize("units", ["token", "sentence"])
def test_the_feed_forward_runs_under_the_token_budget_with_the_same_result(tiny_bundle, examples, monkeypatch, units):
    """``n`` positions of ``K`` parts per chunk, ``n · K`` within the budget: units (fewer parts) take more of them."""
    longest = max(examples, key=lambda e: e.length)
    widest, examples = longest.length, [longest]
    options = MethodOptions(units=units)
    seen: list[tuple[int, int]] = []
    original = module.feed_forward

    def spy(parts, layer):
        seen.append((parts.shape[0], parts.shape[1]))
        return original(parts, layer)

    monkeypatch.setattr(module, "feed_forward", spy)
    small = decompx(BatchContext(tiny_bundle, examples, token_budget=2 * widest, need_gradients=False), options)
    assert seen and all(rows * parts <= 2 * widest for rows, parts in seen)
    if units == "token":
        assert any(rows < parts for rows, parts in seen)  # it really chunked
    else:
        assert any(rows > 2 for rows, _ in seen)  # more than budget // T = 2 positions: the chunk counts parts
    large = decompx(BatchContext(tiny_bundle, examples, token_budget=10**6, need_gradients=False), options)
    for a, b in zip(small, large, strict=True):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-10, atol=1e-12)


# --- units: the parts are words or sentences ----------------------------------------------------------


def _without_biases(bundle: ModelBundle) -> ModelBundle:
    """A copy of ``bundle`` whose every bias (linear maps' and layer norms' ``β``) is 0."""
    model = copy.deepcopy(bundle.model)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
    return replace(bundle, model=model)


def test_one_unit_per_token_gives_the_token_decomposition(family_context):
    """The same numbers, to the float32 products' rounding (the parts are laid out differently in memory)."""
    for row, example in enumerate(family_context.examples):
        tokens = _decomposition(family_context, row)
        as_units = _decomposition(family_context, row, unit=torch.arange(example.length))
        torch.testing.assert_close(as_units.logits, tokens.logits, rtol=0, atol=1e-6)


def test_without_biases_a_units_part_is_the_sum_of_its_tokens_parts(bundle, family_examples):
    """Every step but the bias shares is linear in the parts, so with no biases grouping commutes with it."""
    context = BatchContext(_without_biases(bundle), family_examples, need_gradients=False)
    for row, example in enumerate(family_examples):
        unit = word_index(example)
        tokens = _decomposition(context, row).logits.numpy()
        units = _decomposition(context, row, unit=torch.as_tensor(unit)).logits.numpy()
        summed = np.stack([tokens[unit == u].sum(axis=0) for u in range(unit.max() + 1)])
        np.testing.assert_allclose(units, summed, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("units", ["word", "sentence"])
def test_in_units_each_token_holds_an_equal_share_of_its_units_part(family_context, units):
    records = decompx(family_context, MethodOptions(units=units))
    targets = family_context.targets.tolist()
    for row, (example, record) in enumerate(zip(family_context.examples, records, strict=True)):
        unit = INDEX[units](example)
        part = _decomposition(family_context, row, unit=torch.as_tensor(unit)).logits[:, targets[row]].numpy()
        for u in range(unit.max() + 1):
            shares = record.scores[unit == u]
            np.testing.assert_allclose(shares, part[u] / len(shares), rtol=1e-12, atol=1e-12)
        logit = float(family_context.model_pass.logits[row, targets[row]])
        assert record.scores.sum() == pytest.approx(logit, abs=1e-4)
    assert any(np.unique(INDEX[units](e)).size < e.length for e in family_context.examples)  # units group tokens


def test_position_chunks_cover_every_position_once_under_the_budget():
    assert position_chunks(5, 5, 10) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert position_chunks(5, 5, 3) == [slice(i, i + 1) for i in range(5)]  # at least one position each
    assert position_chunks(4, 4, 100) == [slice(0, 4)]
    assert position_chunks(6, 2, 6) == [slice(0, 3), slice(3, 6)]  # sized by the parts, not the positions


def test_a_bias_is_shared_by_the_absolute_dot_product_and_kept_whole():
    parts = torch.tensor([[1.0, 0.0], [0.0, -2.0], [0.0, 0.0]], dtype=torch.float64)
    bias = torch.tensor([3.0, 1.0], dtype=torch.float64)
    # |x^(k)·b| = 3, 2, 0: shares 3/5, 2/5, 0
    expected = torch.tensor([[1 + 1.8, 0.6], [1.2, -2 + 0.4], [0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(split_bias(parts, bias), expected)
    zero = torch.zeros(2, 2, dtype=torch.float64)
    torch.testing.assert_close(split_bias(zero, bias), torch.tensor([[1.5, 0.5], [1.5, 0.5]], dtype=torch.float64))


# --- every layer, token by token, in numpy ---------------------------------------------------------


@dataclass(frozen=True)
class ByHand:
    """A family's parameter names, read here from the model's own ``named_parameters`` (not the adapter).

    ``layer`` is the prefix of layer ``{i}`` (ALBERT: the one shared layer, whatever ``i``); ``head`` the
    first linear map, its activation and the second; ``projection`` the embedding projection E to D.
    """

    layer: str
    value: str
    output: str
    norm1: str
    w1: str
    w2: str
    norm2: str
    head: tuple[str, str, str]
    projection: str | None = None


_BERT = dict(value="attention.self.value", output="attention.output.dense", norm1="attention.output.LayerNorm",
             w1="intermediate.dense", w2="output.dense", norm2="output.LayerNorm")  # fmt: skip
BY_HAND = {
    "bert": ByHand("bert.encoder.layer.{i}.", **_BERT, head=("bert.pooler.dense", "tanh", "classifier")),
    "roberta": ByHand("roberta.encoder.layer.{i}.", **_BERT, head=("classifier.dense", "tanh", "classifier.out_proj")),
    "electra": ByHand("electra.encoder.layer.{i}.", **_BERT, head=("classifier.dense", "gelu", "classifier.out_proj"),
                      projection="electra.embeddings_project"),
    "distilbert": ByHand("distilbert.transformer.layer.{i}.", "attention.v_lin", "attention.out_lin", "sa_layer_norm",
                         "ffn.lin1", "ffn.lin2", "output_layer_norm", head=("pre_classifier", "relu", "classifier")),
    "albert": ByHand("albert.encoder.albert_layer_groups.0.albert_layers.0.", "attention.value", "attention.dense",
                     "attention.LayerNorm", "ffn", "ffn_output", "full_layer_layer_norm",
                     head=("albert.pooler", "tanh", "classifier"),
                     projection="albert.encoder.embedding_hidden_mapping_in"),
}  # fmt: skip


def _share(vectors: list[np.ndarray], bias: np.ndarray) -> list[np.ndarray]:
    weights = [abs(float(np.dot(v, bias))) for v in vectors]
    total = sum(weights)
    return [v + (w / total if total > 0 else 1 / len(vectors)) * bias for v, w in zip(vectors, weights, strict=True)]


def _norm(vectors: list[np.ndarray], gamma: np.ndarray, beta: np.ndarray, eps: float) -> list[np.ndarray]:
    sigma = np.sqrt(np.var(sum(vectors)) + eps)
    return _share([gamma * (v - v.mean()) / sigma for v in vectors], beta)


ACTIVATIONS = {
    "gelu": lambda u: np.array([0.5 * x * (1 + erf(x / sqrt(2))) for x in u]),
    "gelu_new": lambda u: 0.5 * u * (1 + np.tanh(sqrt(2 / pi) * (u + 0.044715 * u**3))),
    "tanh": np.tanh,
    "relu": lambda u: np.maximum(u, 0.0),
}


def _through(vectors: list[np.ndarray], name: str) -> list[np.ndarray]:
    """An activation linearised through the origin: ``v ⊙ act(u) / u`` with ``u = Σ v`` (0 where ``u = 0``)."""
    whole = sum(vectors)
    ratio = np.where(whole == 0, 0.0, ACTIVATIONS[name](whole) / np.where(whole == 0, 1.0, whole))
    return [v * ratio for v in vectors]


def _by_hand(bundle: ModelBundle, names: ByHand, start: np.ndarray, attentions: list[np.ndarray]) -> np.ndarray:
    """Token ``k``'s logits ``[T, C]``, with a loop per token and per position, from the embedding output.

    ``start`` is the embeddings module's output ``[T, E]``; ``attentions`` each layer's ``[H, T, T]``.
    """
    model = bundle.model
    p = {name: value.detach().double().numpy() for name, value in model.named_parameters()}
    config = model.config
    act = getattr(config, "hidden_act", None) or config.activation
    length = start.shape[0]
    parts = [[start[i] if i == k else np.zeros_like(start[i]) for k in range(length)] for i in range(length)]
    if names.projection is not None:  # E to D, position-wise
        weight, bias = p[names.projection + ".weight"], p[names.projection + ".bias"]
        parts = [_share([weight @ v for v in row], bias) for row in parts]
    for depth, attention in enumerate(attentions):
        layer = names.layer.format(i=depth)
        heads, size = attention.shape[0], p[layer + names.value + ".weight"].shape[0] // attention.shape[0]

        def eps(norm: str) -> float:
            return model.get_submodule(layer + norm).eps  # noqa: B023

        out = []
        for i in range(length):
            mixed = []
            for k in range(length):
                vector = np.zeros(heads * size)
                for h in range(heads):
                    for j in range(length):
                        value = p[layer + names.value + ".weight"][h * size : (h + 1) * size] @ parts[j][k]
                        vector[h * size : (h + 1) * size] += attention[h, i, j] * value
                mixed.append(p[layer + names.output + ".weight"] @ vector)
            bias = p[layer + names.output + ".weight"] @ p[layer + names.value + ".bias"]
            mixed = _share(mixed, bias + p[layer + names.output + ".bias"])
            norm = layer + names.norm1
            y = _norm(
                [parts[i][k] + mixed[k] for k in range(length)],
                p[norm + ".weight"],
                p[norm + ".bias"],
                eps(names.norm1),
            )
            u = _through(_share([p[layer + names.w1 + ".weight"] @ v for v in y], p[layer + names.w1 + ".bias"]), act)
            f = _share([p[layer + names.w2 + ".weight"] @ v for v in u], p[layer + names.w2 + ".bias"])
            norm = layer + names.norm2
            out.append(
                _norm([y[k] + f[k] for k in range(length)], p[norm + ".weight"], p[norm + ".bias"], eps(names.norm2))
            )
        parts = out
    first, activation, second = names.head
    pooled = _through(_share([p[first + ".weight"] @ v for v in parts[0]], p[first + ".bias"]), activation)
    return np.stack(_share([p[second + ".weight"] @ v for v in pooled], p[second + ".bias"]))


def test_every_layer_and_the_head_match_a_token_by_token_computation(bundle):
    examples = encode(bundle, TEXTS[:2])
    context = BatchContext(bundle, examples, need_gradients=False)
    records = decompx(context, OPTIONS)
    embeddings = bundle.model.get_submodule(f"{bundle.adapter.base}.embeddings")
    for row, example in enumerate(examples):
        length = example.length
        with torch.no_grad():
            start = embeddings(input_ids=torch.from_numpy(example.input_ids)[None])[0].double().numpy()
        attentions = [a[row, :, :length, :length].double().numpy() for a in context.model_pass.attentions]
        names = BY_HAND[bundle.model.config.model_type]
        by_hand = _by_hand(bundle, names, start, attentions)
        np.testing.assert_allclose(by_hand.sum(axis=0), context.model_pass.logits[row].double().numpy(), atol=1e-4)
        expected = by_hand[:, int(context.targets[row])]
        # DecompX starts from h⁰ as the model computed it, in float32; by hand, a projection E to D is in float64
        rtol = 0.0 if names.projection is None else 1e-5
        gap = np.abs(records[row].scores - expected).max()
        assert gap <= float32_products_tolerance(bundle, expected) + rtol * np.abs(expected).max()


def float32_products_tolerance(bundle: ModelBundle, scores: np.ndarray) -> float:
    """How far float32 products may move the scores from an all-float64 computation: ``P · √n · u · max_k |z^(k)|``.

    ``P = 4L + S`` products lie on the way from the embeddings to the logits (values, output projection,
    ``W1``, ``W2`` of each layer; the ``S`` linear stages of the head), each a sum of at most ``n = D_ff``
    terms rounded in float32 (``u = 2⁻²⁴``): error about ``√n · u`` relative to the magnitude of the terms
    (Higham & Mary 2019, probabilistic rounding-error bound). The errors enter where the parts are of the
    size of the scores and add along the depth. On the default model (L = 6, D_ff = 1536) this is 1014 u;
    measured: at most 11 u · max |z^(k)| on its first 64 test examples.
    """
    model = bundle.adapter.decomposable(bundle.model)
    products = 4 * len(model.layers) + sum(stage.linear is not None for stage in model.head)
    widest = max(layer.intermediate.out_features for layer in model.layers)
    return products * sqrt(widest) * 2.0**-24 * float(np.abs(scores).max())


@pytest.mark.parametrize("family", ["albert", "electra"])
def test_the_embedding_projection_keeps_each_tokens_state_its_own(family, tmp_path):
    """Carried through the projection E to D, ``δ_ik e_i`` becomes ``δ_ik h⁰_i``, where DecompX starts."""
    bundle = load_model(ModelSpec(name_or_path=str(save_tiny(FAMILIES[family], tmp_path))))
    (example,) = encode(bundle, TEXTS[2:3])
    embeddings = bundle.model.get_submodule(f"{bundle.adapter.base}.embeddings")
    projection = bundle.model.get_submodule(str(BY_HAND[family].projection))
    assert isinstance(projection, torch.nn.Linear)
    with torch.no_grad():
        embedded = embeddings(input_ids=torch.from_numpy(example.input_ids)[None])[0].double()  # [T, E]
        carried = linear(torch.diag_embed(embedded.T).permute(1, 2, 0), projection)
        entering = BatchContext(bundle, [example], need_gradients=False).model_pass.hidden_states[0][0].double()
    expected = torch.diag_embed(entering.T).permute(1, 2, 0)  # [T(i), K, D]: δ_ik h⁰_i
    torch.testing.assert_close(carried, expected, atol=1e-6, rtol=1e-6)


# --- families it does not apply to ---------------------------------------------------------------


@pytest.mark.parametrize("adapter", [a for a in ADAPTERS if unsupported(a)], ids=lambda a: a.family)
def test_a_family_without_a_decomposition_says_why(adapter, tiny_bundle):
    reason = unsupported(adapter)
    assert reason.startswith(adapter.family) and "DecompX" in reason
    with pytest.raises(AuditError, match="not applicable"):
        adapter.decomposable(tiny_bundle.model)
