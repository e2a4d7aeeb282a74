"""The one typed, validated configuration of an audit; stored with every run.

The configuration has these parts. Four of them decide the per-example numbers (``model``, ``data``,
``methods``, ``interventions``) and, with the model and data fingerprints, make up the run's identity:
re-running the same identity reuses finished examples. ``verdict`` turns the stored numbers into
verdicts at the end of every run; ``sanity`` and ``seeds`` (the seed baseline) are checks run once per
run and settings; ``execution`` and ``output`` decide only how and where the work runs. Changing a
threshold, the batch size or the output folder therefore resumes the same run.

This package imports nothing of the project outside itself. The names a configuration takes from a registry (methods,
interventions, verdict references, gate checks) are checked, and the default methods and interventions
filled in, by ``tasks.verdict.resolve.resolve`` when a run is planned. Every field with a description is
an ``attention-audit run`` option (``tasks.flags``): the description is its help, and ``json_schema_extra``
may name the flag (``flag``), say what an empty default means (``unset``) or add a switch that sets the
field to None (``none_flag``, ``none_help``).

The parts live in ``inputs`` (model, data), ``computation`` (methods, interventions), ``judgement``
(verdict, sanity check, seed baseline) and ``audit`` (the whole, execution, output); ``base`` holds what
they share. Import them from here.
"""

from tasks.config.audit import AuditConfig, ExecutionSettings, OutputSettings
from tasks.config.base import (
    DEFAULT_K_FRACTIONS,
    PATTERSON_SIZES,
    Device,
    IntegrationRule,
    Precision,
    RemovalOperator,
    Units,
    stable_hash,
)
from tasks.config.computation import InterventionOptions, MethodOptions
from tasks.config.inputs import DataSpec, ModelSpec
from tasks.config.judgement import SanityOptions, SeedOptions, VerdictOptions

__all__ = [
    "AuditConfig",
    "DataSpec",
    "DEFAULT_K_FRACTIONS",
    "Device",
    "ExecutionSettings",
    "IntegrationRule",
    "InterventionOptions",
    "MethodOptions",
    "ModelSpec",
    "OutputSettings",
    "PATTERSON_SIZES",
    "Precision",
    "RemovalOperator",
    "SanityOptions",
    "SeedOptions",
    "stable_hash",
    "Units",
    "VerdictOptions",
]
