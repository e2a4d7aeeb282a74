"""DecompX: the per-token logits sum to the model's logit, and a one-layer case computed token by token."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks.config import MethodOptions, ModelSpec
from tasks.errors import AuditError
from tasks.explain import decompx as module
from tasks.explain.decompx import decompose, decompx, position_chunks, split_bias, unsupported
from tasks.explain.passes import BatchContext
from tasks.model.adapters import ADAPTERS
from tasks.model.loading import load_model
from tests.conftest import TEXTS, encode, save_tiny_classifier

OPTIONS = MethodOptions()
LOGIT_TOLERANCE = 1e-4
"""``|Σ_k z^(k) − z|``: the decomposition is float64, the model's own pass float32 (logits of size ~5)."""


def _decomposition(context: BatchContext, row: int):
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
        )


def test_the_per_token_logits_sum_to_the_models_logits_of_every_class(context):
    for row in range(len(context.examples)):
        result = _decomposition(context, row)
        np.testing.assert_allclose(
            result.logits.sum(dim=0).numpy(), context.model_pass.logits[row].double().numpy(), atol=LOGIT_TOLERANCE
        )


def test_the_decomposition_reconstructs_every_hidden_state(context):
    """Every layer's state at every position; the last layer's at ``c``, the only position it computes."""
    for row, example in enumerate(context.examples):
        result = _decomposition(context, row)
        *states, last = result.states
        for state, hidden in zip(states, context.model_pass.hidden_states[:-1], strict=True):
            np.testing.assert_allclose(state.numpy(), hidden[row, : example.length].double().numpy(), atol=1e-4)
        position = int(context.classification_positions[row])
        top = context.model_pass.hidden_states[-1][row, position : position + 1].double().numpy()
        np.testing.assert_allclose(last.numpy(), top, atol=1e-4)


def test_scores_are_the_target_class_column_and_change_with_the_input(context):
    records = decompx(context, OPTIONS)
    targets = context.targets.tolist()
    for row, record in enumerate(records):
        assert record.scores.shape == (context.examples[row].length,)
        assert record.scores.sum() == pytest.approx(float(context.model_pass.logits[row, targets[row]]), abs=1e-4)
        assert np.ptp(record.scores) > 1e-3  # the tokens' parts differ


def test_a_padded_batch_scores_each_example_as_alone(tiny_bundle, examples, context):
    together = {r.example_id: r.scores for r in decompx(context, OPTIONS)}
    for example in examples:
        (alone,) = decompx(BatchContext(tiny_bundle, [example], need_gradients=False), OPTIONS)
        np.testing.assert_allclose(together[example.example_id], alone.scores, rtol=1e-4, atol=1e-6)  # float32 pass


def test_the_feed_forward_runs_under_the_token_budget_with_the_same_result(tiny_bundle, examples, monkeypatch):
    widest = max(e.length for e in examples)
    seen: list[tuple[int, int]] = []
    original = module.feed_forward

    def spy(parts, layer):
        seen.append((parts.shape[0], parts.shape[1]))
        return original(parts, layer)

    monkeypatch.setattr(module, "feed_forward", spy)
    small = decompx(BatchContext(tiny_bundle, examples, token_budget=2 * widest, need_gradients=False), OPTIONS)
    assert seen and all(rows * tokens <= 2 * widest for rows, tokens in seen)
    assert any(rows < tokens for rows, tokens in seen)  # it really chunked
    large = decompx(BatchContext(tiny_bundle, examples, token_budget=10**6, need_gradients=False), OPTIONS)
    for a, b in zip(small, large, strict=True):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-10, atol=1e-12)


def test_position_chunks_cover_every_position_once_under_the_budget():
    assert position_chunks(5, 10) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert position_chunks(5, 3) == [slice(i, i + 1) for i in range(5)]  # at least one position each
    assert position_chunks(4, 100) == [slice(0, 4)]


