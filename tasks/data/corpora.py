"""Evaluation corpora: built-in ones (``tasks.data.builtin``), local files and folders, and the hub.

Every loader returns a ``Corpus``: a DataFrame with the columns ``example_id`` (str), ``text`` (str),
``label`` (the raw gold label: a class index, a label name, or None), ``metadata`` (a dict of extra
columns kept for slicing) and, when the corpus has them, ``rationale`` (the raw human rationale), plus a
fingerprint of its content.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from tasks.config import DataSpec
from tasks.data.builtin import BUILTIN_CORPORA, package_version
from tasks.errors import AuditError


@dataclass(frozen=True)
class Corpus:
    """A loaded evaluation corpus.

    Attributes:
        name: Where it came from (built-in name, path or hub id), for the report.
        split: The split that was read.
        frame: Columns ``example_id``, ``text``, ``label``, ``metadata``.
        labels: Label names when the source declares them (built-in corpora, hub ClassLabel), else ().
        fingerprint: SHA-256 of the ids, texts and labels of every row of the split, in row order
            (before any ``limit`` sample).
        rows_in_split: Rows in the split before any ``limit`` sample.
        source: Provenance for the manifest (package and version, file path, hub revision).
    """

    name: str
    split: str
    frame: pd.DataFrame
    labels: tuple[str, ...]
    fingerprint: str
    rows_in_split: int
    source: dict[str, str]

    def __len__(self) -> int:
        return len(self.frame)


def content_fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 over ``example_id``, ``text``, ``label``, and the rationale and second text where given.

    Rows in order; a row without rationale or second text hashes as it did before either existed.
    """
    digest = hashlib.sha256()
    rationales = frame["rationale"] if "rationale" in frame else [None] * len(frame)
    pairs = frame["text_pair"] if "text_pair" in frame else [None] * len(frame)
    rows = zip(frame["example_id"], frame["text"], frame["label"], rationales, pairs, strict=True)
    for example_id, text, label, rationale, pair in rows:
        fields = [example_id, text, label] if rationale is None else [example_id, text, label, rationale]
        if pair is not None:
            fields.append({"text_pair": pair})
        digest.update(json.dumps(fields, ensure_ascii=False, default=_jsonable).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def _jsonable(value: object) -> object:
    return value.tolist() if isinstance(value, np.ndarray | np.generic) else str(value)


# --- any corpus ------------------------------------------------------------------------------------

LOCAL_READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".csv": pd.read_csv,
    ".tsv": lambda path: pd.read_csv(path, sep="\t"),
    ".jsonl": lambda path: pd.read_json(path, lines=True),
    ".json": lambda path: pd.read_json(path, lines=path.read_text(encoding="utf-8").lstrip()[:1] != "["),
    ".parquet": pd.read_parquet,
}


def load_corpus(spec: DataSpec) -> Corpus:
    """Load the split named by ``spec``: a built-in corpus, a local file or folder, or a hub dataset.

    Raises:
        AuditError: The dataset cannot be found or read, a named column is missing or not text, or the
            split is empty.
    """
    path = Path(spec.dataset).expanduser()
    if spec.dataset in BUILTIN_CORPORA and not path.exists():
        frame, labels, source = _read_builtin(spec)
    else:
        if path.exists():
            raw, source = _read_local(path, spec.split)
            labels = ()
        else:
            raw, labels, source = _read_hub(spec.dataset, spec.split)
        frame = _standardise(raw, spec)
    if frame.empty:
        raise AuditError(
            f"the corpus {spec.dataset!r} (split {spec.split!r}) has no examples",
            "point --dataset at a file or dataset with at least one row, or choose another --split",
        )
    fingerprint, rows_in_split = content_fingerprint(frame), len(frame)
    if spec.limit is not None:
        frame = sample_in_hash_order(frame, spec.limit, spec.sample_seed)
    return Corpus(
        name=spec.dataset,
        split=spec.split,
        frame=frame.reset_index(drop=True),
        labels=tuple(labels),
        fingerprint=fingerprint,
        rows_in_split=rows_in_split,
        source=source,
    )


