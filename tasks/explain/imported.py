"""Explanations computed elsewhere (SHAP, LIME, a vendor's explainer): import, align, export.

The file schema (Parquet, or JSON Lines with one object per row), which ``attention-audit export`` also
writes:

| column | type | meaning |
|---|---|---|
| ``example_id`` | string | the example's id in the audited corpus |
| ``method`` | string | the explanation's name (not a built-in method id) |
| ``score`` | number | importance for the predicted class (signed: negative is evidence against) |
| ``token_index`` | integer | position among the model's tokens, special tokens included; or |
| ``char_start``, ``char_end`` | integers | a character span of the text (end exclusive) |

A row gives either ``token_index`` or the character span; for a text pair, character spans index the
first text, and token indices reach both. Character spans are aligned to the model's
tokens with the tokenizer's offset mapping: a token's score is the sum of the scores of the spans it
overlaps (a word-level score lands on each of the word's pieces). Token-index explanations must cover
every content token of the example. Imported explanations are audited like attention (agreement with
the references, faithfulness against random, verdict); they cannot be recomputed on a randomised model,
so they have no sanity check.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.errors import AuditError
from tasks.explain.registry import METHODS
from tasks.records import EncodedExample

REQUIRED = ("example_id", "method", "score")
FIX = "write the file as described under 'External explanations' in the README (attention-audit export shows one)"


def fingerprint(path: Path) -> str:
    """SHA-256 of the file's bytes (part of the run's identity)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_explanations(path: Path) -> pd.DataFrame:
    """Read and check an explanations file.

    Raises:
        AuditError: The file is missing or unreadable, lacks a column, or names a built-in method.
    """
    path = Path(path)
    if not path.exists():
        raise AuditError(f"there is no explanations file {path}", "pass an existing Parquet or JSONL file")
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_json(path, lines=True)
    except (ValueError, OSError) as error:
        raise AuditError(f"cannot read the explanations file {path}: {error}", FIX) from error
    missing = [column for column in REQUIRED if column not in frame]
    by_token = "token_index" in frame
    by_span = {"char_start", "char_end"} <= set(frame.columns)
    if missing or not (by_token or by_span):
        needed = missing or ["token_index or char_start and char_end"]
        raise AuditError(f"the explanations file {path} lacks {', '.join(needed)}", FIX)
    clashing = sorted(set(frame["method"]) & set(METHODS))
    if clashing:
        raise AuditError(
            f"the explanations file {path} uses built-in method names: {', '.join(clashing)}",
            "rename the imported explanations (e.g. shap, lime, vendor_x)",
        )
    if not pd.api.types.is_numeric_dtype(frame["score"]) or frame["score"].isna().any():
        raise AuditError(f"the explanations file {path} has scores that are not numbers", FIX)
    return frame.assign(example_id=frame["example_id"].astype(str), method=frame["method"].astype(str))


def align(frame: pd.DataFrame, examples: Sequence[EncodedExample]) -> dict[str, dict[str, np.ndarray]]:
    """Per example and imported method, one score per model token.

    Raises:
        AuditError: A row names an example that is not audited, a span outside its text, a token index
            outside its tokens, or a token-index explanation does not cover every content token.
    """
    by_id = {example.example_id: example for example in examples}
    unknown = sorted(set(frame["example_id"]) - set(by_id))
    if unknown:
        raise AuditError(
            f"the explanations name {len(unknown)} example(s) that are not in the audited corpus, e.g. {unknown[0]!r}",
            "use the corpus's example ids (--id-column) and audit the same split and sample",
        )
    aligned: dict[str, dict[str, np.ndarray]] = {}
    for (example_id, method), rows in frame.groupby(["example_id", "method"], sort=False):
        example_id, method = str(example_id), str(method)  # strings already (read_explanations); typed Hashable
        example = by_id[example_id]
        aligned.setdefault(example_id, {})[method] = _scores(example, method, rows)
    return aligned


def attach(examples: Sequence[EncodedExample], aligned: Mapping[str, Mapping[str, np.ndarray]]) -> list[EncodedExample]:
    """The examples with their imported explanations."""
    return [replace(e, imported=dict(aligned.get(e.example_id, {}))) for e in examples]


def _scores(example: EncodedExample, method: str, rows: pd.DataFrame) -> np.ndarray:
    scores = np.zeros(example.length)
    token_rows = rows[rows["token_index"].notna()] if "token_index" in rows else rows.iloc[0:0]
    span_rows = rows.drop(token_rows.index)
    if not token_rows.empty:
        indices = token_rows["token_index"].astype(int).to_numpy()
        if indices.min() < 0 or indices.max() >= example.length:
            raise AuditError(
                f"explanation {method!r} of example {example.example_id!r} has token index {int(indices.max())}, but "
                f"the model reads {example.length} tokens (special tokens included)",
                "count token_index over the model's tokens, as attention-audit export writes them",
            )
        covered = np.zeros(example.length, dtype=bool)
        covered[indices] = True
        if not covered[example.content_mask].all():
            raise AuditError(
                f"explanation {method!r} of example {example.example_id!r} has the wrong length: it scores "
                f"{int(covered[example.content_mask].sum())} of the {int(example.content_mask.sum())} content tokens",
                "give one score per content token of the model's tokenisation, or give character spans",
            )
        np.add.at(scores, indices, token_rows["score"].to_numpy(dtype=float))
    for row in span_rows.to_dict("records"):
        start, end = int(row["char_start"]), int(row["char_end"])
        if not 0 <= start < end <= len(example.text):
            raise AuditError(
                f"explanation {method!r} of example {example.example_id!r} has the span [{start}, {end}), outside its "
                f"text of {len(example.text)} characters",
                "give spans as char_start < char_end within the text (end exclusive)",
            )
        first_text = example.segments is None or example.segments == 0  # spans index the first text of a pair
        overlap = (example.offsets[:, 0] < end) & (start < example.offsets[:, 1]) & example.content_mask & first_text
        scores[overlap] += float(row["score"])
    return np.where(example.content_mask, scores, 0.0)


def export_rows(tokens: pd.DataFrame, token_scores: pd.DataFrame) -> pd.DataFrame:
    """A run's token scores (first draw) in the import schema, with token indices and character spans."""
    scores = token_scores[token_scores["draw"] == 0]
    joined = scores.merge(tokens, on=["run_id", "example_id", "position"], how="left")
    return pd.DataFrame(
        {
            "example_id": joined["example_id"].astype(str),
            "method": joined["method"].astype(str),
            "token_index": joined["position"].astype(int),
            "char_start": joined["char_start"].astype(int),
            "char_end": joined["char_end"].astype(int),
            "token": joined["token"].astype(str),
            "score": joined["score"].astype(float),
        }
    )


def write_rows(frame: pd.DataFrame, path: Path) -> Path:
    """Write rows as Parquet (``.parquet``) or JSON Lines (anything else)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        plain = frame.astype(object).where(frame.notna(), None)  # JSON has no NaN: undefined becomes null
        with path.open("w", encoding="utf-8") as handle:
            for row in plain.to_dict(orient="records"):
                handle.write(json.dumps(row, ensure_ascii=False, default=float) + "\n")
    return path
