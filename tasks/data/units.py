"""The units that metrics rank: tokens (the default), words or sentences.

Methods score tokens, and the database keeps token scores. With ``--units word`` every metric
(faithfulness, agreement, plausibility, head agreement) ranks **words** instead: maximal runs of
non-whitespace characters of the original text, found through the tokenizer's offset mapping, so that
``un ##believ ##able``, ``Ġunbel ievable`` and ``▁unbe lievable`` are all the one word ``unbelievable``.
With ``--units sentence`` they rank **sentences** (``sentence_starts``: a sentence ends after ``.``, ``!``
or ``?`` and any closing quotes or brackets, followed by whitespace and an upper-case letter, a digit or
an opening quote or bracket; or at a blank line, which ends a headline or paragraph), mapped to tokens
through the offsets in the same way.

A unit's score is the **sum of its sub-token scores**, ``s_u = Σ_{j ∈ u} s_j``, as attention to a word
is summed over its pieces (Clark et al. 2019, "What does BERT look at?") and as attributions add up
(integrated gradients' completeness holds for words when it holds for tokens). The random baseline
is the exception: a sum of independent draws would favour units of many pieces, so a unit takes the
draw of its first piece, which ranks units uniformly at random. Removing a unit for leave-one-out,
comprehensiveness and sufficiency removes all its pieces. A special token is a unit of its own and, as
at token level, never part of a ranking. Units never span the two texts of a pair.

Everything is expressed by one index per example, ``unit[t]``: the unit of token ``t``. Token level is
the identity; an aggregated record has one score per unit, and a keep-mask over units becomes one over
tokens as ``keep[unit]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace

import numpy as np

from tasks.records import EncodedExample, TokenScores

WORD = re.compile(r"\S+")
SPACE = re.compile(r"\s+")
CLOSERS = "\"'”’)]"
OPENERS = "\"'“‘(["


def word_starts(text: str) -> list[int]:
    """The character offsets where the words of ``text`` (maximal runs of non-whitespace) start."""
    return [match.start() for match in WORD.finditer(text)]


def sentence_starts(text: str) -> list[int]:
    """The character offsets where the sentences of ``text`` start (the first is always 0).

    A run of whitespace ends a sentence when it holds a blank line (a headline, a paragraph), or when
    ``.``, ``!`` or ``?`` (and any closing quotes or brackets) come before it and an upper-case letter,
    a digit or an opening quote or bracket after it (``… rally. The IEA …``, ``… said. "I think …``).
    So a sentence never ends inside a word or number (``294.3m``) nor before a lower-case word
    (``e.g. the``). A simple rule, not a parser: an abbreviation followed by a capital (``Mr. Smith``,
    ``U.S. Army``) also ends a sentence.
    """
    starts = [0]
    for space in SPACE.finditer(text):
        start, end = space.span()
        if end == len(text) or start == 0:
            continue
        before = text[max(0, start - len(CLOSERS) - 1) : start].rstrip(CLOSERS)
        after = text[end : end + 2].lstrip(OPENERS)[:1]
        punctuated = before.endswith((".", "!", "?")) and (after.isupper() or after.isdigit())
        if punctuated or space.group().count("\n") >= 2:
            starts.append(end)
    return starts


def word_index(example: EncodedExample) -> np.ndarray:
    """``unit[t]`` for word units, shape ``[T]``, numbered in position order.

    Token ``t`` belongs to the word that contains the first non-space character of its span (a piece
    that covers only whitespace, SentencePiece's lone ``▁``, belongs to the word after it). Special
    tokens, and tokens that cover no text, are units of their own. Text pairs number the words of each
    segment apart (``segments``), so a word never spans the two texts.
    """
    return span_index(example, word_starts)


def sentence_index(example: EncodedExample) -> np.ndarray:
    """``unit[t]`` for sentence units (``sentence_starts``), shape ``[T]``, numbered in position order.

    Tokens are assigned as in ``word_index``: by the first non-space character of their span.
    """
    return span_index(example, sentence_starts)


def span_index(example: EncodedExample, starts_of: Callable[[str], list[int]]) -> np.ndarray:
    """``unit[t]``: the span of ``starts_of(text)`` holding token ``t``'s first non-space character.

    Special tokens, and tokens that cover no text, are units of their own; each segment of a text pair
    has its own spans, so a unit never spans the two texts.
    """
    segments = example.segments if example.segments is not None else np.zeros(example.length, dtype=int)
    texts = (example.text, example.text_pair)
    starts = {segment: np.array(starts_of(texts[segment] or "")) for segment in set(segments.tolist())}
    unit = np.empty(example.length, dtype=np.int64)
    keys: dict[tuple[str, int, int], int] = {}
    for t, ((start, end), special) in enumerate(zip(example.offsets.tolist(), example.special_mask, strict=True)):
        segment = int(segments[t])
        text = texts[segment] or ""
        if special or end <= start:
            key: tuple[str, int, int] = ("token", 0, t)
        else:
            span = text[start:end]
            first = start + len(span) - len(span.lstrip()) if span.strip() else end
            key = ("span", segment, int(np.searchsorted(starts[segment], first, side="right")) - 1)
        unit[t] = keys.setdefault(key, len(keys))
    return unit


def token_index(example: EncodedExample) -> np.ndarray:
    """``unit[t] = t``: every token its own unit."""
    return np.arange(example.length)


INDEX: dict[str, Callable[[EncodedExample], np.ndarray]] = {
    "token": token_index,
    "word": word_index,
    "sentence": sentence_index,
}
"""How each unit level finds ``unit[t]``: one entry per value of ``--units``."""


def unit_indices(examples: Sequence[EncodedExample], units: str) -> dict[str, np.ndarray]:
    """Each example's ``unit[t]`` for ``units`` (``token``, ``word`` or ``sentence``), by example id."""
    return {example.example_id: INDEX[units](example) for example in examples}


def aggregate(values: np.ndarray, unit: np.ndarray, first: bool = False) -> np.ndarray:
    """Per-unit values, ``[U]``: the sum over each unit's tokens, or the first token's value."""
    count = int(unit.max()) + 1 if unit.size else 0
    if not first:
        return np.bincount(unit, weights=values.astype(np.float64), minlength=count)
    out = np.zeros(count)
    out[unit[::-1]] = values[::-1]  # the last write wins: the first token of each unit
    return out


def to_units(record: TokenScores, unit: np.ndarray, *, first: bool = False) -> TokenScores:
    """``record`` with one score per unit; a unit is content when its tokens are.

    Args:
        record: Token scores of one example.
        unit: ``unit[t]``, the unit of token ``t``.
        first: A unit takes its first token's score instead of the sum (the random baseline).
    """
    content = aggregate(record.content_mask.astype(np.float64), unit, first=True) > 0
    return replace(record, scores=aggregate(record.scores, unit, first=first), content_mask=content)


def records_in_units(
    records: Sequence[TokenScores],
    units: Mapping[str, np.ndarray],
    level: str,
    first_token_methods: Collection[str] = (),
) -> list[TokenScores]:
    """Every record in the run's units (unchanged at token level).

    Args:
        records: Token scores.
        units: Per example, the unit of each token.
        level: ``token``, or the unit level the metrics rank.
        first_token_methods: Methods whose unit score is the first token's (the random baselines).
    """
    if level == "token":
        return list(records)
    return [
        to_units(record, units[record.example_id], first=record.method in first_token_methods) for record in records
    ]


def token_mask(unit_mask: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """A mask over units as a mask over tokens: token ``t`` takes its unit's value."""
    return unit_mask[unit]
