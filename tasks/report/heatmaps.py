"""Representative examples as coloured text: which examples to show, and one row of cells per method.

Pure functions of the ``examples`` and ``metrics`` tables and of the tokens and draw-0 token scores
of the chosen examples (``store.read_example_tokens``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd

from tasks.explain.registry import METHODS, spec_of
from tasks.records import MethodFamily

HEATMAP_METHODS_ORDER = (MethodFamily.ATTENTION, MethodFamily.EXTERNAL, MethodFamily.REFERENCE)
MIN_TOKENS_FOR_EXAMPLES = 4
"""Representative examples are chosen among inputs with at least this many content tokens."""
POSITIVE = "214, 96, 77"
"""The RGB of evidence for the predicted class (red); evidence against it is blue."""
NEGATIVE = "67, 147, 195"
RATIONALE = "106, 61, 154"
"""The RGB of a human rationale's tokens (purple)."""


@dataclass(frozen=True)
class HeatCell:
    """One token of a heatmap row: its text as it appears in the input, and its colour."""

    text: str
    space_before: bool
    score: float
    colour: str


@dataclass(frozen=True)
class HeatmapExample:
    """A representative example with every method's scores as coloured text."""

    reason: str
    example_id: str
    label: str | None
    predicted: str
    confidence: float
    truncated: bool
    rows: Sequence[tuple[str, str, Sequence[Sequence[HeatCell]]]]  # (method title, family, cells per text)
    pair: bool = False


def representative_examples(examples: pd.DataFrame, metrics: pd.DataFrame) -> list[tuple[str, str]]:
    """Highest and lowest attention-reference agreement, and the most confident misclassification.

    Returns:
        ``(reason in words, example id)`` pairs, in the order the report shows them.
    """
    attention = [m for m, s in METHODS.items() if s.family == MethodFamily.ATTENTION]
    tau = metrics[(metrics["metric"] == "kendall_tau") & metrics["method"].isin(attention)]
    long_enough = set(examples.loc[examples["n_content_tokens"] >= MIN_TOKENS_FOR_EXAMPLES, "example_id"])
    mean_tau = tau[tau["example_id"].isin(long_enough)].groupby("example_id")["value"].mean().dropna()
    chosen: list[tuple[str, str]] = []
    if not mean_tau.empty:
        chosen.append(
            (
                f"Highest agreement between attention and the references (mean Kendall τ {mean_tau.max():.2f})",
                str(mean_tau.idxmax()),
            )
        )
        if mean_tau.idxmin() != mean_tau.idxmax():
            chosen.append(
                (
                    f"Lowest agreement between attention and the references (mean Kendall τ {mean_tau.min():.2f})",
                    str(mean_tau.idxmin()),
                )
            )
    wrong = examples[examples["label"].notna() & (examples["label"] != examples["predicted"])]
    if not wrong.empty:
        worst = wrong.sort_values(["confidence", "example_id"], ascending=[False, True]).iloc[0]
        chosen.append((f"Most confident misclassification (p = {worst['confidence']:.2f})", str(worst["example_id"])))
    return chosen


def heatmaps(
    chosen: Sequence[tuple[str, str]],
    examples: pd.DataFrame,
    tokens: pd.DataFrame,
    scores: pd.DataFrame,
    methods: Sequence[str],
) -> list[HeatmapExample]:
    """The chosen examples, each with a human-rationale row (when the corpus has one) and a row per method.

    Args:
        chosen: ``(reason, example id)`` pairs from ``representative_examples``.
        examples: The run's ``examples`` table.
        tokens: The ``tokens`` rows of the chosen examples.
        scores: The draw-0 ``token_scores`` rows of the chosen examples.
        methods: The run's methods; attention first, then imported, then references.
    """
    shown = [m for family in HEATMAP_METHODS_ORDER for m in methods if spec_of(m).family == family]
    by_id = examples.set_index("example_id")
    out = []
    for reason, example_id in chosen:
        example = cast(pd.Series, by_id.loc[example_id])  # one row: example_id is the table's key
        example_tokens = tokens[(tokens["example_id"] == example_id) & ~tokens["is_special"]]
        pair = "text_pair" in example and isinstance(example["text_pair"], str)
        texts = (example["text"], example["text_pair"]) if pair else (example["text"],)
        rows = []
        if "in_rationale" in example_tokens and example_tokens["in_rationale"].notna().any():
            marked = example_tokens["in_rationale"].fillna(False).astype(float).to_numpy()
            rows.append(("Human rationale", "human", cells_per_text(texts, example_tokens, marked, RATIONALE)))
        for method in shown:
            method_scores = scores[(scores["example_id"] == example_id) & (scores["method"] == method)]
            score_at = dict(zip(method_scores["position"], method_scores["score"], strict=True))
            values = np.array([score_at.get(p, 0.0) for p in example_tokens["position"]])
            rows.append(
                (spec_of(method).title, spec_of(method).family.value, cells_per_text(texts, example_tokens, values))
            )
        out.append(
            HeatmapExample(
                reason=reason,
                example_id=example_id,
                label=None if pd.isna(example["label_name"]) else str(example["label_name"]),
                predicted=str(example["predicted_name"]),
                confidence=float(example["confidence"]),
                truncated=bool(example["truncated"]),
                rows=rows,
                pair=pair,
            )
        )
    return out


def cells_per_text(
    texts: Sequence[str], tokens: pd.DataFrame, values: np.ndarray, positive: str = POSITIVE
) -> list[list[HeatCell]]:
    """One list of cells per text of the example (two for a pair), on the row's one colour scale."""
    segment = tokens["segment"].to_numpy() if "segment" in tokens else np.zeros(len(tokens), dtype=int)
    scale = float(np.max(np.abs(values))) if values.size else 0.0
    return [cells(text, tokens[segment == i], values[segment == i], positive, scale) for i, text in enumerate(texts)]


def cells(
    text: str,
    tokens: pd.DataFrame,
    values: np.ndarray,
    positive: str = POSITIVE,
    scale: float | None = None,
) -> list[HeatCell]:
    """Colour each token by its score relative to the row's largest magnitude (red: for ŷ, blue: against).

    The opacity is ``0.08 + 0.85 · |s_j| / max_i |s_i|``. A token shows the text its offsets cover,
    never the tokenizer's piece (``##ing``, ``Ġthe``, ``▁the``): a leading space inside the span
    (byte-level BPE, SentencePiece) becomes the gap before the cell, and a token whose span the
    previous one already covered (the second byte of a character split by byte-level BPE) shows no text.
    """
    if scale is None:
        scale = float(np.max(np.abs(values))) if values.size else 0.0
    out = []
    shown_until = 0
    pending_gap = False  # a cell that showed only whitespace (SentencePiece's lone ``▁``) passes its gap on
    for (start, end), value in zip(tokens[["char_start", "char_end"]].itertuples(index=False), values, strict=True):
        start = max(int(start), shown_until) if end > start else int(start)
        piece = text[start:end] if end > start else ""
        words = piece.lstrip()
        gap = pending_gap or start > shown_until or len(words) < len(piece)
        pending_gap = gap and not words
        strength = abs(value) / scale if scale > 0 else 0.0
        rgb = positive if value >= 0 else NEGATIVE
        out.append(
            HeatCell(
                text=words,
                space_before=bool(out) and gap and bool(words),
                score=float(value),
                colour=f"rgba({rgb}, {0.08 + 0.85 * strength:.2f})",
            )
        )
        shown_until = max(shown_until, int(end))
    return out
