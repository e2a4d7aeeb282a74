"""Corpora: the built-in movie snippets and BBC News, the hash split, local files, sampling and fingerprints."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.config import DataSpec
from tasks.data.corpora import (
    BUILTIN_CORPORA,
    content_fingerprint,
    decode_article,
    hash_split,
    load_corpus,
    sample_in_hash_order,
)
from tasks.errors import AuditError
from tests.conftest import ROOT

DATA = ROOT / "data"


def test_movie_snippets_are_the_rated_snippets_without_neutral_ones():
    frame = BUILTIN_CORPORA["movie-snippets"].read_all()
    assert len(frame) == 10_605 - 37
    assert set(frame["label"]) == {"negative", "positive"}
    assert frame["example_id"].is_unique
    first = frame.iloc[0]
    assert first["text"].startswith("The Rock is destined")
    assert first["label"] == "positive" and first["metadata"]["rating_mean"] > 0
    assert all(frame["metadata"].map(lambda m: m["rating_sd"] >= 0))


def test_the_hash_split_is_stable_and_about_80_10_10():
    frame = BUILTIN_CORPORA["movie-snippets"].read_all()
    shares = pd.Series([hash_split(i, "movie-snippets") for i in frame["example_id"]]).value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.8, abs=0.02)
    assert shares["validation"] == pytest.approx(0.1, abs=0.02)
    assert shares["test"] == pytest.approx(0.1, abs=0.02)
    assert hash_split("1", "movie-snippets") == hash_split("1", "movie-snippets")


@pytest.mark.parametrize("name", sorted(BUILTIN_CORPORA))
def test_the_committed_split_file_matches_the_code(name):
    committed = pd.read_csv(DATA / "splits" / f"{name}.csv", dtype=str)
    recomputed = [hash_split(i, name) for i in committed["example_id"]]
    assert committed["split"].tolist() == recomputed
    assert committed["example_id"].tolist() == BUILTIN_CORPORA[name].read_all()["example_id"].tolist()


def test_bbc_news_is_2225_articles_in_five_topics_with_stable_ids():
    corpus = BUILTIN_CORPORA["bbc-news"]
    frame = corpus.read_all()
    assert len(frame) == 2225
    assert frame["label"].value_counts().to_dict() == {
        "sports": 511,
        "business": 510,
        "politics": 417,
        "tech": 401,
        "entertainment": 386,
    }
    assert set(frame["label"]) == set(corpus.labels)
    assert frame["example_id"].is_unique
    assert all(i == f"{label}/{i.split('/')[1]}" for i, label in zip(frame["example_id"], frame["label"], strict=True))
    assert frame["example_id"].tolist() == corpus.read_all()["example_id"].tolist()
    assert frame["text"].str.strip().ne("").all()


def test_a_bbc_article_is_its_title_a_blank_line_and_its_body_in_the_original_case():
    frame = BUILTIN_CORPORA["bbc-news"].read_all().set_index("example_id")
    first = frame.loc["business/001"]
    assert first["text"].startswith(
        "Ad sales boost Time Warner profit\n\nQuarterly profits at US media giant TimeWarner"
    )
    assert first["label"] == "business"
    assert first["metadata"] == {"title": "Ad sales boost Time Warner profit", "n_words": len(first["text"].split())}
    titles = [meta["title"] for meta in frame["metadata"]]
    assert [text.split("\n\n", 1)[0] for text in frame["text"]] == titles


def test_the_one_latin_1_bbc_article_keeps_its_pound_signs():
    assert decode_article("£15.8m".encode()) == "£15.8m"
    assert decode_article("£15.8m".encode("latin-1")) == "£15.8m"
    text = BUILTIN_CORPORA["bbc-news"].read_all().set_index("example_id").loc["sports/199", "text"]
    assert "£15.8m" in text and "\ufffd" not in text


def test_the_bbc_split_is_deterministic_disjoint_and_complete():
    corpus = BUILTIN_CORPORA["bbc-news"]
    splits = {name: corpus.read(name) for name in ("train", "validation", "test")}
    assert {name: len(frame) for name, frame in splits.items()} == {"train": 1772, "validation": 225, "test": 228}
    ids = {name: set(frame["example_id"]) for name, frame in splits.items()}
    assert not ids["train"] & ids["validation"] and not ids["train"] & ids["test"]
    assert not ids["validation"] & ids["test"]
    assert set.union(*ids.values()) == set(corpus.read_all()["example_id"])
    assert content_fingerprint(corpus.read("test")) == content_fingerprint(splits["test"])
    assert all(frame["label"].nunique() == 5 for frame in splits.values())


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
