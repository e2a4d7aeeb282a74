"""Built-in corpora: the movie snippets and BBC News, and the hash split."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.data.builtin import BUILTIN_CORPORA, decode_article, hash_split
from tasks.data.corpora import content_fingerprint
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
