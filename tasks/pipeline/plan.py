"""What a run is: its identity, its manifest, and the plan of batches still to compute.

A run's id is a hash of everything that decides its numbers: the model, data and method parts of the
configuration, the weights' fingerprint, the data's fingerprint, the tool's version and a fingerprint of
its source (``source_fingerprint``). Running the same configuration again with the same code therefore
finds its run in the database and computes only the examples that are not stored yet; after the code
changed, it starts a new run rather than mixing the numbers of two versions in one.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tasks import __version__
from tasks.config import AuditConfig, stable_hash
from tasks.data.corpora import Corpus, load_corpus
from tasks.data.encoding import encode_corpus, plan_batches
from tasks.errors import AuditError
from tasks.evaluate.removal_check import removal_sample, second_operator
from tasks.explain import imported
from tasks.explain.registry import METHODS
from tasks.model.adapters.base import ModelAdapter
from tasks.model.bundle import ModelBundle
from tasks.model.loading import load_model
from tasks.model.machine import cpu_description
from tasks.records import EncodedExample, NotApplicable
from tasks.verdict.resolve import resolve
from tasks.verdict.sample_size import sample_record, sized

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
        config: The configuration the run computes: as given and resolved, less what is not applicable.
        not_applicable: What the given configuration asked for that this model cannot support.
    """

    run_id: str
    labels: tuple[str, ...]
    examples: tuple[EncodedExample, ...]
    manifest: dict[str, Any]
    config: AuditConfig
    not_applicable: tuple[NotApplicable, ...] = ()

    @property
    def configured(self) -> tuple[str, ...]:
        """The configured methods that run."""
        return self.config.methods.methods

    @property
    def methods(self) -> tuple[str, ...]:
        """Every method of the run: the configured ones, then the imported explanations."""
        return (*self.configured, *self.manifest.get("explanations", {}).get("methods", ()))

    @cached_property
    def removal_sample(self) -> frozenset[str]:
        """The examples whose removal metrics are recomputed with the second operator (seeded sample)."""
        return removal_sample(self.examples, self.config.methods)

    def batches(self, done: set[str], batch_size: int, token_budget: int) -> list[list[EncodedExample]]:
        """Length-sorted batches of the examples not in ``done``, the longest first.

        Workers that each take the next batch when they finish one then end together: the batches left
        at the end are the shortest (longest-processing-time-first scheduling).
        """
        pending = [example for example in self.examples if example.example_id not in done]
        return plan_batches(pending, batch_size, token_budget)[::-1]


def plan_run(config: AuditConfig) -> RunPlan:
    """Resolve the configuration, load the model and corpus, encode the corpus and derive the run's identity.

    ``--target-precision`` sizes the sample here, before any work (``tasks.verdict.sample_size.sized``); the
    manifest's ``data.sample`` records what was chosen.

    Raises:
        ValidationError: A name the registries do not know (``tasks.verdict.resolve``), before any work.
        AuditError: Any problem with the model, the corpus or their combination (e.g. labels that are
            not the model's classes).
    """
    config = sized(resolve(config))
    bundle = load_model(config.model)
    skipped = not_applicable(config, bundle)
    config = without(config, skipped)
    check_layers(config, bundle)
    corpus = load_corpus(config.data)
    examples = encode_corpus(corpus.frame, bundle.tokenizer, bundle.labels, config.data.max_length)
    source = source_fingerprint()
    manifest = run_manifest(config, bundle, corpus, source)
    data = config.data
    if data.target_precision is not None and data.limit is not None:
        manifest["data"]["sample"] = sample_record(
            data.target_precision, data.limit, config.verdict.min_examples, corpus.rows_in_split
        )
    identity = {
        "identity": config.identity(),
        "model": bundle.fingerprint,
        "data": corpus.fingerprint,
        "attention_audit": __version__,
        "source": source,
    }
    if config.methods.explanations:
        frame = imported.read_explanations(Path(config.methods.explanations))
        examples = imported.attach(examples, imported.align(frame, examples))
        identity["explanations"] = imported.fingerprint(Path(config.methods.explanations))
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
        config=config,
        not_applicable=skipped,
    )


