"""The seed baseline's other fine-tunings: where they are, loading them, and refusing incomparable ones.

``--seed-models`` names folders written by ``save_pretrained`` or, for an embedded default, ``preset``:
the preset's ``extra_seeds`` variants (``tasks.model.presets.seed_variant``), fine-tuned on first use and
cached like the default model. Each seed model gets the audited model's spec with another folder (same
device, precision and safety switches) and loads through the cached ``load_model``, so a worker loads it
once. A seed model is comparable only if it is the same architecture, with the same tokenizer and labels:
otherwise its attention is over other tokens or its outputs over other classes, and it is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from tasks.config import ModelSpec
from tasks.errors import AuditError
from tasks.model.bundle import ModelBundle
from tasks.model.loading import load_model
from tasks.model.presets import PRESETS, ensure_model, seed_variant

PRESET_SEEDS = "preset"
"""The ``--seed-models`` entry that stands for the embedded default's extra seeds."""

SAME_MODEL_HINT = (
    "pass other fine-tunings of the audited model: the same architecture, tokenizer and labels, trained on "
    "the same data with another seed"
)


def seed_model_specs(
    audited: ModelSpec, entries: Sequence[str], progress: Callable[[str], None] | None = None
) -> tuple[ModelSpec, ...]:
    """The spec of every seed model ``entries`` name (``preset`` expands to the preset's extra seeds).

    Raises:
        AuditError: An entry is not a folder, or ``preset`` is given for a model that is not a preset.
    """
    specs: list[ModelSpec] = []
    for entry in entries:
        if entry == PRESET_SEEDS:
            specs += [_with_folder(audited, folder) for folder in preset_seed_folders(audited, progress)]
            continue
        folder = Path(entry).expanduser()
        if not folder.is_dir():
            raise AuditError(
                f"--seed-models names {entry!r}, which is not a folder",
                "pass folders written by save_pretrained, comma-separated, or preset for the default model's seeds",
            )
        specs.append(_with_folder(audited, folder))
    return tuple(specs)


def preset_seed_folders(audited: ModelSpec, progress: Callable[[str], None] | None = None) -> list[Path]:
    """The built folders of the audited preset's extra seeds (each fine-tuned first if not cached).

    Raises:
        AuditError: The audited model is not a preset.
    """
    name = audited.name_or_path
    if name not in PRESETS or Path(name).exists():
        raise AuditError(
            f"--seed-models preset needs an embedded default model, but the audited model is {name!r}",
            f"audit a preset ({', '.join(PRESETS)}) or name the other fine-tunings' folders",
        )
    preset = PRESETS[name]
    return [ensure_model(seed_variant(preset, seed), progress=progress) for seed in preset.extra_seeds]


def load_seed_models(audited: ModelSpec, specs: Sequence[ModelSpec]) -> list[tuple[str, ModelBundle]]:
    """Load the audited model and each seed model (cached), and check that each is comparable.

    Returns:
        ``(folder, bundle)`` of each seed model, in the given order.

    Raises:
        AuditError: A seed model is not another fine-tuning of the audited model (``check_comparable``).
    """
    reference = load_model(audited)
    loaded = []
    for spec in specs:
        bundle = load_model(spec)
        check_comparable(reference, bundle, spec.name_or_path)
        loaded.append((spec.name_or_path, bundle))
    return loaded


def check_comparable(audited: ModelBundle, other: ModelBundle, name: str) -> None:
    """Refuse a seed model whose architecture, tokenizer or labels differ from the audited model's.

    Raises:
        AuditError: Naming what differs, with both values.
    """
    ours, theirs = audited.model.config, other.model.config
    checks = (
        ("architecture", ours.model_type, theirs.model_type),
        ("number of layers", audited.num_layers, other.num_layers),
        ("number of heads", audited.num_heads, other.num_heads),
        ("hidden size", getattr(ours, "hidden_size", None), getattr(theirs, "hidden_size", None)),
        ("labels", list(audited.labels), list(other.labels)),
    )
    for what, expected, found in checks:
        if expected != found:
            raise AuditError(
                f"the seed model {name} is not another fine-tuning of the audited model: its {what} ({found}) "
                f"differs from the audited model's ({expected})",
                SAME_MODEL_HINT,
            )
    if audited.tokenizer.get_vocab() != other.tokenizer.get_vocab():
        raise AuditError(
            f"the seed model {name} is not another fine-tuning of the audited model: its tokenizer's vocabulary "
            "differs, so its attention would be over other tokens",
            SAME_MODEL_HINT,
        )


def _with_folder(audited: ModelSpec, folder: Path) -> ModelSpec:
    """The audited model's spec (device, precision, safety switches) pointing at another folder."""
    return audited.model_copy(update={"name_or_path": str(folder.resolve()), "revision": None})
