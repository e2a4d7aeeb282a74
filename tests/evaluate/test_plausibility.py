"""Plausibility against human rationales: formats, token alignment, and the metrics (ERASER, ferret)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import auc, precision_recall_curve

from tasks.config import DataSpec, ExecutionSettings, InterventionOptions, MethodOptions
from tasks.data.corpora import load_corpus
from tasks.data.encoding import encode_corpus
from tasks.data.rationales import rationale_spans, token_mask
from tasks.errors import AuditError
from tasks.evaluate.plausibility import auprc, token_f1, token_iou
from tasks.pipeline.batch import audit_batch
from tests.conftest import SAMPLES

SAMPLE = SAMPLES / "rationales.jsonl"
TEXT = "Loud, long and oddly joyless."


@pytest.mark.parametrize(
    ("raw", "span"),
    [
        ([[21, 28]], (21, 28)),
        ("[[21, 28]]", (21, 28)),
        (np.array([[21, 28]]), (21, 28)),
        (["joyless"], (21, 28)),
        (["JOYLESS"], (21, 28)),
        ('["joyless"]', (21, 28)),
        ([4], (21, 29)),  # a whitespace word keeps its punctuation: "joyless."
        ("[4]", (21, 29)),
    ],
)
def test_every_format_becomes_character_spans(raw, span):
    assert rationale_spans(raw, TEXT, "x") == [span]


def test_highlighted_phrases_match_whole_words_every_time_they_occur():
    text = "long, long ago; prolonged"
    assert rationale_spans(["long"], text, "x") == [(0, 4), (6, 10)]
    assert rationale_spans(["long ago"], text, "x") == [(6, 14)]


def test_missing_and_empty_rationales_differ():
    assert rationale_spans(None, TEXT, "x") is None
    assert rationale_spans(float("nan"), TEXT, "x") is None
    assert rationale_spans([], TEXT, "x") == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([[0, 99]], "outside its text"),
        ([9], "has 5 words"),
        (["dreadful"], "does not occur"),
        ("not json", "no supported format"),
        ([1.5, 2.5], "no supported format"),
        ({"span": [0, 4]}, "no supported format"),
    ],
)
def test_bad_rationales_name_the_example_and_the_formats(raw, message):
    with pytest.raises(AuditError, match=message):
        rationale_spans(raw, TEXT, "x")


def test_a_token_is_in_the_rationale_when_its_characters_overlap_it():
    offsets = np.array([[0, 0], [0, 4], [4, 5], [6, 10], [11, 14], [0, 0]])
    special = np.array([True, False, False, False, False, True])
    assert token_mask([(2, 7)], offsets, special).tolist() == [False, True, True, True, False, False]


HUMAN = np.array([True, False, True, False, False])


def test_token_f1_and_iou_on_a_hand_worked_case():
    scores = np.array([0.9, 0.8, 0.1, 0.3, 0.2])  # top-2: tokens 0 and 1; human: 0 and 2
    assert token_f1(scores, HUMAN) == pytest.approx(0.5)
    assert token_iou(scores, HUMAN) == pytest.approx(1 / 3)
    perfect = np.array([0.9, 0.1, 0.8, 0.0, 0.2])
    assert token_f1(perfect, HUMAN) == 1.0 and token_iou(perfect, HUMAN) == 1.0


def test_plausibility_is_undefined_without_a_rationale():
    assert math.isnan(token_f1(np.array([0.5, 0.1]), np.array([False, False])))
    assert math.isnan(auprc(np.array([]), np.array([], dtype=bool)))


@pytest.mark.parametrize("seed", range(8))
def test_auprc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(3, 30))
    truth = rng.random(size) < 0.4
    truth[0] = True
    scores = np.round(rng.random(size), 1)  # rounding makes ties, which the curve must handle
    precision, recall, _ = precision_recall_curve(truth, scores)
    assert auprc(scores, truth) == pytest.approx(auc(recall, precision))


def test_the_handmade_sample_audits_with_plausibility(tiny_bundle):
    corpus = load_corpus(DataSpec(dataset=str(SAMPLE), id_column="id", rationale_column="rationale", label_column=None))
    examples = encode_corpus(corpus.frame, tiny_bundle.tokenizer, tiny_bundle.labels, 64)
    by_id = {e.example_id: e for e in examples}
    assert by_id["r12"].rationale is None
    assert not by_id["r11"].rationale.any()
    marked = [token for token, flag in zip(by_id["r02"].tokens, by_id["r02"].rationale, strict=True) if flag]
    assert marked == ["a", "mess", "painful"]
    result = audit_batch(
        tiny_bundle,
        examples,
        MethodOptions(methods=("attention_last", "leave_one_out", "random"), random_draws=1),
        InterventionOptions(interventions=("none",)),
        ExecutionSettings(),
    )
    plausibility = [m for m in result.metrics if m.metric in {"token_f1", "token_iou", "auprc"}]
    assert {m.example_id for m in plausibility} == {e.example_id for e in examples if e.rationale is not None}
    assert all(math.isnan(m.value) for m in plausibility if m.example_id == "r11")
    assert all(0 <= m.value <= 1 for m in plausibility if m.example_id != "r11")
