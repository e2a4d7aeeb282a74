"""Attention flow (Abnar & Zuidema 2020): max-flow in the layered attention graph."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from tasks.config import MethodOptions
from tasks.explain.attention import residual_attention
from tasks.explain.flow import CAPACITY_SCALE, attention_flow, flow
from tasks.explain.passes import BatchContext
from tests.conftest import encode

TOLERANCE = 200 / CAPACITY_SCALE  # integer capacities: a rounding error per edge of the cut


def random_residual(seed: int, layers: int, width: int) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    attention = torch.softmax(torch.randn(layers, 1, 3, width, width, generator=generator), dim=-1)
    return np.stack([residual_attention(attention[layer]).numpy()[0] for layer in range(layers)]).astype(np.float64)


def networkx_flow(residual: np.ndarray, position: int) -> np.ndarray:
    """The same definition, computed independently with networkx on real-valued capacities."""
    layers, width, _ = residual.shape
    graph = nx.DiGraph()
    for layer in range(layers):
        for query in range(width):
            for key in range(width):
                graph.add_edge((layer, key), (layer + 1, query), capacity=float(residual[layer, query, key]))
    return np.array([nx.maximum_flow_value(graph, (0, j), (layers, position)) for j in range(width)])


def test_one_layer_flow_is_the_residual_attention_weight():
    residual = random_residual(0, 1, 6)
    np.testing.assert_allclose(attention_flow(residual, 0), residual[0, 0], atol=TOLERANCE)


@pytest.mark.parametrize(("seed", "layers", "width"), [(1, 2, 4), (2, 3, 5), (3, 4, 7)])
def test_flow_matches_networkx(seed, layers, width):
    residual = random_residual(seed, layers, width)
    np.testing.assert_allclose(attention_flow(residual, 0), networkx_flow(residual, 0), atol=TOLERANCE)


def test_a_hand_worked_two_layer_graph():
    """Layer 1 mixes evenly; layer 2 is the identity, so only paths through position 0 reach it."""
    residual = np.array([[[0.5, 0.5], [0.5, 0.5]], [[1.0, 0.0], [0.0, 1.0]]])
    np.testing.assert_allclose(attention_flow(residual, 0), [0.5, 0.5], atol=TOLERANCE)


def test_flow_values_lie_between_zero_and_one():
    values = attention_flow(random_residual(4, 3, 8), 0)
    assert np.all(values >= 0) and np.all(values <= 1 + TOLERANCE)


def test_inputs_over_the_length_bound_get_no_flow_scores(tiny_bundle):
    examples = encode(tiny_bundle, ["short one", "a considerably longer input that passes the bound we set here"])
    context = BatchContext(tiny_bundle, examples, need_gradients=False)
    records = flow(context, MethodOptions(flow_max_tokens=6))
    assert [r.example_id for r in records] == ["0"]


def test_flow_of_a_padded_batch_equals_one_example_at_a_time(tiny_bundle, examples):
    together = flow(BatchContext(tiny_bundle, examples, need_gradients=False), MethodOptions())
    for row, example in enumerate(examples):
        alone = flow(BatchContext(tiny_bundle, [example], need_gradients=False), MethodOptions())[0]
        np.testing.assert_allclose(together[row].scores, alone.scores, atol=TOLERANCE)
