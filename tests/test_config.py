"""The audit configuration: defaults, validation, identity."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.config import AuditConfig, MethodOptions, command_line
from tasks.explain.registry import METHODS, default_methods


def test_no_methods_named_means_every_default_method():
    assert MethodOptions().methods == default_methods()
    assert set(default_methods()) == {name for name, spec in METHODS.items() if spec.default}


def test_unknown_or_repeated_methods_are_refused():
    with pytest.raises(ValidationError, match="unknown method"):
        MethodOptions(methods=("rollout", "shap_magic"))
    with pytest.raises(ValidationError, match="listed twice"):
        MethodOptions(methods=("rollout", "rollout"))


@pytest.mark.parametrize("fractions", [(0.0,), (1.5,), ()])
def test_rationale_fractions_must_lie_in_zero_one(fractions):
    with pytest.raises(ValidationError):
        MethodOptions(k_fractions=fractions)


def test_rationale_fractions_are_sorted_and_unique():
    assert MethodOptions(k_fractions=(0.5, 0.1, 0.5)).k_fractions == (0.1, 0.5)


def test_identity_covers_what_decides_the_numbers_and_nothing_else():
    base = AuditConfig()
    assert AuditConfig.model_validate({"execution": {"batch_size": 4}}).identity() == base.identity()
    assert AuditConfig.model_validate({"output": {"db": "elsewhere.duckdb"}}).identity() == base.identity()
    assert AuditConfig.model_validate({"methods": {"ig_steps": 20}}).identity() != base.identity()
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
