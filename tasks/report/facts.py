"""The report's fact tables: model and data, settings, definitions, the example table and the costs.

Pure functions of the run's manifest and configuration and of its stored tables; every value is
already a string (or a number the template formats).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tasks.config import AuditConfig
from tasks.evaluate.metrics import METRICS
from tasks.evaluate.statistics import STRENGTH_BANDS
from tasks.explain.registry import spec_of
from tasks.records import UNDER_TEST
from tasks.verdict.sample_size import sample_words


def ig_steps_words(schedule: tuple[int, ...]) -> str:
    """Integrated gradients' step schedule in words: ``m = 50 steps``, or the sizes tried in turn."""
    if len(schedule) == 1:
        return f"m = {schedule[0]} steps"
    return f"m = {', then '.join(map(str, schedule))} steps, each larger size only where completeness fails"


def manifest_rows(manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Model, data and software of the run, as (name, value) rows."""
    model = manifest.get("model", {})
    data = manifest.get("data", {})
    source = model.get("source", {})
    rows = [
        ("Model", str(model.get("name_or_path", ""))),
        ("Model type", str(source.get("model_type", ""))),
        (
            "Model source",
            ", ".join(f"{k}: {v}" for k, v in source.items() if k not in {"build_manifest", "model_type"} and v),
        ),
        ("Weights SHA-256", str(model.get("fingerprint", ""))),
        ("Labels", ", ".join(model.get("labels", []))),
    ]
    if "device" in model:
        rows.append(("Device and precision", f"{model['device']}, {model.get('precision', 'float32')}"))
    if "family" in model:
        rows.append(("Adapter", str(model["family"])))
    build = source.get("build_manifest")
    if build:
        rows += [
            (
                "Built from",
                f"{build['base_model']['name']} ({build['base_model']['package']}), "
                f"fine-tuned on {build['corpus']['name']} ({build['corpus']['package']})",
            ),
            ("Build accuracy", ", ".join(f"{k} {v:.3f}" for k, v in build["accuracy"].items())),
            ("Training", ", ".join(f"{k}={v}" for k, v in build["training"].items())),
        ]
    rows += [
        ("Dataset", f"{data.get('name', '')} (split {data.get('split', '')})"),
        ("Dataset source", ", ".join(f"{k}: {v}" for k, v in data.get("source", {}).items())),
        ("Data SHA-256", str(data.get("fingerprint", ""))),
        ("Examples in the split", str(data.get("rows_in_split", ""))),
        ("Software", ", ".join(f"{k} {v}" for k, v in manifest.get("versions", {}).items())),
        ("Platform", str(manifest.get("platform", ""))),
    ]
    if "execution" in manifest:
        rows.append(("Batches ran on", str(manifest["execution"]["summary"])))
    return rows


def dataset_rows(examples: pd.DataFrame) -> list[tuple[str, str]]:
    """The audited examples: count, lengths, truncation, classes and accuracy."""
    lengths = examples["n_content_tokens"]
    rows = [
        ("Examples audited", str(len(examples))),
        (
            "Content tokens per example",
            f"median {lengths.median():.0f}, 90th percentile {lengths.quantile(0.9):.0f}, max {lengths.max()}",
        ),
        ("Truncated", str(int(examples["truncated"].sum()))),
        (
            "Predicted classes",
            ", ".join(f"{k}: {v}" for k, v in examples["predicted_name"].value_counts().sort_index().items()),
        ),
    ]
    labelled = examples.dropna(subset=["label"])
    if not labelled.empty:
        rows.append(
            (
                "Gold classes",
                ", ".join(f"{k}: {v}" for k, v in labelled["label_name"].value_counts().sort_index().items()),
            )
        )
        rows.append(("Accuracy", f"{100 * float((labelled['label'] == labelled['predicted']).mean()):.1f} %"))
    return rows


UNITS = {
    "token": "tokens",
    "word": "words (whitespace-separated; a word scores the sum of its sub-token scores, the random baseline "
    "its first draw; leave-one-out removes each word once)",
    "sentence": "sentences (ending at . ! ? before a capital, digit or quote, or at a blank line; a sentence scores "
    "the sum of its token scores, the random baseline its first draw; leave-one-out removes each sentence once)",
}
"""The run's units (``--units``) in words."""


def settings(config: AuditConfig, manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The method and sampling settings of the run, in words (with what ``--target-precision`` chose)."""
    options = config.methods
    sizing = manifest.get("data", {}).get("sample")
    rows = [
        ("Methods", ", ".join(options.methods)),
        ("Removal operator", options.removal),
        ("Units removed by leave-one-out and ranked by every metric", UNITS[options.units]),
        ("Rationale sizes k", ", ".join(f"{100 * k:g} %" for k in options.k_fractions)),
        ("Integrated gradients", f"{ig_steps_words(options.ig_steps)}, {options.ig_rule} rule, [PAD] baseline"),
        ("Random baseline", f"{options.random_draws} draws, seed {options.seed}"),
        ("Top-k overlap", f"k = {options.agreement_top_k}"),
        ("Max length", f"{config.data.max_length} tokens"),
        (
            "Sample",
            "whole split"
            if config.data.limit is None
            else f"{config.data.limit} examples in seeded hash order (seed {config.data.sample_seed})",
        ),
        (
            "Intervals",
            "percentile bootstrap 95 %, 2,000 resamples, seeded; paired Wilcoxon signed-rank tests",
        ),
    ]
    if sizing:
        rows.append(("Sample size", sample_words(sizing)))
    return rows


def verdict_settings(config: AuditConfig) -> list[tuple[str, str]]:
    """The thresholds of the verdict rules, in words."""
    options = config.verdict
    return [
        ("Verdict references", ", ".join(options.references)),
        ("Agreement threshold", f"mean Kendall τ with the references ≥ {options.agreement_min:g}"),
        ("No better than random", f"AOPC comprehensiveness gain over random < {options.equivalence_margin:g}"),
        ("Sensitive to attention", f"median TVD under permuted attention ≥ {options.sensitivity_min:g}"),
        ("Important head", f"mean TVD when masked ≥ {options.importance_min:g}"),
        (
            "References agree",
            f"mean Kendall τ between the verdict references ≥ {options.consistency_min:g} (upper end of the "
            "interval; below it the verdict is inconclusive: references disagree)",
        ),
        ("Smallest judged slice", f"{options.min_examples} examples"),
        ("Confidence bins", "edges " + ", ".join(f"{edge:g}" for edge in options.confidence_bins)),
        ("Length bins", "edges " + ", ".join(f"{edge:g}" for edge in options.length_bins) + " content tokens"),
    ]


def method_definitions(methods: Sequence[str]) -> list[dict[str, str]]:
    """The registry's definition of every method of the run (the methodology's table)."""
    return [
        {
            "name": s.name,
            "title": s.title,
            "family": s.family.value,
            "formula": s.formula,
            "citation": s.citation,
            "signed": "signed" if s.signed else "non-negative",
        }
        for s in (spec_of(m) for m in methods)
    ]


def metric_definitions() -> list[dict[str, str]]:
    """The registry's definition of every metric (the methodology's table)."""
    return [
        {
            "name": s.name,
            "title": s.title,
            "kind": s.kind,
            "definition": s.definition,
            "citation": s.citation,
            "direction": {True: "higher", False: "lower", None: "—"}[s.higher_is_better],
        }
        for s in METRICS.values()
    ]


def strength_bands() -> str:
    """The words for the size of a Kendall τ, e.g. '|τ| < 0.1: negligible, ...'."""
    return ", ".join(
        f"|τ| < {bound:g}: {word}" if math.isfinite(bound) else f"otherwise {word}" for bound, word in STRENGTH_BANDS
    )


SHOWN_BECAUSE = {
    "misclassified": "misclassified",
    "agreement": "lowest agreement",
    "comprehensiveness": "least faithful",
    "sample": "random sample",
}
"""Why a capped example table shows a row (the column's words); see ``shown_examples``."""


def shown_examples(examples: pd.DataFrame, verdicts: pd.DataFrame, limit: int, seed: int = 0) -> dict[str, str]:
    """The examples of the example table, each with why it is shown (``SHOWN_BECAUSE``; '' when all fit).

    When the run has at most ``limit`` examples, every one is shown, in id order. Otherwise up to a
    quarter of ``limit`` each, in this order and skipping those already chosen: the misclassified
    examples, most confident first; the lowest mean Kendall τ of the attention-based explanations with
    the verdict references; the lowest mean AOPC comprehensiveness gain of the attention-based
    explanations over random (the per-example evidence of ``example_verdicts``). The rest of ``limit``
    is a seeded uniform sample of the other examples, in id order.
    """
    ids = examples["example_id"].astype(str).sort_values().tolist()
    if len(ids) <= limit:
        return dict.fromkeys(ids, "")
    wrong = examples[examples["label"].notna() & (examples["label"] != examples["predicted"])]
    ranked = {"misclassified": wrong.sort_values(["confidence", "example_id"], ascending=[False, True])["example_id"]}
    if not verdicts.empty:
        evidence = verdicts.groupby("example_id")[["agreement", "comprehensiveness"]].mean()
        for column in ("agreement", "comprehensiveness"):
            ranked[column] = evidence[column].dropna().sort_values(kind="stable").index.to_series()
    chosen: dict[str, str] = {}
    for reason, ordered in ranked.items():
        fresh = [str(example_id) for example_id in ordered if str(example_id) not in chosen][: limit // 4]
        chosen |= dict.fromkeys(fresh, SHOWN_BECAUSE[reason])
    rest = [example_id for example_id in ids if example_id not in chosen]
    picked = np.random.default_rng(seed).permutation(len(rest))[: limit - len(chosen)]
    chosen |= {rest[index]: SHOWN_BECAUSE["sample"] for index in sorted(picked)}
    return chosen


def example_table(
    examples: pd.DataFrame, verdicts: pd.DataFrame, methods: Sequence[str], limit: int | None = None, seed: int = 0
) -> list[dict[str, Any]]:
    """The examples with their prediction and their verdict per attention-based explanation (HTML table).

    Every example in id order, or at most ``limit`` of them (``shown_examples``), each row with why it is
    shown. ``text_pair`` is the second text of a text pair (None for a single text), shown beside the first.
    """
    attention = [m for m in methods if spec_of(m).family in UNDER_TEST]
    shown = shown_examples(examples, verdicts[verdicts["method"].isin(attention)], limit or len(examples), seed)
    by_example: dict[str, dict[str, str]] = {}
    for row in verdicts[verdicts["example_id"].isin(list(shown))].itertuples(index=False):
        by_example.setdefault(str(row.example_id), {})[str(row.method)] = str(row.verdict)
    ordered = examples.set_index(examples["example_id"].astype(str)).loc[list(shown)]
    pairs = ordered["text_pair"] if "text_pair" in ordered.columns else pd.Series(None, index=ordered.index)
    columns = ["example_id", "text", "label_name", "predicted_name", "confidence", "n_content_tokens"]
    rows = []
    for (example_id, text, label, predicted, confidence, tokens), pair in zip(
        ordered[columns].itertuples(index=False, name=None), pairs, strict=True
    ):
        rows.append(
            {
                "example_id": example_id,
                "text": text,
                "text_pair": _second_text(pair),
                "label": None if pd.isna(label) else label,
                "predicted": predicted,
                "confidence": float(confidence),
                "tokens": int(tokens),
                "verdicts": [(spec_of(m).title, by_example.get(example_id, {}).get(m, "")) for m in attention],
                "shown_because": shown[str(example_id)],
            }
        )
    return rows


def _second_text(pair: Any) -> str | None:
    """The second text of a pair, or None for a single text."""
    return None if pair is None or pd.isna(pair) else str(pair)


def batches_at_once(config: AuditConfig, manifest: Mapping[str, Any]) -> int:
    """How many batches the run computed at once: as its manifest records (``execution``), else as configured.

    Runs stored before the manifest recorded it have a number in their configuration.
    """
    recorded = manifest.get("execution", {}).get("concurrency")
    return int(recorded or config.execution.concurrency or 1)


def wall_shares(rows: pd.DataFrame, concurrency: int) -> pd.DataFrame:
    """The ``costs`` rows with each stage's seconds as its share of the run's wall time: ``seconds / concurrency``.

    A batch's stages are timed in the worker that computes it, and ``concurrency`` batches run at once
    (threads, worker processes or Dask workers), so the stored seconds overlap: summed, they are worker
    seconds, about ``concurrency`` times the batches' wall time. Divided, the report's seconds per example
    add up to the wall time, as with one batch at a time.
    """
    return rows if concurrency == 1 else rows.assign(seconds=rows["seconds"] / concurrency)


def costs(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Per stage: seconds, forward and backward passes per example, and tokens per second."""
    if rows.empty:
        return []
    total = rows.groupby("stage", sort=False)[
        ["seconds", "forward_rows", "forward_tokens", "backward_rows", "backward_tokens"]
    ].sum()
    examples = rows.drop_duplicates("batch_id")["examples"].sum()
    out = []
    for stage, row in total.iterrows():
        out.append(
            {
                "stage": stage,
                "seconds_per_example": row["seconds"] / examples,
                "forward_per_example": row["forward_rows"] / examples,
                "backward_per_example": row["backward_rows"] / examples,
                "tokens_per_second": (row["forward_tokens"] + row["backward_tokens"]) / row["seconds"]
                if row["seconds"]
                else 0.0,
            }
        )
    return out


def cost_bound(
    rows: pd.DataFrame,
    examples: pd.DataFrame,
    metrics: pd.DataFrame,
    manifest: Mapping[str, Any],
    config: AuditConfig,
) -> dict[str, str]:
    """The measured throughput, the naive pass-count bound, and this run's seconds per example.

    Integrated gradients counts, per example, every size of its step schedule up to the one it was kept at
    (its ``ig_steps`` diagnostic).
    """
    from tasks.evaluate.costs import Throughput, naive_bound

    measured = manifest.get("throughput")
    if rows.empty or not measured:
        return {}
    throughput = Throughput(**measured)
    computed = examples[examples["batch_id"].isin(set(rows["batch_id"]))]
    kept = metrics[(metrics["method"] == "integrated_gradients") & (metrics["metric"] == "ig_steps")]
    steps = kept.set_index("example_id")["value"].reindex(computed["example_id"])
    bound = naive_bound(
        config, computed["n_tokens"].tolist(), computed["n_content_tokens"].tolist(),
        int(manifest["model"]["layers"]), int(manifest["model"]["heads"]), throughput,
        [None if pd.isna(value) else int(value) for value in steps],
    )  # fmt: skip
    seconds = float(rows["seconds"].sum())
    count = max(len(computed), 1)
    return {
        "forward": f"{throughput.forward:,.0f}",
        "forward_backward": f"{throughput.forward_backward:,.0f}",
        "length": str(throughput.length),
        "bound": f"{bound / count:.3f}",
        "actual": f"{seconds / count:.3f}",
        "ratio": f"{bound / seconds:.1f}" if seconds else "n/a",
    }