def sample_in_hash_order(frame: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    """The first ``limit`` rows in the order of ``sha256(f"{seed}:{example_id}")``.

    A seeded random sample that, unlike "the first N rows", does not follow the corpus order (the
    movie snippets are sorted by class), and that is nested: a larger limit keeps the smaller sample.
    """
    keys = [hashlib.sha256(f"{seed}:{example_id}".encode()).hexdigest() for example_id in frame["example_id"]]
    order = np.argsort(np.array(keys), kind="stable")
    return frame.iloc[order[:limit]].reset_index(drop=True)


def _read_builtin(spec: DataSpec) -> tuple[pd.DataFrame, tuple[str, ...], dict[str, str]]:
    """A built-in corpus's split, already in the corpus columns, with its label names and provenance."""
    builtin = BUILTIN_CORPORA[spec.dataset]
    frame = builtin.read(spec.split)
    if spec.text_pair_column is not None:
        raise AuditError(
            f"the built-in corpus {spec.dataset!r} holds single texts, so it has no column "
            f"{spec.text_pair_column!r} for --text-pair-column",
            "leave out --text-pair-column, or audit a file or hub dataset with two text columns",
        )
    source = {
        "kind": "builtin",
        "package": f"{builtin.distribution}=={package_version(builtin.distribution)}",
        "licence": builtin.licence,
        "split_rule": "sha256(name:id) mod 100: <80 train, <90 validation, else test",
    }
    return frame, builtin.labels, source


def _read_local(path: Path, split: str) -> tuple[pd.DataFrame, dict[str, str]]:
    if path.is_dir():
        from datasets import DatasetDict, load_from_disk

        try:
            loaded = load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as error:
            raise AuditError(
                f"the folder {path} is not a dataset saved with datasets' save_to_disk ({error})",
                "pass a CSV, JSONL or Parquet file, or a folder written by Dataset.save_to_disk",
            ) from error
        if isinstance(loaded, DatasetDict):
            if split not in loaded:
                raise AuditError(
                    f"the dataset folder {path} has no split {split!r}",
                    f"use --split with one of: {', '.join(str(name) for name in loaded)}",
                )
            loaded = loaded[split]
        # to_pandas() is one frame unless batched=True (the stubs also allow an iterator of frames).
        return cast(pd.DataFrame, loaded.to_pandas()), {"kind": "local", "path": str(path.resolve())}
    reader = LOCAL_READERS.get(path.suffix.lower())
    if reader is None:
        raise AuditError(
            f"cannot read {path}: unknown file type {path.suffix!r}",
            f"use one of: {', '.join(LOCAL_READERS)}",
        )
    try:
        frame = reader(path)
    except pd.errors.EmptyDataError as error:
        raise AuditError(f"the file {path} is empty", "point --dataset at a file with a header and rows") from error
    except (ValueError, UnicodeDecodeError, OSError) as error:
        raise AuditError(
            f"cannot read {path} as {path.suffix.lstrip('.').upper()}: {error}",
            "check that the file is valid and UTF-8 encoded",
        ) from error
    return frame, {"kind": "local", "path": str(path.resolve())}


def _read_hub(dataset_id: str, split: str) -> tuple[pd.DataFrame, tuple[str, ...], dict[str, str]]:
    from datasets import load_dataset

    try:
        loaded = load_dataset(dataset_id, split=split)
    except Exception as error:  # datasets raises many types for "not found / no network"
        raise AuditError(
            f"cannot load the dataset {dataset_id!r} (split {split!r}): it is neither a built-in corpus "
            f"({', '.join(BUILTIN_CORPORA)}), nor a local path, nor reachable on the Hugging Face hub "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})",
            "check the name and split, pass a local CSV / JSONL / Parquet file, or connect to the network",
        ) from error
    labels: tuple[str, ...] = ()
    for feature in loaded.features.values():
        names = getattr(feature, "names", None)
        if names:
            labels = tuple(names)
            break
    source = {"kind": "hub", "id": dataset_id, "fingerprint": str(getattr(loaded, "_fingerprint", ""))}
    return cast(pd.DataFrame, loaded.to_pandas()), labels, source  # one frame: not batched


