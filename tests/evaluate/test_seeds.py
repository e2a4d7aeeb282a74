"""The seed baseline's numbers: distances against a hand computation, identical seeds, another seed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.config import MethodOptions, ModelSpec
from tasks.evaluate.seeds import attention_distances, compared_methods, seed_baseline
from tasks.model.bundle import ModelBundle
from tasks.model.loading import load_model
from tests.conftest import TEXTS, encode, save_tiny_classifier

METHODS = ("attention_last", "saliency", "leave_one_out", "random")


@pytest.fixture(scope="module")
def other_seed(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    """The tiny classifier's architecture, tokenizer and labels with weights drawn from another seed."""
    folder = save_tiny_classifier(tmp_path_factory.mktemp("tiny-bert-seed-1"), seed=1)
    return load_model(ModelSpec(name_or_path=str(folder)))


def test_attention_distances_match_a_hand_computation() -> None:
    # Head 0: p = (1/2, 1/2, 0), q = (0, 1/2, 1/2); m = (1/4, 1/2, 1/4).
    #   KL(p‖m) = 1/2·log2(2) + 1/2·log2(1) = 1/2, KL(q‖m) = 1/2, so JSD = 1/2; TVD = ½(1/2 + 0 + 1/2) = 1/2.
    # Head 1: identical rows: JSD = TVD = 0. Means over the two heads: JSD 1/4, TVD 1/4.
    a = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    b = np.array([[0.0, 0.5, 0.5], [0.2, 0.3, 0.5]])
    jsd, tvd = attention_distances(a, b)
    assert jsd == pytest.approx(0.25) and tvd == pytest.approx(0.25)


def test_attention_distances_are_symmetric_and_bounded_by_one_bit() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.dirichlet(np.ones(7), size=4), rng.dirichlet(np.ones(7), size=4)
    assert attention_distances(a, b) == pytest.approx(attention_distances(b, a))
    disjoint = attention_distances(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    assert disjoint == pytest.approx((1.0, 1.0))


def test_a_seed_identical_to_the_audited_model_gives_distance_0_and_tau_1(tiny_bundle: ModelBundle) -> None:
    examples = encode(tiny_bundle, TEXTS)
    told: list[tuple[int, int]] = []
    distances, agreement = seed_baseline(
        tiny_bundle,
        [("same", tiny_bundle)],
        examples,
        METHODS,
        MethodOptions(),
        (-1, 0),
        batch_size=2,
        token_budget=512,
        progress=lambda done, total, what: told.append((done, total)),
    )
    assert told == [(done, 6) for done in range(1, 7)]  # 3 batches on the audited model, then on the seed model
    assert {d.layer for d in distances} == {0, 1}
    assert len(distances) == len(examples) * 2 * 4
    for row in distances:
        expected = 1.0 if row.statistic == "prediction_kept" else 0.0
        assert row.value == pytest.approx(expected, abs=1e-9), row
    assert {a.method for a in agreement} == {"attention_last", "saliency", "leave_one_out"}  # no random baseline
    defined = [a.kendall_tau for a in agreement if not math.isnan(a.kendall_tau)]
    assert defined and all(tau == pytest.approx(1.0) for tau in defined)


def test_another_seed_moves_attention_and_explanations(tiny_bundle: ModelBundle, other_seed: ModelBundle) -> None:
    assert other_seed.fingerprint != tiny_bundle.fingerprint
    examples = encode(tiny_bundle, TEXTS)
    distances, agreement = seed_baseline(
        tiny_bundle, [("seed-1", other_seed)], examples, METHODS, MethodOptions(), (-1,), batch_size=8, token_budget=512
    )
    jsd = [d.value for d in distances if d.statistic == "attention_jsd"]
    assert len(jsd) == len(examples) and all(0.0 < value <= 1.0 for value in jsd)
    assert all(d.layer == 1 for d in distances)  # -1 resolved to the last of two layers
    taus = [a.kendall_tau for a in agreement if not math.isnan(a.kendall_tau)]
    assert min(taus) < 1.0


def test_the_distances_are_those_of_the_attention_rows_the_adversary_compares(
    tiny_bundle: ModelBundle, other_seed: ModelBundle
) -> None:
    """Independent computation: the models' own forward passes, row 0 ([CLS]) of the last layer, mean over heads."""
    import torch

    examples = encode(tiny_bundle, TEXTS[:2])
    distances, _ = seed_baseline(
        tiny_bundle, [("seed-1", other_seed)], examples, ("attention_last",), MethodOptions(), (-1,),
        batch_size=8, token_budget=512,
    )  # fmt: skip
    for example in examples:
        ids = torch.as_tensor(example.input_ids)[None]
        with torch.no_grad():
            rows = [b.model(input_ids=ids, output_attentions=True).attentions[-1][0, :, 0].double().numpy()
                    for b in (tiny_bundle, other_seed)]  # fmt: skip
        p, q = rows
        m = (p + q) / 2
        jsd = float(np.mean(0.5 * (p * np.log2(p / m)).sum(-1) + 0.5 * (q * np.log2(q / m)).sum(-1)))
        tvd = float(np.mean(0.5 * np.abs(p - q).sum(-1)))
        mine = {d.statistic: d.value for d in distances if d.example_id == example.example_id}
        assert mine["attention_jsd"] == pytest.approx(jsd, rel=1e-4)
        assert mine["attention_tvd"] == pytest.approx(tvd, rel=1e-4)


def test_the_random_baseline_and_unknown_methods_are_not_compared() -> None:
    assert compared_methods(("random", "attention_last", "imported_shap")) == ["attention_last"]
