"""Word and sentence units: found through offsets, scored by the sum of their pieces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tasks.config import MethodOptions, ModelSpec
from tasks.data.encoding import encode_corpus
from tasks.data.units import (
    aggregate,
    records_in_units,
    sentence_index,
    sentence_starts,
    to_units,
    token_mask,
    unit_indices,
    word_index,
)
from tasks.evaluate.batch_metrics import faithfulness_values, plausibility_values
from tasks.explain.passes import BatchContext
from tasks.explain.registry import methods_of
from tasks.model.loading import load_model
from tasks.records import MethodFamily, TokenScores
from tests.conftest import encode
from tests.tiny_families import FAMILIES, save_tiny

TEXT = "An unbelievably overwrought, self-indulgent mess!"
WORDS = TEXT.split()


def encoded(tokenizer, text: str = TEXT, rationale: list[str] | None = None):
    frame = pd.DataFrame({"example_id": ["a"], "text": [text], "label": None, "metadata": [{}]})
    return encode_corpus(frame, tokenizer, ("negative", "positive"), 64)[0]


def test_pieces_of_one_word_share_a_unit_and_special_tokens_are_units_of_their_own(tiny_bundle):
    example = encoded(tiny_bundle.tokenizer)
    unit = word_index(example)
    assert example.tokens[2:7] == ("un", "##bel", "##ie", "##va", "##bly")
    assert len(set(unit[2:7])) == 1
    assert len(set(unit[example.special_mask])) == example.special_mask.sum()
    assert len(set(unit[~example.special_mask])) == len(WORDS)
    assert unit.tolist() == sorted(unit.tolist())  # numbered in position order


@pytest.mark.parametrize("family", ["roberta", "albert", "gpt2", "llama"])
def test_byte_level_and_sentencepiece_pieces_group_into_the_same_words(family, tmp_path):
    bundle = load_model(ModelSpec(name_or_path=str(save_tiny(FAMILIES[family], tmp_path))))
    example = encoded(bundle.tokenizer)
    unit = word_index(example)
    content = unit[~example.special_mask]
    assert len(set(content)) == len(WORDS)
    for word, index in zip(WORDS, dict.fromkeys(content.tolist()), strict=True):
        spans = example.offsets[unit == index]
        assert TEXT[spans[:, 0].min() : spans[:, 1].max()].strip() == word


def test_a_word_scores_the_sum_of_its_pieces_so_totals_are_kept(tiny_bundle):
    example = encoded(tiny_bundle.tokenizer)
    unit = word_index(example)
    scores = np.random.default_rng(0).normal(size=example.length)
    record = to_units(TokenScores("a", "integrated_gradients", scores, example.content_mask), unit)
    assert record.scores.sum() == pytest.approx(scores.sum())
    assert record.scores[unit[3]] == pytest.approx(scores[2:7].sum())
    assert record.content_mask.tolist() == [False, *[True] * len(WORDS), False]


def test_the_random_baseline_takes_each_words_first_draw_so_long_words_are_not_favoured(tiny_bundle):
    example = encoded(tiny_bundle.tokenizer)
    unit = word_index(example)
    scores = np.arange(example.length, dtype=float)
    baselines = methods_of(MethodFamily.BASELINE)
    [record] = records_in_units(
        [TokenScores("a", "random", scores, example.content_mask)], {"a": unit}, "word", baselines
    )
    first_positions = [int(np.flatnonzero(unit == u)[0]) for u in range(unit.max() + 1)]
    assert record.scores.tolist() == scores[first_positions].tolist()


def test_token_units_leave_records_unchanged(tiny_bundle, examples):
    record = TokenScores("0", "saliency", np.arange(examples[0].length, dtype=float), examples[0].content_mask)
    assert records_in_units([record], unit_indices(examples, "token"), "token") == [record]


def test_a_mask_over_words_covers_every_piece():
    unit = np.array([0, 1, 1, 1, 2, 3])
    assert token_mask(np.array([True, False, True, True]), unit).tolist() == [True, False, False, False, True, True]
    assert aggregate(np.array([1.0, 2, 3, 4, 5, 6]), unit).tolist() == [1, 9, 5, 6]


def test_word_comprehensiveness_removes_every_piece_of_the_top_word(tiny_bundle):
    example = encoded(tiny_bundle.tokenizer)
    unit = word_index(example)
    context = BatchContext(tiny_bundle, [example], need_gradients=False)
    scores = np.zeros(example.length)
    scores[2:7] = 1.0  # "unbelievably", five pieces, is the top word
    record = to_units(TokenScores("a", "attention_last", scores, example.content_mask), unit)
    options = MethodOptions(k_fractions=(0.1,))
    values = faithfulness_values([record], context, options, {"a": unit})
    comprehensiveness = next(v.value for v in values if v.metric == "comprehensiveness")
    target = int(context.targets[0])
    with torch.no_grad():
        without = tiny_bundle.model(input_ids=torch.from_numpy(np.delete(example.input_ids, range(2, 7)))[None])
    expected = float(context.target_probabilities[0]) - float(torch.softmax(without.logits[0], -1)[target])
    assert comprehensiveness == pytest.approx(expected, abs=1e-5)


def test_a_word_is_in_the_human_rationale_when_any_of_its_pieces_is(tiny_bundle):
    example = encode(tiny_bundle, [TEXT])[0]
    rationale = np.zeros(example.length, dtype=bool)
    rationale[3] = True  # "##bel" only
    example = type(example)(**{**example.__dict__, "rationale": rationale})
    unit = word_index(example)
    record = to_units(TokenScores("0", "attention_last", np.eye(example.length)[2], example.content_mask), unit)
    values = {v.metric: v.value for v in plausibility_values([record], [example], {"0": unit})}
    assert values["token_f1"] == pytest.approx(1.0)


ARTICLE = 'Oil rally\n\nPrices rose 1.5% on Monday. "Demand is strong," said Mr Ng. Is it? 3 analysts agree.'
SENTENCES = [
    "Oil rally",
    "Prices rose 1.5% on Monday.",
    '"Demand is strong," said Mr Ng.',
    "Is it?",
    "3 analysts agree.",
]


def test_sentences_end_at_end_punctuation_before_a_capital_digit_or_quote_and_at_blank_lines():
    starts = sentence_starts(ARTICLE)
    pieces = [ARTICLE[a:b].strip() for a, b in zip(starts, [*starts[1:], len(ARTICLE)], strict=True)]
    assert pieces == SENTENCES


@pytest.mark.parametrize(
    "text",
    [
        "It rose to 294.3m barrels.",  # a decimal point is inside a number
        "Cheap fuel, e.g. the diesel, sold out.",  # before a lower-case word
        "Who? nobody knows.",
        "One sentence with no end",
    ],
)
def test_no_sentence_ends_inside_a_number_or_before_a_lower_case_word(text):
    assert sentence_starts(text) == [0]


def test_every_token_of_a_sentence_shares_its_unit_and_units_follow_the_text(tiny_bundle):
    example = encoded(tiny_bundle.tokenizer, ARTICLE)
    unit = sentence_index(example)
    content = unit[~example.special_mask]
    assert len(set(content)) == len(SENTENCES)
    assert len(set(unit[example.special_mask])) == example.special_mask.sum()
    assert unit.tolist() == sorted(unit.tolist())
    for sentence, index in zip(SENTENCES, dict.fromkeys(content.tolist()), strict=True):
        spans = example.offsets[unit == index]
        assert ARTICLE[spans[:, 0].min() : spans[:, 1].max()] == sentence


def test_a_sentence_never_spans_the_two_texts_of_a_pair(tiny_bundle):
    frame = pd.DataFrame(
        {"example_id": ["p"], "text": ["No end here"], "text_pair": ["Still none"], "label": None, "metadata": [{}]}
    )
    example = encode_corpus(frame, tiny_bundle.tokenizer, ("negative", "positive"), 64)[0]
    unit = sentence_index(example)
    content = ~example.special_mask
    assert len(set(unit[content])) == 2
    for segment in (0, 1):
        assert len(set(unit[content & (example.segments == segment)])) == 1


def test_sentence_units_rank_sentences_by_the_sum_of_their_tokens(tiny_bundle):
    example = encoded(tiny_bundle.tokenizer, ARTICLE)
    [unit] = unit_indices([example], "sentence").values()
    scores = np.random.default_rng(1).normal(size=example.length)
    record = to_units(TokenScores("a", "saliency", scores, example.content_mask), unit)
    assert record.scores.shape == (len(SENTENCES) + 2,)
    assert record.scores[unit[1]] == pytest.approx(scores[unit == unit[1]].sum())
    assert record.content_mask.sum() == len(SENTENCES)