def test_a_bias_is_shared_by_the_absolute_dot_product_and_kept_whole():
    parts = torch.tensor([[1.0, 0.0], [0.0, -2.0], [0.0, 0.0]], dtype=torch.float64)
    bias = torch.tensor([3.0, 1.0], dtype=torch.float64)
    # |x^(k)·b| = 3, 2, 0: shares 3/5, 2/5, 0
    expected = torch.tensor([[1 + 1.8, 0.6], [1.2, -2 + 0.4], [0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(split_bias(parts, bias), expected)
    zero = torch.zeros(2, 2, dtype=torch.float64)
    torch.testing.assert_close(split_bias(zero, bias), torch.tensor([[1.5, 0.5], [1.5, 0.5]], dtype=torch.float64))


# --- one layer, token by token, in numpy -----------------------------------------------------------


def _share(vectors: list[np.ndarray], bias: np.ndarray) -> list[np.ndarray]:
    weights = [abs(float(np.dot(v, bias))) for v in vectors]
    total = sum(weights)
    return [v + (w / total if total > 0 else 1 / len(vectors)) * bias for v, w in zip(vectors, weights, strict=True)]


def _norm(vectors: list[np.ndarray], gamma: np.ndarray, beta: np.ndarray, eps: float) -> list[np.ndarray]:
    sigma = np.sqrt(np.var(sum(vectors)) + eps)
    return _share([gamma * (v - v.mean()) / sigma for v in vectors], beta)


def _gelu(u: np.ndarray) -> np.ndarray:
    from math import erf, sqrt

    return np.array([0.5 * x * (1 + erf(x / sqrt(2))) for x in u])


def _one_layer_by_hand(bundle, example, attention: np.ndarray, embedded: np.ndarray) -> np.ndarray:
    """Token ``k``'s logits ``[T, C]`` of a one-layer BERT, with a loop per token and per position."""
    p = {name: value.detach().double().numpy() for name, value in bundle.model.named_parameters()}
    layer = "bert.encoder.layer.0."
    heads, length = attention.shape[0], example.length
    size = embedded.shape[1] // heads
    eps = bundle.model.config.layer_norm_eps
    parts = [[embedded[i] if i == k else np.zeros_like(embedded[i]) for k in range(length)] for i in range(length)]
    out = []
    for i in range(length):
        mixed = []
        for k in range(length):
            vector = np.zeros(embedded.shape[1])
            for h in range(heads):
                for j in range(length):
                    value = p[layer + "attention.self.value.weight"][h * size : (h + 1) * size] @ parts[j][k]
                    vector[h * size : (h + 1) * size] += attention[h, i, j] * value
            mixed.append(p[layer + "attention.output.dense.weight"] @ vector)
        bias = p[layer + "attention.output.dense.weight"] @ p[layer + "attention.self.value.bias"]
        mixed = _share(mixed, bias + p[layer + "attention.output.dense.bias"])
        norm = layer + "attention.output.LayerNorm."
        y = _norm([parts[i][k] + mixed[k] for k in range(length)], p[norm + "weight"], p[norm + "bias"], eps)
        u = _share([p[layer + "intermediate.dense.weight"] @ v for v in y], p[layer + "intermediate.dense.bias"])
        whole = sum(u)
        ratio = np.where(whole == 0, 0.0, _gelu(whole) / np.where(whole == 0, 1.0, whole))
        f = _share([p[layer + "output.dense.weight"] @ (v * ratio) for v in u], p[layer + "output.dense.bias"])
        norm = layer + "output.LayerNorm."
        out.append(_norm([y[k] + f[k] for k in range(length)], p[norm + "weight"], p[norm + "bias"], eps))
    pooled = _share([p["bert.pooler.dense.weight"] @ v for v in out[0]], p["bert.pooler.dense.bias"])
    whole = sum(pooled)
    pooled = [v * np.tanh(whole) / whole for v in pooled]
    return np.stack(_share([p["classifier.weight"] @ v for v in pooled], p["classifier.bias"]))


def test_one_layer_matches_a_token_by_token_computation(tmp_path):
    bundle = load_model(ModelSpec(name_or_path=str(save_tiny_classifier(tmp_path, layers=1, seed=3))))
    examples = encode(bundle, TEXTS[:2])
    context = BatchContext(bundle, examples, need_gradients=False)
    records = decompx(context, OPTIONS)
    for row, example in enumerate(examples):
        length = example.length
        attention = context.model_pass.attentions[0][row, :, :length, :length].double().numpy()
        embedded = context.model_pass.hidden_states[0][row, :length].double().numpy()
        by_hand = _one_layer_by_hand(bundle, example, attention, embedded)
        np.testing.assert_allclose(by_hand.sum(axis=0), context.model_pass.logits[row].double().numpy(), atol=1e-4)
        np.testing.assert_allclose(records[row].scores, by_hand[:, int(context.targets[row])], rtol=1e-8, atol=1e-10)


# --- families it does not apply to ---------------------------------------------------------------


@pytest.mark.parametrize("adapter", [a for a in ADAPTERS if not a.supports_decomposition], ids=lambda a: a.family)
def test_a_family_without_a_decomposition_says_why(adapter, tiny_bundle):
    reason = unsupported(adapter)
    assert reason.startswith(adapter.family) and "DecompX" in reason
    with pytest.raises(AuditError, match="not applicable"):
        adapter.decomposable(tiny_bundle.model)
