"""Text pairs (NLI, paraphrase): both texts are encoded, explained, stored and shown side by side."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks import store
from tasks.config import AuditConfig, DataSpec, ModelSpec
from tasks.data.corpora import load_corpus
from tasks.data.encoding import encode_corpus, segment_ids
from tasks.data.units import word_index
from tasks.errors import AuditError
from tasks.evaluate.batch_metrics import segment_share_values
from tasks.model.loading import load_model
from tasks.pipeline.batch import audit_batch
from tasks.records import TokenScores
from tasks.report import build_context, render_html
from tests.tiny_families import FAMILIES, save_tiny

PAIRS = pd.DataFrame(
    {
        "id": ["p1", "p2", "p3"],
        "premise": ["A man is playing a guitar on stage.", "Two dogs run through a field.", "Nobody is here."],
        "hypothesis": ["A person performs music.", "The animals are sleeping indoors.", "The room is empty."],
        "label": ["entailment", "contradiction", "entailment"],
    }
)


@pytest.fixture
def pair_file(tmp_path) -> Path:
    path = tmp_path / "pairs.csv"
    PAIRS.to_csv(path, index=False)
    return path


def spec(path: Path, **changes) -> DataSpec:
    return DataSpec(dataset=str(path), text_column="premise", id_column="id", label_column=None, **changes)


def test_the_second_text_is_read_from_its_column(pair_file):
    frame = load_corpus(spec(pair_file, text_pair_column="hypothesis")).frame
    assert frame["text_pair"].tolist() == PAIRS["hypothesis"].tolist()
    assert "hypothesis" not in frame["metadata"][0]
    single = load_corpus(spec(pair_file))
    assert load_corpus(spec(pair_file, text_pair_column="hypothesis")).fingerprint != single.fingerprint


def test_a_missing_pair_column_is_named_with_the_columns_there_are(pair_file):
    with pytest.raises(AuditError, match="no column 'hypotheses'.*premise, hypothesis") as error:
        load_corpus(spec(pair_file, text_pair_column="hypotheses"))
    assert "--text-pair-column" in error.value.fix


def test_a_pair_column_that_is_not_text_is_refused(tmp_path):
    PAIRS.assign(n=[1, 2, 3]).to_csv(tmp_path / "numbers.csv", index=False)
    with pytest.raises(AuditError, match="'n' holds non-text values in 3 row") as error:
        load_corpus(spec(tmp_path / "numbers.csv", text_pair_column="n"))
    assert "--text-pair-column" in error.value.fix


def test_a_built_in_corpus_has_no_second_text():
    with pytest.raises(AuditError, match="holds single texts"):
        load_corpus(DataSpec(dataset="movie-snippets", text_pair_column="hypothesis"))


def test_special_tokens_take_the_text_before_them():
    assert segment_ids([None, 0, 0, None, 1, 1, None]).tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert segment_ids([None, 0, None, None, 1, None]).tolist() == [0, 0, 0, 0, 1, 1]


@pytest.mark.parametrize("family", ["bert", "roberta", "albert"])
def test_a_pair_is_encoded_with_segments_and_offsets_into_each_text(family, tmp_path):
    bundle = load_model(ModelSpec(name_or_path=str(save_tiny(FAMILIES[family], tmp_path))))
    frame = load_corpus(spec(_write(tmp_path), text_pair_column="hypothesis")).frame
    example = encode_corpus(frame, bundle.tokenizer, bundle.labels, 64)[0]
    assert example.text_pair == PAIRS["hypothesis"][0]
    segments = example.segments
    assert segments[0] == 0 and segments[-1] == 1 and np.all(np.diff(segments) >= 0)
    for text, segment in ((example.text, 0), (example.text_pair, 1)):
        content = (segments == segment) & example.content_mask
        pieces = [text[start:end] for start, end in example.offsets[content]]
        assert "".join(pieces).replace(" ", "") == text.replace(" ", "")
    if family in ("bert", "albert"):
        assert example.token_type_ids.tolist() == segments.tolist()


def test_a_long_pair_is_truncated_and_the_truncation_recorded(tiny_bundle, tmp_path):
    frame = load_corpus(spec(_write(tmp_path), text_pair_column="hypothesis")).frame
    example = encode_corpus(frame, tiny_bundle.tokenizer, tiny_bundle.labels, 10)[0]
    assert example.length == 10 and example.truncated
    assert set(example.segments.tolist()) == {0, 1}


def test_words_are_numbered_apart_in_each_text(tiny_bundle, tmp_path):
    frame = load_corpus(spec(_write(tmp_path), text_pair_column="hypothesis")).frame
    example = encode_corpus(frame, tiny_bundle.tokenizer, tiny_bundle.labels, 64)[0]
    unit = word_index(example)
    words = len(example.text.split()) + len(example.text_pair.split())
    assert len(set(unit[example.content_mask])) == words
    assert not set(unit[example.segments == 0]) & set(unit[example.segments == 1])


def test_the_second_text_share_is_the_mass_on_it():
    example = _FakePair(segments=np.array([0, 0, 0, 0, 1, 1, 1]))
    content = np.array([False, True, True, False, True, True, False])
    record = TokenScores("p", "integrated_gradients", np.array([9.0, 1, -1, 9, 2, -4, 9]), content)
    (value,) = segment_share_values([record], [example])
    assert value.metric == "second_text_share" and value.value == pytest.approx(6 / 8)


class _FakePair:
    example_id = "p"

    def __init__(self, segments: np.ndarray) -> None:
        self.segments = segments


def test_a_pair_audit_is_stored_and_reported_side_by_side(tiny_bundle, tiny_model_dir, tmp_path):
    config = AuditConfig(
        model=ModelSpec(name_or_path=str(tiny_model_dir)),
        data=spec(_write(tmp_path), text_pair_column="hypothesis"),
        methods={
            "methods": ["attention_last", "integrated_gradients", "leave_one_out", "random"],
            "ig_steps": 8,
            "ig_rule": "gausslegendre",
        },
        interventions={"interventions": ["none"]},
    )
    examples = encode_corpus(load_corpus(config.data).frame, tiny_bundle.tokenizer, tiny_bundle.labels, 64)
    result = audit_batch(tiny_bundle, examples, config.methods, config.interventions, config.execution)
    shares = [m for m in result.metrics if m.metric == "second_text_share"]
    assert len(shares) == len(examples) * (3 + config.methods.random_draws)
    assert all(0 <= m.value <= 1 for m in shares)
    db = tmp_path / "audit.duckdb"
    with store.connect(db) as connection:
        store.register_run(connection, "pairs", config.model_dump(mode="json"), {"model": {"layers": 2}})
        store.write_batch(connection, "pairs", result, tiny_bundle.labels)
        tokens = store.read_table(connection, "tokens", "pairs")
        assert sorted(tokens["segment"].unique()) == [0, 1]
        stored = store.read_table(connection, "examples", "pairs")
        assert sorted(stored["text_pair"]) == sorted(PAIRS["hypothesis"])
        context = build_context(connection, "pairs", generated_at=datetime(2026, 1, 1))
    assert {title for title, _ in context.segments} == {"Last-layer attention", "Integrated gradients",
                                                         "Leave-one-out", "Random ranking"}  # fmt: skip
    heatmap = context.heatmaps[0]
    assert heatmap.pair and all(len(texts) == 2 for _, _, texts in heatmap.rows)
    _, _, (first, second) = heatmap.rows[0]
    pair = PAIRS.set_index("id").loc[heatmap.example_id]
    assert " ".join("".join((" " if c.space_before else "") + c.text for c in first).split()) == pair["premise"]
    assert " ".join("".join((" " if c.space_before else "") + c.text for c in second).split()) == pair["hypothesis"]
    html = render_html(context)
    assert 'id="segments"' in html and "Second text" in html
    table = html[html.index('id="examples-table"') :]
    for premise, hypothesis in PAIRS[["premise", "hypothesis"]].itertuples(index=False):
        assert f'<td class="text">{premise}</td><td class="text">{hypothesis}</td>' in table


def _write(folder: Path) -> Path:
    path = folder / "pairs.csv"
    PAIRS.to_csv(path, index=False)
    return path


def test_imported_character_spans_of_a_pair_land_on_the_first_text(tiny_bundle, tmp_path):
    from tasks.explain.imported import align

    frame = load_corpus(spec(_write(tmp_path), text_pair_column="hypothesis")).frame
    example = encode_corpus(frame, tiny_bundle.tokenizer, tiny_bundle.labels, 64)[0]
    spans = pd.DataFrame({"example_id": [example.example_id], "method": ["shap"], "score": [1.0],
                          "char_start": [0], "char_end": [len(example.text_pair)]})  # fmt: skip
    scores = align(spans, [example])[example.example_id]["shap"]
    assert scores[(example.segments == 0) & example.content_mask].any()
    assert not scores[example.segments == 1].any()