def not_applicable(config: AuditConfig, bundle: ModelBundle) -> tuple[NotApplicable, ...]:
    """What of ``config`` (resolved) this model's family cannot support: methods and interventions, with why.

    Interventions replace attention probabilities inside the forward pass; a family whose attention is
    computed out of reach of transformers' attention function (DeBERTa's disentangled attention) cannot
    have them. A method whose spec has ``unsupported`` (DecompX: post-LN encoders only) is refused with the
    reason it gives.
    """
    adapter = bundle.adapter
    methods = tuple(
        NotApplicable("method", name, reason)
        for name in config.methods.methods
        if name in METHODS and (reason := _unsupported(name, adapter))
    )
    if adapter.supports_interventions:
        return methods
    reason = f"{adapter.family} models: {adapter.not_editable}"
    return methods + tuple(NotApplicable("intervention", name, reason) for name in config.interventions.names)


def _unsupported(name: str, adapter: ModelAdapter) -> str:
    """Why registered method ``name`` is not defined for ``adapter``'s family, or ``""``."""
    check = METHODS[name].unsupported
    return "" if check is None else check(adapter)


def without(config: AuditConfig, skipped: tuple[NotApplicable, ...]) -> AuditConfig:
    """``config`` (resolved) less the methods and interventions in ``skipped``."""
    if not skipped:
        return config
    dropped = {(item.kind, item.name) for item in skipped}
    methods = [name for name in config.methods.methods if ("method", name) not in dropped]
    interventions = [name for name in config.interventions.names if ("intervention", name) not in dropped]
    if not methods:
        raise AuditError(
            "none of the configured methods applies to this model: "
            + "; ".join(f"{item.name}: {item.reason}" for item in skipped if item.kind == "method"),
            "choose other methods with --methods",
        )
    data = config.model_dump(mode="json")
    data["methods"]["methods"] = methods
    data["interventions"]["interventions"] = interventions or ["none"]
    return AuditConfig.model_validate(data)


def check_layers(config: AuditConfig, bundle: ModelBundle) -> None:
    """Refuse, before any work, an intervention layer the model does not have (``config`` resolved).

    Raises:
        AuditError: ``--intervention-layers`` names a layer outside the model.
    """
    for layer in config.interventions.layers if config.interventions.interventions else ():
        if not -bundle.num_layers <= layer < bundle.num_layers:
            raise AuditError(
                f"--intervention-layers names layer {layer}, but the model has {bundle.num_layers} layers",
                f"use layers from 0 to {bundle.num_layers - 1}, or -1 to -{bundle.num_layers} counted from the top",
            )


def run_manifest(config: AuditConfig, bundle: ModelBundle, corpus: Corpus, source: str | None = None) -> dict[str, Any]:
    """Everything a reviewer needs to trace the run: what was audited, with what, where.

    ``source`` is the code's ``source_fingerprint``, computed here when not given.
    """
    source = source or source_fingerprint()
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
            "device": str(bundle.device),
            "precision": str(next(bundle.model.parameters()).dtype).removeprefix("torch."),
        },
        "data": {
            "name": corpus.name,
            "split": corpus.split,
            "fingerprint": corpus.fingerprint,
            "rows_in_split": corpus.rows_in_split,
            "examples": len(corpus),
            "source": corpus.source,
        },
        "versions": {
            "attention-audit": f"{__version__} (source {source})",
            **{name: _version(name) for name in TRACKED_PACKAGES},
        },
        "platform": f"{platform.platform()}, Python {platform.python_version()}, {cpu_description()}",
        "device": str(bundle.device),
        "removal_check": {
            "operator": config.methods.removal,
            "second_operator": second_operator(bundle.tokenizer, config.methods),
            "sample": min(config.methods.removal_check_sample, len(corpus)),
            "seed": config.methods.seed,
        },
    }


SOURCE = Path(__file__).resolve().parents[1]
"""The ``tasks`` package: the code that computes every stored number."""


def source_fingerprint(root: Path = SOURCE) -> str:
    """SHA-256 (first 12 hex digits) of every ``.py`` file under ``root``: its relative path, then its bytes.

    ``__version__`` changes only with a release, so without this a run resumed after an edit of the code
    would store numbers of two versions under one id.
    """
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        for part in (path.relative_to(root).as_posix().encode(), path.read_bytes()):
            digest.update(len(part).to_bytes(8, "little"))
            digest.update(part)
    return digest.hexdigest()[:12]


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"