def _standardise(raw: pd.DataFrame, spec: DataSpec) -> pd.DataFrame:
    """Rename the user's columns to the corpus columns, checking that they exist and hold text."""
    texts = _texts(raw, spec, spec.text_column, "--text-column")
    pairs = None if spec.text_pair_column is None else _texts(raw, spec, spec.text_pair_column, "--text-pair-column")
    if spec.label_column is not None:
        _require(raw, spec, spec.label_column, "--label-column (or --no-labels for an unlabelled corpus)")
        labels = [None if _is_missing(value) else _plain(value) for value in raw[spec.label_column]]
    else:
        labels = [None] * len(raw)
    ids = _ids(raw, spec)
    if spec.rationale_column is not None:
        _require(raw, spec, spec.rationale_column, "--rationale-column")
        rationales = [None if _is_missing(value) else value for value in raw[spec.rationale_column]]
    else:
        rationales = [None] * len(raw)
    used = {spec.text_column, spec.text_pair_column, spec.label_column, spec.id_column, spec.rationale_column}
    extra = [c for c in raw.columns if c not in used]
    metadata = [
        {str(c): _plain(v) for c, v in zip(extra, row, strict=True) if _is_scalar(v)}
        for row in raw[extra].itertuples(index=False, name=None)
    ]
    frame = pd.DataFrame(
        {"example_id": ids, "text": list(texts), "label": labels, "metadata": metadata, "rationale": rationales}
    )
    if pairs is not None:
        frame.insert(2, "text_pair", list(pairs))
    return frame


def _require(raw: pd.DataFrame, spec: DataSpec, column: str, flag: str) -> None:
    """Refuse a named column that the dataset lacks, naming its columns and the flag to fix."""
    if column not in raw.columns:
        raise AuditError(
            f"the dataset {spec.dataset!r} has no column {column!r} (columns: {', '.join(map(str, raw.columns))})",
            f"name the right column with {flag}",
        )


def _texts(raw: pd.DataFrame, spec: DataSpec, column: str, flag: str) -> pd.Series:
    """A text column, refused where any row holds something other than a string."""
    _require(raw, spec, column, flag)
    texts = raw[column]
    not_text = [i for i, value in enumerate(texts) if not isinstance(value, str)]
    if not_text:
        first = not_text[0]
        raise AuditError(
            f"the text column {column!r} holds non-text values in {len(not_text)} row(s), "
            f"first at row {first}: {texts.iloc[first]!r}",
            f"choose the column that holds the texts with {flag}, or remove rows without text",
        )
    return texts


def _ids(raw: pd.DataFrame, spec: DataSpec) -> list[str]:
    """The example ids: the id column as text (refused if it repeats an id), else the row numbers."""
    if spec.id_column is None:
        return [str(i) for i in range(len(raw))]
    _require(raw, spec, spec.id_column, "--id-column")
    ids = [str(value) for value in raw[spec.id_column]]
    duplicated = pd.Series(ids)[pd.Series(ids).duplicated()].tolist()
    if duplicated:
        raise AuditError(
            f"the id column {spec.id_column!r} repeats ids, e.g. {duplicated[0]!r}",
            "use a column with one unique id per row, or leave out --id-column to number the rows",
        )
    return ids


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool | np.generic) and not _is_missing(value)


def _plain(value: object) -> object:
    """Numpy scalars to Python scalars (JSON-ready)."""
    return value.item() if isinstance(value, np.generic) else value
