"""What a run is: its identity, its manifest, and the plan of batches still to compute.

A run's id is a hash of everything that decides its numbers: the model, data and method parts of the
configuration, the weights' fingerprint, the data's fingerprint and the tool's version. Running the
same configuration again therefore finds its run in the database and computes only the examples that
are not stored yet.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tasks import __version__, external
from tasks.config import AuditConfig, stable_hash
from tasks.corpora import Corpus, load_corpus
from tasks.encoding import encode_corpus, plan_batches
from tasks.errors import AuditError
from tasks.models import ModelBundle, load_model
from tasks.records import EncodedExample

TRACKED_PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "datasets",
    "prefect",
    "duckdb",
    "numpy",
    "scipy",
    "pandas",
    "weasyprint",
    "jinja2",
    "matplotlib",
)


@dataclass(frozen=True, eq=False)
class RunPlan:
    """A run ready to compute.

    Attributes:
        run_id: The run's identity (see module docstring).
        labels: The model's class names, in index order.
        examples: Every example of the run, encoded.
        manifest: Provenance: model and data fingerprints and sources, versions, platform.
    """

    run_id: str
    labels: tuple[str, ...]
    examples: tuple[EncodedExample, ...]
    manifest: dict[str, Any]
    configured: tuple[str, ...] = ()

    @property
    def methods(self) -> tuple[str, ...]:
        """Every method of the run: the configured ones, then the imported explanations."""
        return (*self.configured, *self.manifest.get("explanations", {}).get("methods", ()))

    def batches(self, done: set[str], batch_size: int, token_budget: int) -> list[list[EncodedExample]]:
        """Length-sorted batches of the examples not in ``done``."""
        pending = [example for example in self.examples if example.example_id not in done]
        return plan_batches(pending, batch_size, token_budget)


def plan_run(config: AuditConfig) -> RunPlan:
    """Load the model and corpus, encode the corpus and derive the run's identity.

    Raises:
        AuditError: Any problem with the model, the corpus or their combination (e.g. labels that are
            not the model's classes).
    """
    bundle = load_model(config.model)
    check_applicable(config, bundle)
    corpus = load_corpus(config.data)
    examples = encode_corpus(corpus.frame, bundle.tokenizer, bundle.labels, config.data.max_length)
    manifest = run_manifest(config, bundle, corpus)
    identity = {
        "identity": config.identity(),
        "model": bundle.fingerprint,
        "data": corpus.fingerprint,
        "attention_audit": __version__,
    }
    if config.methods.explanations:
        frame = external.read_explanations(Path(config.methods.explanations))
        examples = external.attach(examples, external.align(frame, examples))
        identity["explanations"] = external.fingerprint(Path(config.methods.explanations))
        manifest["explanations"] = {
            "path": str(Path(config.methods.explanations).resolve()),
            "fingerprint": identity["explanations"],
            "methods": sorted(set(frame["method"])),
        }
    run_id = stable_hash(identity)
    return RunPlan(
        run_id=run_id,
        labels=bundle.labels,
        examples=tuple(examples),
        manifest=manifest,
        configured=config.methods.methods,
    )


def check_applicable(config: AuditConfig, bundle: ModelBundle) -> None:
    """Refuse, before any work, methods and interventions this model cannot support.

    Raises:
        AuditError: Interventions or norm-based attention on a family whose layer structure the adapter
            does not describe, or an intervention layer the model does not have.
    """
    adapter = bundle.adapter
    if config.interventions.interventions and not adapter.supports_interventions:
        raise AuditError(
            f"interventions on the attention need the layer structure of the model, which the {adapter.family} "
            f"adapter does not describe ({bundle.source.get('model_type', '')})",
            "run without them (--interventions none), or describe the family in tasks/adapters.py",
        )
    if "attention_norm" in config.methods.methods and not adapter.supports_interventions:
        raise AuditError(
            f"attention_norm needs the value and output projections, which the {adapter.family} adapter does "
            "not describe",
            "leave attention_norm out of --methods, or describe the family in tasks/adapters.py",
        )
    for layer in config.interventions.layers if config.interventions.interventions else ():
        if not -bundle.num_layers <= layer < bundle.num_layers:
            raise AuditError(
                f"--intervention-layers names layer {layer}, but the model has {bundle.num_layers} layers",
                f"use layers from 0 to {bundle.num_layers - 1}, or -1 to -{bundle.num_layers} counted from the top",
            )


def run_manifest(config: AuditConfig, bundle: ModelBundle, corpus: Corpus) -> dict[str, Any]:
    """Everything a reviewer needs to trace the run: what was audited, with what, where."""
    return {
        "model": {
            "name_or_path": config.model.name_or_path,
            "revision": config.model.revision,
            "fingerprint": bundle.fingerprint,
            "source": bundle.source,
            "labels": list(bundle.labels),
            "layers": bundle.num_layers,
            "heads": bundle.num_heads,
            "family": bundle.adapter.family,
        },
        "data": {
            "name": corpus.name,
            "split": corpus.split,
            "fingerprint": corpus.fingerprint,
            "rows_in_split": corpus.rows_in_split,
            "examples": len(corpus),
            "source": corpus.source,
        },
        "versions": {"attention-audit": __version__, **{name: _version(name) for name in TRACKED_PACKAGES}},
        "platform": f"{platform.platform()}, Python {platform.python_version()}, {platform.machine()}",
        "device": str(bundle.device),
    }


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"
