"""The audit configuration: defaults, validation, identity, and the run options derived from its fields."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.config import AuditConfig, InterventionOptions, MethodOptions, stable_hash
from tasks.explain.registry import METHODS, default_methods
from tasks.flags import FLAGS, command_line, field_value, flag_for
from tasks.interventions.registry import default_interventions
from tasks.verdict.resolve import resolve
from tests.conftest import ROOT

RUN_OPTIONS = (
    "--model --revision --trust-remote-code --allow-pickle --device --precision --dataset --split --text-column "
    "--text-pair-column --label-column --no-labels --id-column --rationale-column --limit --sample-seed "
    "--target-precision --max-length "
    "--methods --ig-steps --ig-rule --removal --k --random-draws --top-k --flow-max-tokens --units --explanations "
    "--seed --removal-check --removal-check-sample --no-soft-faithfulness --interventions --intervention-layers "
    "--permutation-draws "
    "--erasure-draws --adversarial-epsilon "
    "--adversarial-steps --verdict-references --agreement-min --equivalence-margin --sensitivity-min --min-examples "
    "--confidence-bins --length-bins --require --no-sanity --sanity-tokens --sanity-sample --seed-models "
    "--seed-sample --batch-size "
    "--token-budget --gradient-token-budget --concurrency --threads --batch-retries --batch-timeout --no-cache "
    "--task-runner --dask-address --dask-workers --db --out --no-pdf --example-rows"
).split()


def test_no_methods_named_means_every_default_method():
    assert MethodOptions().methods == ()
    assert resolve(AuditConfig()).methods.methods == default_methods()
    assert set(default_methods()) == {name for name, spec in METHODS.items() if spec.default}


def test_no_interventions_named_means_the_default_ones_and_none_means_none():
    assert resolve(AuditConfig()).interventions.interventions == default_interventions()
    assert InterventionOptions(interventions=()).interventions is None
    none = resolve(AuditConfig(interventions=InterventionOptions(interventions=("none",))))
    assert none.interventions.interventions == ()
    assert none.model_dump(mode="json")["interventions"]["interventions"] == ["none"]


def test_unknown_or_repeated_methods_are_refused():
    with pytest.raises(ValidationError, match="unknown method"):
        resolve(AuditConfig(methods=MethodOptions(methods=("rollout", "shap_magic"))))
    with pytest.raises(ValidationError, match="listed twice"):
        resolve(AuditConfig(methods=MethodOptions(methods=("rollout", "rollout"))))


def test_every_registry_name_is_checked_at_its_field():
    config = AuditConfig.model_validate(
        {
            "methods": {"methods": ["shap"]},
            "interventions": {"interventions": ["scramble"]},
            "verdict": {"references": ["rollout"]},
            "gate": ["fast:rollout"],
        }
    )
    with pytest.raises(ValidationError) as raised:
        resolve(config)

    located = {flag_for(error["loc"]): error["msg"] for error in raised.value.errors()}
    assert list(located) == ["--methods", "--interventions", "--verdict-references", "--require"]
    assert located["--methods"].startswith("Value error, unknown method(s) shap; known methods: attention_last")
    assert located["--interventions"].startswith("Value error, unknown intervention(s) scramble; known: ")
    assert "got ('rollout',)" in located["--verdict-references"]
    assert "a gate check is KIND:METHOD" in located["--require"]


def test_resolving_is_idempotent_and_keeps_the_default_run_identity():
    resolved = resolve(AuditConfig())
    assert resolve(resolved) == resolved
    assert AuditConfig.model_validate(resolved.model_dump(mode="json")) == resolved
    # The default audit's identity: a default run must keep its id. It changes only when the default methods,
    # interventions or their options do (last: integrated gradients' default became the nested patterson rule
    # at 10, 21, 43, 87 nodes, after ALTI, GlobEnc, Value Zeroing and DecompX joined the default methods).
    assert stable_hash(resolved.identity()) == "b7db06dbfa680b2c"


@pytest.mark.parametrize("fractions", [(0.0,), (1.5,), ()])
def test_rationale_fractions_must_lie_in_zero_one(fractions):
    with pytest.raises(ValidationError):
        MethodOptions(k_fractions=fractions)


def test_integrated_gradients_steps_are_a_schedule_and_one_size_is_a_fixed_m():
    assert (MethodOptions().ig_steps, MethodOptions().ig_rule) == ((10, 21, 43, 87), "patterson")
    stored = {"ig_steps": 50, "ig_rule": "gausslegendre"}  # as stored before schedules (the rule was stored too)
    assert MethodOptions.model_validate(stored).ig_steps == (50,)
    # A fixed m is written as before schedules, so an earlier run of it keeps its identity.
    assert MethodOptions(**stored).model_dump(mode="json")["ig_steps"] == 50
    for options in (MethodOptions(**stored), MethodOptions(ig_steps=(16, 32, 64), ig_rule="gausslegendre"),
                    MethodOptions()):  # fmt: skip
        assert MethodOptions.model_validate(options.model_dump(mode="json")) == options


@pytest.mark.parametrize(
    ("steps", "words"),
    [((32, 16), "must increase"), ((16, 16), "must increase"), ((0,), "between 1 and 10000"), ((), "between 1")],
)
def test_integrated_gradients_steps_must_be_positive_and_increasing(steps, words):
    with pytest.raises(ValidationError, match=words):
        MethodOptions(ig_steps=steps, ig_rule="gausslegendre")


def test_rationale_fractions_are_sorted_and_unique():
    assert MethodOptions(k_fractions=(0.5, 0.1, 0.5)).k_fractions == (0.1, 0.5)


def test_identity_covers_what_decides_the_numbers_and_nothing_else():
    base = AuditConfig()
    assert AuditConfig.model_validate({"execution": {"batch_size": 4}}).identity() == base.identity()
    assert AuditConfig.model_validate({"output": {"db": "elsewhere.duckdb"}}).identity() == base.identity()
    assert AuditConfig.model_validate({"methods": {"ig_steps": 21}}).identity() != base.identity()
    assert AuditConfig.model_validate({"data": {"limit": 5}}).identity() != base.identity()


def test_the_configuration_is_frozen_and_round_trips_through_json():
    config = AuditConfig.model_validate({"data": {"limit": 7}, "output": {"db": "x.duckdb"}})
    with pytest.raises(ValidationError):
        config.data.limit = 3  # type: ignore[misc]
    assert AuditConfig.model_validate(config.model_dump(mode="json")) == config
    assert config.output.db == Path("x.duckdb")


def test_the_reproducing_command_names_only_what_differs_from_the_defaults():
    config = AuditConfig.model_validate(
        {
            "model": {"name_or_path": "my model"},
            "data": {"label_column": None, "limit": 3},
            "methods": {"k_fractions": (0.1, 0.2)},
            "output": {"pdf": False},
        }
    )
    assert command_line(config) == ("attention-audit run --model 'my model' --no-labels --limit 3 --k 0.1,0.2 --no-pdf")
    assert command_line(AuditConfig()) == "attention-audit run"
    assert command_line(resolve(AuditConfig()), resolve(AuditConfig())) == "attention-audit run"


def test_the_configuration_package_imports_nothing_of_the_project_outside_itself():
    for module in sorted((ROOT / "tasks" / "config").glob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        imported += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        assert imported, module
        outside = [name for name in imported if name.split(".")[0] in ("tasks", "flows", "tests")]
        assert all(name.startswith("tasks.config.") for name in outside), (module, outside)
        assert not [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level], module


def test_an_option_added_later_keeps_the_ids_of_runs_stored_before_it_unless_it_changes_the_work():
    default = resolve(AuditConfig())
    without_soft = resolve(AuditConfig(methods=MethodOptions(soft_faithfulness=False)))

    assert "soft_faithfulness" not in default.identity()["methods"]  # what runs stored before it computed
    assert without_soft.identity()["methods"]["soft_faithfulness"] is False
    assert stable_hash(without_soft.identity()) != stable_hash(default.identity())


def test_the_run_options_are_exactly_the_documented_ones():
    assert [flag.flag for flag in FLAGS] == RUN_OPTIONS


def test_every_run_option_sets_a_configuration_field_and_every_described_field_has_one():
    default = AuditConfig()
    for flag in FLAGS:
        field_value(default, flag.field)  # the option's field exists
        assert flag_for(tuple(flag.field.split("."))) in {f.flag for f in FLAGS if f.field == flag.field}
    sections = [name for name, info in AuditConfig.model_fields.items() if info.description is None]
    described = {name for name, info in AuditConfig.model_fields.items() if info.description is not None}
    described |= {
        f"{section}.{name}"
        for section in sections
        for name, info in type(getattr(default, section)).model_fields.items()
        if info.description is not None
    }
    assert described == {flag.field for flag in FLAGS}


def test_each_option_help_ends_with_the_default_of_its_field():
    default = AuditConfig()
    for flag in FLAGS:
        value = field_value(default, flag.field)
        if flag.kind in ("true", "false", "none") or value in (None, ()):
            continue
        shown = ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
        assert flag.help.endswith(f"[{shown}]"), flag.flag
