"""From corpus rows to what the model reads: token ids, offsets, special-token masks, batches.

Texts are tokenised once, with the tokenizer's own special tokens; a text longer than ``max_length``
tokens is truncated (the tokenizer's strategy: the end is cut; for a text pair, the longer text loses a
token at a time) and keeps its original length so that the truncation is recorded. A text pair is
encoded as the model was trained on pairs (``[CLS] a [SEP] b [SEP]``, segment ids where the family has
them), with offsets into each text and the segment of every token. Batches group examples of similar
length (padding is the main waste on CPU) under a cap on examples and on tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tasks.data.rationales import rationale_spans, token_mask
from tasks.errors import AuditError
from tasks.records import EncodedExample


def label_index(raw: object, labels: Sequence[str], example_id: str) -> int | None:
    """Map a corpus label (class index, its string, or a label name) to the model's class index.

    Raises:
        AuditError: The label is not one of the model's classes.
    """
    if raw is None:
        return None
    if isinstance(raw, bool):
        raw = int(raw)
    if isinstance(raw, int | np.integer) and 0 <= int(raw) < len(labels):
        return int(raw)
    if isinstance(raw, float) and raw.is_integer() and 0 <= int(raw) < len(labels):
        return int(raw)
    if isinstance(raw, str):
        by_name = {name.lower(): i for i, name in enumerate(labels)}
        if raw.strip().lower() in by_name:
            return by_name[raw.strip().lower()]
        if raw.strip().isdigit() and int(raw) < len(labels):
            return int(raw)
    raise AuditError(
        f"example {example_id!r} has the label {raw!r}, which is not one of the model's classes "
        f"(indices 0..{len(labels) - 1} or names {', '.join(labels)})",
        "check that --label-column holds this model's labels, or pass --no-labels to audit without gold labels",
    )


def encode_corpus(frame: pd.DataFrame, tokenizer: Any, labels: Sequence[str], max_length: int) -> list[EncodedExample]:
    """Tokenise every row of a corpus frame (columns ``example_id``, ``text``, ``label``, ``metadata``).

    Raises:
        AuditError: A label is not one of the model's classes, or ``max_length`` leaves no room for
            content after the special tokens.
    """
    pairs = [str(text) for text in frame["text_pair"]] if "text_pair" in frame else None
    specials = tokenizer.num_special_tokens_to_add(pair=pairs is not None)
    if max_length <= specials + (pairs is not None):
        raise AuditError(
            f"--max-length {max_length} leaves no room for text after the model's {specials} special tokens",
            f"use --max-length of at least {specials + 1 + (pairs is not None)}",
        )
    texts = [str(text) for text in frame["text"]]
    arguments = (texts,) if pairs is None else (texts, pairs)
    full_lengths = [len(ids) for ids in tokenizer(*arguments, add_special_tokens=True)["input_ids"]]
    encoded = tokenizer(
        *arguments,
        truncation=True if pairs is None else "longest_first",
        max_length=max_length,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_token_type_ids=True,
    )
    examples = []
    raw_rationales = frame["rationale"] if "rationale" in frame else [None] * len(frame)
    rows = zip(frame["example_id"], texts, frame["label"], frame["metadata"], raw_rationales, strict=True)
    for i, (example_id, text, raw_label, metadata, raw_rationale) in enumerate(rows):
        input_ids = np.asarray(encoded["input_ids"][i], dtype=np.int64)
        token_types = encoded.get("token_type_ids")
        offsets = np.asarray(encoded["offset_mapping"][i], dtype=np.int64).reshape(-1, 2)
        special = np.asarray(encoded["special_tokens_mask"][i], dtype=bool)
        segments = None if pairs is None else segment_ids(encoded.sequence_ids(i))
        spans = rationale_spans(raw_rationale, text, str(example_id))
        rationale = None if spans is None else token_mask(spans, offsets, special)
        if rationale is not None and segments is not None:
            rationale &= segments == 0  # a rationale marks spans of the first text
        examples.append(
            EncodedExample(
                example_id=str(example_id),
                text=text,
                label=label_index(raw_label, labels, str(example_id)),
                input_ids=input_ids,
                token_type_ids=(
                    np.asarray(token_types[i], dtype=np.int64) if token_types else np.zeros_like(input_ids)
                ),
                tokens=tuple(tokenizer.convert_ids_to_tokens(encoded["input_ids"][i])),
                offsets=offsets,
                special_mask=special,
                n_original_tokens=full_lengths[i],
                metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
                rationale=rationale,
                text_pair=None if pairs is None else pairs[i],
                segments=segments,
            )
        )
    return examples


def segment_ids(sequence_ids: Sequence[int | None]) -> np.ndarray:
    """Which text each token of a pair belongs to: 0 or 1, a special token taking the text before it.

    ``sequence_ids`` is the fast tokenizer's answer (None at special tokens); ``[CLS]`` at the start
    takes 0, and a separator the text it closes.
    """
    segments = np.zeros(len(sequence_ids), dtype=np.int64)
    current = 0
    for position, sequence in enumerate(sequence_ids):
        current = current if sequence is None else int(sequence)
        segments[position] = current
    return segments


def plan_batches(examples: Sequence[EncodedExample], batch_size: int, token_budget: int) -> list[list[EncodedExample]]:
    """Group examples into length-sorted batches under a cap on examples and on tokens.

    A batch holds at most ``batch_size`` examples and ``token_budget`` tokens (rows x longest row);
    an example longer than the budget gets a batch of its own.

    Sorting by length keeps padding small; ties keep corpus order, so the plan is deterministic.
    """
    ordered = sorted(examples, key=lambda example: example.length)
    batches: list[list[EncodedExample]] = []
    current: list[EncodedExample] = []
    for example in ordered:
        widest = max([example.length] + [e.length for e in current[-1:]])
        if current and (len(current) >= batch_size or (len(current) + 1) * widest > token_budget):
            batches.append(current)
            current = []
        current.append(example)
    if current:
        batches.append(current)
    return batches
