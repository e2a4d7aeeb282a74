"""A configuration checked against the registries, with their defaults filled in.

``tasks.config`` imports nothing of the project, so the names a configuration takes from a registry are
checked here, once, when a run is planned: the methods (``tasks.explain.registry``), the interventions
(``tasks.interventions.registry``), the verdict's references and the gate's checks. This is the lowest
layer that sees all of them. Problems are raised as one pydantic ``ValidationError`` located at the
fields, exactly as a field validator would (the command line names the option from the location).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_core import InitErrorDetails

from tasks.config import AuditConfig
from tasks.explain.registry import check_references, resolve_methods
from tasks.interventions.registry import resolve_interventions
from tasks.verdict.gate import check_gate

Value = TypeVar("Value")


def resolve(config: AuditConfig) -> AuditConfig:
    """``config`` with the default methods and interventions filled in, once every registry name is known.

    Idempotent: a resolved configuration resolves to itself (an empty intervention list stays empty, and
    is stored as ``["none"]``). The default audit resolves to the same stored configuration, and so the
    same run identity, as when the defaults were filled in by the configuration itself.

    Raises:
        ValidationError: An unknown or repeated method or intervention, a verdict reference that is not a
            reference method, or a malformed gate check.
    """
    errors: list[InitErrorDetails] = []
    methods = _checked(errors, ("methods", "methods"), resolve_methods, config.methods.methods)
    interventions = _checked(
        errors, ("interventions", "interventions"), resolve_interventions, config.interventions.interventions
    )
    _checked(errors, ("verdict", "references"), check_references, config.verdict.references)
    _checked(errors, ("gate",), check_gate, config.gate)
    if errors:
        raise ValidationError.from_exception_data(AuditConfig.__name__, errors)
    return config.model_copy(
        update={
            "methods": config.methods.model_copy(update={"methods": methods}),
            "interventions": config.interventions.model_copy(update={"interventions": interventions}),
        }
    )


def _checked(
    errors: list[InitErrorDetails], location: tuple[str, ...], check: Callable[[Any], Value], value: Any
) -> Value | Any:
    """``check(value)``; a ``ValueError`` is recorded in ``errors`` at ``location`` and ``value`` returned."""
    try:
        return check(value)
    except ValueError as error:
        errors.append({"type": "value_error", "loc": location, "input": value, "ctx": {"error": error}})
        return value
