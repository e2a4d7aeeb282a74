"""Human rationales: the parts of a text that annotators marked as the reason for its label.

A rationale column may hold, per example, any of three formats (lists may also be JSON strings, as a CSV
cell must be):

- **character spans**: ``[[start, end], ...]``, end exclusive, into the text;
- **word indices**: ``[3, 4, 9]``, indices of whitespace-separated words (as ERASER and HateXplain count);
- **highlighted words or phrases**: ``["boring", "far too long"]``, every case-insensitive whole-word
  occurrence in the text.

An empty list means the annotators marked nothing; a missing value means the example has no rationale.
All three become character spans, and a model token belongs to the rationale when its character span
overlaps one (the tokenizer's offset mapping); special tokens never do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np

from tasks.errors import AuditError

FORMATS = 'character spans [[start, end], ...], word indices [i, ...], or highlighted words ["word", ...]'


def rationale_spans(raw: object, text: str, example_id: str) -> list[tuple[int, int]] | None:
    """Character spans of a rationale given in any supported format; None when there is none.

    Raises:
        AuditError: The value is in no supported format, or points outside the text.
    """
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return None
    value = raw.tolist() if isinstance(raw, np.ndarray) else raw
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise _unreadable(example_id, raw) from error
    if not isinstance(value, list | tuple):
        raise _unreadable(example_id, raw)
    items = [item.tolist() if isinstance(item, np.ndarray) else item for item in value]
    if not items:
        return []
    if all(isinstance(item, list | tuple) and len(item) == 2 for item in items):
        return [_checked_span(item, text, example_id) for item in items]
    if all(isinstance(item, int | np.integer) and not isinstance(item, bool) for item in items):
        return _word_spans([int(item) for item in items], text, example_id)
    if all(isinstance(item, str) for item in items):
        return _highlight_spans(items, text, example_id)
    raise _unreadable(example_id, raw)


def token_mask(spans: Sequence[tuple[int, int]], offsets: np.ndarray, special_mask: np.ndarray) -> np.ndarray:
    """True at the tokens whose character span overlaps a rationale span (never at special tokens)."""
    mask = np.zeros(offsets.shape[0], dtype=bool)
    for start, end in spans:
        mask |= (offsets[:, 0] < end) & (start < offsets[:, 1])
    return mask & ~special_mask


def _checked_span(item: Sequence[object], text: str, example_id: str) -> tuple[int, int]:
    start, end = item
    if not (isinstance(start, int | np.integer) and isinstance(end, int | np.integer)) or not 0 <= start < end <= len(
        text
    ):
        raise AuditError(
            f"example {example_id!r} has the rationale span {list(item)!r}, outside its text of {len(text)} characters",
            f"give spans as [start, end] with 0 <= start < end <= {len(text)} (end exclusive)",
        )
    return int(start), int(end)


def _word_spans(indices: list[int], text: str, example_id: str) -> list[tuple[int, int]]:
    words = [(match.start(), match.end()) for match in re.finditer(r"\S+", text)]
    wrong = [index for index in indices if not 0 <= index < len(words)]
    if wrong:
        raise AuditError(
            f"example {example_id!r} has rationale word index {wrong[0]}, but its text has {len(words)} words",
            "give word indices counted from 0 over the whitespace-separated words of the text",
        )
    return [words[index] for index in indices]


def _highlight_spans(highlights: list[str], text: str, example_id: str) -> list[tuple[int, int]]:
    spans = []
    for highlight in highlights:
        pattern = re.compile(rf"(?<!\w){re.escape(highlight.strip())}(?!\w)", re.IGNORECASE)
        found = [(match.start(), match.end()) for match in pattern.finditer(text)] if highlight.strip() else []
        if not found:
            raise AuditError(
                f"example {example_id!r} highlights {highlight!r}, which does not occur in its text",
                "highlight words or phrases exactly as they appear in the text (case does not matter)",
            )
        spans.extend(found)
    return spans


def _unreadable(example_id: str, raw: object) -> AuditError:
    shown = repr(raw) if len(repr(raw)) < 80 else repr(raw)[:77] + "..."
    return AuditError(
        f"example {example_id!r} has a rationale in no supported format: {shown}",
        f"give the rationale column as {FORMATS} (a JSON string in CSV files)",
    )
