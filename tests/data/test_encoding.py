"""Encoding corpora for the model: labels, truncation, batches."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.data.encoding import encode_corpus, label_index, plan_batches
from tasks.errors import AuditError
from tests.conftest import encode

LABELS = ("negative", "positive")


@pytest.mark.parametrize(
    ("raw", "index"), [(0, 0), (1, 1), ("positive", 1), ("Negative", 0), ("1", 1), (1.0, 1), (True, 1), (None, None)]
)
def test_labels_map_to_the_models_classes(raw, index):
    assert label_index(raw, LABELS, "x") == index


@pytest.mark.parametrize("raw", [2, -1, "neutral", 0.5])
def test_a_label_outside_the_models_classes_is_refused_with_the_classes_named(raw):
    with pytest.raises(AuditError, match="not one of the model's classes"):
        label_index(raw, LABELS, "x")


def test_long_texts_are_truncated_and_the_truncation_is_recorded(tiny_bundle):
    long, short = encode(tiny_bundle, ["word " * 100, "word"], max_length=16)
    assert long.length == 16 and long.truncated and long.n_original_tokens == 102
    assert short.length == 3 and not short.truncated
    assert long.tokens[0] == "[CLS]" and long.tokens[-1] == "[SEP]"


def test_offsets_point_back_into_the_original_text(tiny_bundle):
    (example,) = encode(tiny_bundle, ["Unbelievably GOOD!"])
    pieces = [
        example.text[s:e] for (s, e), special in zip(example.offsets, example.special_mask, strict=True) if not special
    ]
    assert "".join(pieces) == "UnbelievablyGOOD!"


def test_max_length_must_leave_room_for_content(tiny_bundle):
    frame = pd.DataFrame({"example_id": ["1"], "text": ["hi"], "label": [None], "metadata": [{}]})
    with pytest.raises(AuditError, match="leaves no room"):
        encode_corpus(frame, tiny_bundle.tokenizer, tiny_bundle.labels, 2)


def test_batches_are_length_sorted_and_respect_both_caps(tiny_bundle):
    texts = ["word " * n for n in (1, 30, 2, 12, 5, 30, 3, 8, 1, 20)]
    examples = encode(tiny_bundle, texts)
    batches = plan_batches(examples, batch_size=3, token_budget=70)
    assert sorted(e.example_id for b in batches for e in b) == sorted(e.example_id for e in examples)
    lengths = [e.length for b in batches for e in b]
    assert lengths == sorted(lengths)
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * max(e.length for e in batch) <= 70
