"""Corpora: loading built-in, local and hub corpora, sampling and fingerprints."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.config import DataSpec
from tasks.data.corpora import content_fingerprint, load_corpus, sample_in_hash_order
from tasks.errors import AuditError
from tests.conftest import ROOT

DATA = ROOT / "data"


def test_the_test_split_of_the_default_corpus_is_balanced():
    corpus = load_corpus(DataSpec(dataset="movie-snippets", split="test"))
    shares = corpus.frame["label"].value_counts(normalize=True)
    assert shares.min() > 0.4
    assert corpus.rows_in_split == len(corpus)


def test_a_limit_takes_a_nested_seeded_sample_not_the_first_rows():
    frame = pd.DataFrame(
        {"example_id": [str(i) for i in range(100)], "text": "t", "label": None, "metadata": [{}] * 100}
    )
    small, large = sample_in_hash_order(frame, 10, 0), sample_in_hash_order(frame, 30, 0)
    assert small["example_id"].tolist() == large["example_id"].tolist()[:10]
    assert small["example_id"].tolist() != [str(i) for i in range(10)]
    assert sample_in_hash_order(frame, 10, 1)["example_id"].tolist() != small["example_id"].tolist()


def test_a_limited_corpus_keeps_the_fingerprint_of_the_whole_split():
    whole = load_corpus(DataSpec(dataset="movie-snippets"))
    sample = load_corpus(DataSpec(dataset="movie-snippets", limit=20))
    assert len(sample) == 20 and sample.fingerprint == whole.fingerprint
    assert sample.frame["label"].nunique() == 2


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_local_files_load_with_their_columns_renamed(tmp_path, suffix):
    frame = pd.DataFrame({"review": ["good", "bad"], "stars": [1, 0], "uid": ["a", "b"], "source": ["x", "y"]})
    path = tmp_path / f"data{suffix}"
    {
        ".csv": lambda: frame.to_csv(path, index=False),
        ".jsonl": lambda: frame.to_json(path, orient="records", lines=True),
        ".parquet": lambda: frame.to_parquet(path),
    }[suffix]()
    corpus = load_corpus(DataSpec(dataset=str(path), text_column="review", label_column="stars", id_column="uid"))
    assert corpus.frame["example_id"].tolist() == ["a", "b"]
    assert corpus.frame["text"].tolist() == ["good", "bad"]
    assert corpus.frame["label"].tolist() == [1, 0]
    assert corpus.frame["metadata"].tolist() == [{"source": "x"}, {"source": "y"}]


def test_the_handmade_sample_loads(tmp_path):
    corpus = load_corpus(DataSpec(dataset=str(DATA / "samples" / "handmade-reviews.csv"), id_column="id"))
    assert len(corpus) == 12 and set(corpus.frame["label"]) == {"positive", "negative"}


def test_the_fingerprint_changes_with_any_text_or_label():
    frame = pd.DataFrame({"example_id": ["1", "2"], "text": ["a", "b"], "label": [0, 1]})
    changed_text = frame.assign(text=["a", "c"])
    changed_label = frame.assign(label=[0, 0])
    fingerprints = {content_fingerprint(f) for f in (frame, changed_text, changed_label)}
    assert len(fingerprints) == 3


@pytest.mark.parametrize(
    ("content", "spec", "message"),
    [
        ("text,label\nhello,0\n", {"text_column": "review"}, "no column 'review' (columns: text, label)"),
        ("text,label\nhello,0\n", {"label_column": "stars"}, "no column 'stars'"),
        ("text,label\n", {}, "has no examples"),
        ("text,label\n3,0\n", {}, "non-text values"),
        ("id,text,label\n1,a,0\n1,b,1\n", {"id_column": "id"}, "repeats ids"),
    ],
)
def test_bad_local_files_name_the_problem(tmp_path, content, spec, message):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AuditError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_corpus(DataSpec(dataset=str(path), **spec))


def test_an_unknown_dataset_explains_where_it_looked():
    with pytest.raises(AuditError, match="neither a built-in corpus"):
        load_corpus(DataSpec(dataset="no-such-dataset-anywhere"))


def test_an_unknown_split_of_a_builtin_corpus_lists_the_splits():
    with pytest.raises(AuditError, match="no split 'dev'"):
        load_corpus(DataSpec(dataset="movie-snippets", split="dev"))
