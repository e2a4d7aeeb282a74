"""The random ranking baseline."""

from __future__ import annotations

import numpy as np

from tasks.config import MethodOptions
from tasks.explain.baseline import random_ranking, random_scores
from tasks.explain.passes import BatchContext


def test_random_scores_are_reproducible_per_example_seed_and_draw(examples):
    example = examples[2]
    np.testing.assert_array_equal(random_scores(example, 0, 0), random_scores(example, 0, 0))
    assert not np.array_equal(random_scores(example, 0, 0), random_scores(example, 0, 1))
    assert not np.array_equal(random_scores(example, 0, 0), random_scores(example, 1, 0))


def test_random_scores_are_zero_on_special_tokens_and_distinct_on_content(examples):
    for example in examples:
        scores = random_scores(example, 0, 0)
        assert np.all(scores[example.special_mask] == 0)
        content = scores[example.content_mask]
        assert np.all((content > 0) & (content < 1))
        assert len(np.unique(content)) == len(content)


def test_one_record_per_example_and_draw_independent_of_the_batch(tiny_bundle, examples):
    options = MethodOptions(random_draws=3, seed=7)
    records = random_ranking(BatchContext(tiny_bundle, examples, need_gradients=False), options)
    assert len(records) == 3 * len(examples)
    assert {r.draw for r in records} == {0, 1, 2}
    alone = random_ranking(BatchContext(tiny_bundle, examples[3:4], need_gradients=False), options)
    by_key = {(r.example_id, r.draw): r.scores for r in records}
    for record in alone:
        np.testing.assert_array_equal(record.scores, by_key[(record.example_id, record.draw)])


def test_random_rankings_are_uniform_over_permutations(examples):
    """Over many draws, each content token is ranked first about equally often."""
    example = examples[1]
    content = int(example.content_mask.sum())
    firsts = np.bincount(
        [np.argmax(random_scores(example, 0, d)[example.content_mask]) for d in range(3000)], minlength=content
    )
    expected = 3000 / content
    assert np.all(np.abs(firsts - expected) < 5 * np.sqrt(expected))
