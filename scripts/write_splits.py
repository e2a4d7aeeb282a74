"""Write the hash split of every built-in corpus to data/splits/<corpus>.csv (id, split).

The split is computed by ``tasks.data.builtin.hash_split``; the files let a reviewer see exactly which
examples the default models were trained, validated and audited on. ``tests/test_corpora.py`` checks
that they still match the code.

Usage: python scripts/write_splits.py
"""

from __future__ import annotations

from pathlib import Path

from tasks.data.builtin import BUILTIN_CORPORA, hash_split

OUT = Path(__file__).resolve().parent.parent / "data" / "splits"


def main() -> None:
    """Write one split file per built-in corpus."""
    OUT.mkdir(parents=True, exist_ok=True)
    for name, corpus in BUILTIN_CORPORA.items():
        frame = corpus.read_all()[["example_id"]].copy()
        frame["split"] = [hash_split(example_id, name) for example_id in frame["example_id"]]
        frame.to_csv(OUT / f"{name}.csv", index=False)
        print(f"{OUT / f'{name}.csv'}: {frame['split'].value_counts().to_dict()}")


if __name__ == "__main__":
    main()
