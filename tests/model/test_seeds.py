"""The seed baseline's other fine-tunings: resolving ``--seed-models`` and refusing incomparable models."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.config import AuditConfig, ModelSpec, SeedOptions
from tasks.errors import AuditError
from tasks.model import seeds as seed_models
from tasks.model.presets import PRESETS, model_dir, seed_variant
from tasks.model.seeds import load_seed_models, seed_model_specs
from tests.conftest import save_tiny_classifier


def test_another_seed_of_a_preset_has_its_own_cache_folder_and_its_seed_in_the_training_settings() -> None:
    preset = PRESETS["movie-snippets"]
    variants = [seed_variant(preset, seed) for seed in preset.extra_seeds]

    assert preset.extra_seeds == (1, 2) and preset.training.seed == 0
    assert [variant.training.seed for variant in variants] == [1, 2]
    assert len({model_dir(preset), *(model_dir(variant) for variant in variants)}) == 3


def test_preset_expands_to_the_presets_extra_seeds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    built = []

    def fake_ensure(preset, progress=None):  # building costs minutes per seed: record what is asked for
        built.append(preset.training.seed)
        folder = tmp_path / f"seed-{preset.training.seed}"
        folder.mkdir(exist_ok=True)
        return folder

    monkeypatch.setattr(seed_models, "ensure_model", fake_ensure)
    audited = ModelSpec(name_or_path="movie-snippets", device="cpu")
    specs = seed_model_specs(audited, ["preset"])

    assert built == [1, 2]
    assert [Path(spec.name_or_path).name for spec in specs] == ["seed-1", "seed-2"]
    assert all(spec.device == audited.device and spec.precision == audited.precision for spec in specs)


def test_preset_seeds_for_a_model_that_is_not_a_preset_are_refused(tiny_model_dir: Path) -> None:
    with pytest.raises(AuditError, match="--seed-models preset needs an embedded default model"):
        seed_model_specs(ModelSpec(name_or_path=str(tiny_model_dir)), ["preset"])


def test_a_missing_seed_folder_is_refused_by_name(tiny_model_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(AuditError, match="not a folder") as raised:
        seed_model_specs(ModelSpec(name_or_path=str(tiny_model_dir)), [str(missing)])
    assert str(missing) in str(raised.value) and "save_pretrained" in str(raised.value)


@pytest.mark.parametrize(
    ("changed", "what"),
    [({"layers": 3}, "number of layers"), ({"labels": 2}, "labels")],
)
def test_a_seed_model_of_another_architecture_or_labels_is_refused(
    tiny_model_dir: Path, tmp_path: Path, changed: dict[str, int], what: str
) -> None:
    other = save_tiny_classifier(tmp_path / "other", seed=1, **changed)
    audited = ModelSpec(name_or_path=str(tiny_model_dir))
    with pytest.raises(AuditError, match=f"not another fine-tuning of the audited model: its {what}"):
        load_seed_models(audited, seed_model_specs(audited, [str(other)]))


def test_a_comparable_seed_model_loads(tiny_model_dir: Path, tmp_path: Path) -> None:
    other = save_tiny_classifier(tmp_path / "seed-1", seed=1)
    audited = ModelSpec(name_or_path=str(tiny_model_dir))
    ((name, bundle),) = load_seed_models(audited, seed_model_specs(audited, [str(other)]))
    assert name == str(other.resolve()) and bundle.labels == ("class_0", "class_1", "class_2")


def test_the_seed_models_option_is_a_run_flag_and_each_model_is_named_once() -> None:
    from tasks.flags import FLAGS

    flag = next(flag for flag in FLAGS if flag.field == "seeds.models")
    assert flag.flag == "--seed-models" and flag.kind == "list"
    with pytest.raises(ValueError, match="name each seed model once"):
        SeedOptions(models=("a", "a"))
    assert "seeds" not in AuditConfig().identity()  # not part of the run's identity: the baseline reruns alone
