"""The one typed, validated configuration of an audit; stored with every run.

The configuration has these parts. Four of them decide the per-example numbers (``model``, ``data``,
``methods``, ``interventions``) and, with the model and data fingerprints, make up the run's identity:
re-running the same identity reuses finished examples. ``verdict`` turns the stored numbers into
verdicts at the end of every run; ``sanity`` and ``seeds`` (the seed baseline) are checks run once per
run and settings; ``execution`` and ``output`` decide only how and where the work runs. Changing a
threshold, the batch size or the output folder therefore resumes the same run.

This module imports nothing of the project. The names a configuration takes from a registry (methods,
interventions, verdict references, gate checks) are checked, and the default methods and interventions
filled in, by ``tasks.verdict.resolve.resolve`` when a run is planned. Every field with a description is
an ``attention-audit run`` option (``tasks.flags``): the description is its help, and ``json_schema_extra``
may name the flag (``flag``), say what an empty default means (``unset``) or add a switch that sets the
field to None (``none_flag``, ``none_help``).

The module is longer than the project's usual 400 lines because it is a declarative table: one pydantic
field per option, each with its default, bounds and help, and nothing else to split off.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_serializer, field_validator, model_validator

RemovalOperator = Literal["delete", "mask", "pad"]
Units = Literal["token", "word"]
IntegrationRule = Literal["gausslegendre", "riemann_right"]
Device = Literal["cpu", "cuda", "auto"]
Precision = Literal["float32", "float16", "bfloat16"]

DEFAULT_K_FRACTIONS = (0.01, 0.05, 0.10, 0.20, 0.50)


class _Frozen(BaseModel, frozen=True, extra="forbid"):
    """An immutable configuration part that rejects unknown fields.

    Subclasses repeat ``frozen=True`` in their class line: that is how type checkers learn that they are
    immutable and hashable (pydantic adds ``__hash__`` to frozen models; ``load_model`` caches on a ``ModelSpec``).
    """


class ModelSpec(_Frozen, frozen=True):
    """Which classifier to audit.

    Attributes:
        name_or_path: A preset name (``movie-snippets``), a local directory saved with
            ``save_pretrained``, or a Hugging Face hub id.
        revision: Hub revision (branch, tag or commit) for hub ids.
        trust_remote_code: Run the model repository's own Python code. Off unless asked.
        allow_pickle: Accept pickle-based ``.bin`` weights when no safetensors file exists. Off
            unless asked: unpickling runs arbitrary code.
        device: ``cpu`` (the tested default), ``cuda``, or ``auto``.
        precision: The weights' floating-point type: ``float32`` (default), or half precision
            (``float16``, ``bfloat16``) on a GPU only. Recorded in the manifest; scores computed in half
            precision differ from float32 ones by rounding (see the README's device section).
    """

    name_or_path: str = Field(
        default="movie-snippets",
        description="preset name, local folder (save_pretrained) or Hugging Face hub id",
        json_schema_extra={"flag": "--model"},
    )
    revision: str | None = Field(default=None, description="hub revision: branch, tag or commit")
    trust_remote_code: bool = Field(default=False, description="run the model repository's own code")
    allow_pickle: bool = Field(
        default=False, description="accept pickle-based .bin weights when there are no safetensors"
    )
    device: Device = Field(default="cpu", description="where the model runs")
    precision: Precision = Field(
        default="float32", description="weights' type: float32, or float16 / bfloat16 on a GPU"
    )


class DataSpec(_Frozen, frozen=True):
    """Which examples to audit.

    Attributes:
        dataset: A built-in corpus name (``movie-snippets``), a local CSV / JSONL / Parquet file or a
            dataset directory, or a Hugging Face hub id.
        split: The split to read (hub datasets and built-in corpora).
        text_column: Column holding the text.
        text_pair_column: Column holding the second text of a text pair (NLI hypothesis, paraphrase,
            passage of a question); None for single texts. Both texts are explained.
        label_column: Column holding the gold label (class index or label name); None when unlabelled.
        id_column: Column holding a stable example id; None uses the row number.
        rationale_column: Column holding human rationales (character spans, word indices or highlighted
            words; see ``tasks.data.rationales``) for the plausibility metrics; None when there are none.
        limit: Audit at most this many examples, taken in seeded hash order (a random sample that is
            nested: the first 100 of a seed are also in its first 200). None audits the whole split.
        sample_seed: Seed of that hash order.
        target_precision: Size the sample, before the run starts, for a 95 % interval half-width of at most
            about this on every verdict evidence of the overall slice (``tasks.verdict.sample_size``: a
            conservative bound, no pilot); sets ``limit``, which a given ``limit`` caps. None: no sizing.
        max_length: Texts longer than this many tokens (specials included) are truncated; the
            truncation is recorded per example.
    """

    dataset: str = Field(
        default="movie-snippets", description="built-in corpus, local CSV/JSONL/Parquet file or folder, or hub id"
    )
    split: str = Field(default="test", description="split to audit")
    text_column: str = Field(default="text", description="column with the text")
    text_pair_column: str | None = Field(
        default=None,
        description="column with the second text of a pair (NLI, paraphrase); both texts are explained",
        json_schema_extra={"unset": "none"},
    )
    label_column: str | None = Field(
        default="label",
        description="column with the gold label",
        json_schema_extra={"none_flag": "--no-labels", "none_help": "the corpus has no gold labels"},
    )
    id_column: str | None = Field(
        default=None, description="column with a unique example id", json_schema_extra={"unset": "row number"}
    )
    rationale_column: str | None = Field(
        default=None, description="column with human rationales (spans, word indices or words) for plausibility"
    )
    limit: int | None = Field(default=None, gt=0, description="audit at most N examples (seeded random sample)")
    sample_seed: int = Field(default=0, description="seed of the --limit sample")
    target_precision: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="size the sample so that every verdict evidence's 95-percent interval is at most about "
        "plus or minus this wide (a conservative bound; --limit caps it)",
        json_schema_extra={"unset": "no sizing"},
    )
    max_length: int = Field(
        default=128, ge=4, le=100_000, description="truncate texts to this many tokens, specials included"
    )


class MethodOptions(_Frozen, frozen=True):
    """Which explanations to compute and how (definitions in docs/methodology.md).

    Attributes:
        methods: Method ids to compute, from ``tasks.explain.registry.METHODS``; empty means the default
            methods, filled in by ``tasks.verdict.resolve.resolve``.
        ig_steps: Integration steps ``m`` of integrated gradients.
        ig_rule: ``gausslegendre`` nodes and weights (default, as Captum) or the right Riemann sum.
        removal: How a token is removed in leave-one-out, comprehensiveness and sufficiency:
            ``delete`` the id (default; Jain & Wallace, ERASER, ferret), or replace it by ``mask``
            (``[MASK]``, Abnar & Zuidema) or ``pad``.
        k_fractions: Rationale sizes for comprehensiveness and sufficiency, as fractions of the
            content tokens; AOPC is their mean.
        random_draws: Number of random rankings in the random baseline.
        agreement_top_k: ``k`` of the top-k overlap agreement statistic (capped at the token count).
        explanations: A file of explanations computed elsewhere (``tasks.explain.imported``), audited like attention.
        flow_max_tokens: Attention flow is computed only for inputs of at most this many tokens (its
            cost grows about with the fourth power of the length); longer inputs have no flow scores.
        units: What every metric ranks: ``token`` (default) or ``word``, a whitespace-separated word
            scored by the sum of its sub-token scores (``tasks.data.units``). Token scores are stored either way.
        seed: Seed of everything random in the methods (the random baseline) and of the sample the second
            removal operator recomputes.
        removal_check: The second removal operator the faithfulness evidence is recomputed with (Hooker et
            al. 2019: removed inputs leave the training distribution, so the numbers may depend on how
            tokens are removed); None means ``mask``, or ``delete`` when ``removal`` is ``mask`` or ``pad``.
            ``mask`` falls back to ``pad`` for a tokenizer without a mask token.
        removal_check_sample: Examples the second operator recomputes, in seeded hash order (all when the
            run has fewer); 0 turns the check off.
    """

    methods: tuple[str, ...] = Field(
        default=(), description="comma-separated method ids", json_schema_extra={"unset": "all"}
    )
    ig_steps: int = Field(default=50, ge=1, le=10_000, description="integrated-gradients steps m")
    ig_rule: IntegrationRule = Field(default="gausslegendre", description="integration rule")
    removal: RemovalOperator = Field(default="delete", description="how tokens are removed")
    k_fractions: tuple[float, ...] = Field(
        default=DEFAULT_K_FRACTIONS, description="rationale sizes as fractions", json_schema_extra={"flag": "--k"}
    )
    random_draws: int = Field(default=3, ge=1, le=100, description="random-baseline rankings")
    agreement_top_k: int = Field(
        default=5, ge=1, description="k of the top-k overlap", json_schema_extra={"flag": "--top-k"}
    )
    flow_max_tokens: int = Field(
        default=96, ge=2, description="compute attention flow only for inputs of at most N tokens"
    )
    units: Units = Field(
        default="token", description="what metrics rank: tokens, or words scored by the sum of their sub-tokens"
    )
    explanations: str | None = Field(
        default=None, description="Parquet or JSONL file of explanations computed elsewhere, audited like attention"
    )
    seed: int = Field(default=0, description="seed of the random baseline and of the removal-check sample")
    removal_check: RemovalOperator | None = Field(
        default=None,
        description="second removal operator the faithfulness evidence is recomputed with",
        json_schema_extra={"unset": "mask, or delete when --removal is mask or pad"},
    )
    removal_check_sample: int = Field(
        default=100, ge=0, description="examples recomputed with the second removal operator (0: no check)"
    )

    @property
    def second_removal(self) -> RemovalOperator:
        """The second operator: ``removal_check``, or ``mask`` (``delete`` when ``removal`` already replaces)."""
        if self.removal_check is not None:
            return self.removal_check
        return "mask" if self.removal == "delete" else "delete"

    @model_validator(mode="after")
    def _second_operator_differs(self) -> MethodOptions:
        if self.removal_check is not None and self.removal_check == self.removal:
            raise ValueError(
                f"the second removal operator ({self.removal_check}) is the run's own (--removal {self.removal}): "
                "choose another with --removal-check, or leave it unset"
            )
        return self

    @field_validator("k_fractions")
    @classmethod
    def _valid_fractions(cls, fractions: tuple[float, ...]) -> tuple[float, ...]:
        if not fractions or any(not 0.0 < k <= 1.0 for k in fractions):
            raise ValueError("rationale fractions must be in (0, 1], e.g. 0.01,0.05,0.1,0.2,0.5")
        return tuple(sorted(set(fractions)))


class InterventionOptions(_Frozen, frozen=True):
    """Which interventions on the attention to run and how (definitions in docs/methodology.md).

    Attributes:
        interventions: Intervention ids to run, from ``tasks.interventions.registry.INTERVENTIONS``; None
            (or an empty list) means the default set, filled in by ``tasks.verdict.resolve.resolve``; ``none``
            runs none (``()``).
        layers: Layers intervened on by ``permutation``, ``top_vs_random_erasure`` and ``adversarial``
            (0 = first; negative counts from the top: -1 is the last layer).
        permutation_draws: Random permutations per example and layer.
        erasure_draws: Random keys erased per example and layer, to compare with the top key.
        adversarial_epsilon: Largest allowed change of the output (TVD) for adversarial attention.
        adversarial_steps: Optimisation steps of adversarial attention.
        adversarial_learning_rate: Adam step size on the attention logits.
        seed: Seed of the permutations, random keys and adversarial initialisation.
    """

    interventions: tuple[str, ...] | None = Field(
        default=None, description="comma-separated intervention ids, or none", json_schema_extra={"unset": "all"}
    )
    layers: tuple[int, ...] = Field(
        default=(-1,),
        description="layers for permutation, erasure and adversarial attention; -1 is the last",
        json_schema_extra={"flag": "--intervention-layers"},
    )
    permutation_draws: int = Field(default=100, ge=1, le=10_000, description="random permutations per example")
    erasure_draws: int = Field(default=10, ge=1, le=1_000, description="random keys erased")
    adversarial_epsilon: float = Field(
        default=0.01, gt=0.0, le=1.0, description="largest output change (TVD) allowed for adversarial attention"
    )
    adversarial_steps: int = Field(
        default=100, ge=1, le=10_000, description="optimisation steps of adversarial attention"
    )
    adversarial_learning_rate: float = Field(default=0.1, gt=0.0)
    seed: int = 0

    @field_validator("interventions")
    @classmethod
    def _none_means_empty(cls, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """``("none",)`` is no intervention; an empty list, like None, the default set."""
        if names == ("none",):
            return ()
        return names or None

    @field_serializer("interventions")
    def _none_stays_none(self, names: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """``()`` is written ``("none",)``: read back, an empty list would mean the default interventions."""
        return names if names is None else names or ("none",)

    @property
    def names(self) -> tuple[str, ...]:
        """The intervention ids to run, once ``tasks.verdict.resolve.resolve`` has filled in the default set.

        Raises:
            ValueError: The options are not resolved yet (None still stands for the default set).
        """
        if self.interventions is None:
            raise ValueError("the interventions are not resolved yet (tasks.verdict.resolve.resolve)")
        return self.interventions

    @field_validator("layers")
    @classmethod
    def _some_layers(cls, layers: tuple[int, ...]) -> tuple[int, ...]:
        if not layers or len(set(layers)) != len(layers):
            raise ValueError("name at least one layer, each once (e.g. -1 for the last layer)")
        return layers


class VerdictOptions(_Frozen, frozen=True):
    """How per-example evidence becomes a verdict, and how examples are sliced (``tasks.verdict``).

    Verdicts are recomputed from the stored per-example numbers at the end of every run, so changing
    these settings never recomputes a method.

    Attributes:
        references: Reference methods that attention's agreement is measured against (checked by
            ``tasks.verdict.resolve.resolve``).
        agreement_min: Kendall τ an explanation must reach with the references (mean over them): the
            agreement evidence supports faithfulness when the interval's lower end reaches it and
            contradicts it when the upper end stays below.
        equivalence_margin: An explanation whose AOPC comprehensiveness beats the random ranking by less
            than this (upper end of the interval) is no better than random.
        sensitivity_min: Median output change (TVD) under permuted attention below which (upper end of
            the interval) the output is insensitive to the attention.
        importance_min: Mean TVD when a head is masked above which a head counts as important.
        consistency_min: Mean Kendall τ between the references below which (upper end of the interval)
            they disagree, and the verdict is inconclusive.
        min_examples: Slices with fewer examples are inconclusive.
        confidence_bins: Inner edges of the confidence bins (probability of the predicted class).
        length_bins: Inner edges of the length bins (content tokens).
    """

    references: tuple[str, ...] = Field(
        default=("leave_one_out", "integrated_gradients"),
        description="references attention's agreement is judged against",
        json_schema_extra={"flag": "--verdict-references"},
    )
    agreement_min: float = Field(
        default=0.2, ge=-1.0, le=1.0, description="Kendall τ with the references that supports faithfulness"
    )
    equivalence_margin: float = Field(
        default=0.02,
        ge=0.0,
        le=1.0,
        description="AOPC gain over random below which an explanation is no better than random",
    )
    sensitivity_min: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="median TVD under permuted attention below which the output ignores attention",
    )
    importance_min: float = Field(default=0.01, ge=0.0, le=1.0)
    consistency_min: float = Field(default=0.2, ge=-1.0, le=1.0)
    min_examples: int = Field(default=20, ge=2, description="smallest judged slice")
    confidence_bins: tuple[float, ...] = Field(
        default=(0.6, 0.8, 0.95), description="inner edges of the confidence slices"
    )
    length_bins: tuple[int, ...] = Field(default=(10, 20, 40), description="inner edges of the length slices")

    @field_validator("confidence_bins")
    @classmethod
    def _probabilities(cls, edges: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.0 < edge < 1.0 for edge in edges) or list(edges) != sorted(set(edges)):
            raise ValueError("confidence bin edges must be increasing probabilities between 0 and 1")
        return edges

    @field_validator("length_bins")
    @classmethod
    def _lengths(cls, edges: tuple[int, ...]) -> tuple[int, ...]:
        if any(edge < 1 for edge in edges) or list(edges) != sorted(set(edges)):
            raise ValueError("length bin edges must be increasing token counts of at least 1")
        return edges


class SanityOptions(_Frozen, frozen=True):
    """The model-randomisation sanity check (``tasks.evaluate.sanity``; Adebayo et al. 2018).

    Not part of the run's identity: the check runs once per run and these settings; changing them reruns
    the check alone.

    Attributes:
        enabled: Run the check.
        sample_size: Examples recomputed at every stage of the cascade (seeded hash order).
        seed: Seed of the sample and of the re-initialisation.
        similarity_max: Mean absolute-value Spearman ρ with the original at full randomisation above
            which an explanation fails (it barely changed), below which it passes.
    """

    enabled: bool = Field(
        default=True, description="skip the model-randomisation sanity check", json_schema_extra={"flag": "--no-sanity"}
    )
    sample_size: int = Field(
        default=16,
        ge=2,
        le=10_000,
        description="examples recomputed at each stage of the sanity check",
        json_schema_extra={"flag": "--sanity-sample"},
    )
    seed: int = 0
    similarity_max: float = Field(default=0.5, ge=0.0, le=1.0)


class SeedOptions(_Frozen, frozen=True):
    """The seed baseline (``tasks.evaluate.seeds``; Wiegreffe & Pinter 2019, sections 3 and 4).

    Other fine-tunings of the audited model (same architecture, tokenizer, labels and data, another random
    seed) are run on the run's examples: how far their attention lies from the audited model's is the
    variance the adversarial attention must exceed to mean anything, and how well each explanation
    agrees with itself across seeds is its stability. Not part of the run's identity: the baseline runs
    once per run and these settings.

    Attributes:
        models: Folders of the other fine-tunings (``save_pretrained``), or ``preset`` for the embedded
            default's extra seeds (``tasks.model.presets.Preset.extra_seeds``; each is fine-tuned on first use,
            about six minutes on two cores, and cached). Empty: no seed baseline.
        sample_size: Compare at most this many examples (seeded hash order); None compares every example.
        seed: Seed of that sample.
    """

    models: tuple[str, ...] = Field(
        default=(),
        description="other fine-tunings of the audited model (folders), or preset for the default's extra seeds",
        json_schema_extra={"flag": "--seed-models", "unset": "none"},
    )
    sample_size: int | None = Field(
        default=None,
        ge=2,
        description="examples compared across seeds",
        json_schema_extra={"flag": "--seed-sample", "unset": "every example"},
    )
    seed: int = 0

    @field_validator("models")
    @classmethod
    def _each_once(cls, models: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(models)) != len(models):
            raise ValueError("name each seed model once")
        return models


class ExecutionSettings(_Frozen, frozen=True):
    """How the work runs; does not change the numbers beyond floating-point rounding.

    Attributes:
        batch_size: Examples per task (one gradient pass each); the unit of resumption.
        token_budget: Most tokens (rows x padded length) in one forward pass of perturbed inputs:
            bounds memory for long texts.
        gradient_token_budget: The same for passes with a backward pass (integrated gradients' steps),
            which keep every layer's activations: smaller, so that memory stays bounded.
        concurrency: Batches computed at once (threads). Each uses ``threads`` torch threads.
        threads: torch intra-op threads per batch; None keeps torch's default.
        batch_retries: How often a failing batch is tried again before its examples are recorded as
            failed (the other batches go on).
        batch_timeout: Seconds a batch may take before it counts as failed (None: no limit).
        cache_batches: Keep each batch's results in Prefect's result storage under a key made of the
            run id (model fingerprint, data fingerprint, method configuration) and the batch's examples,
            so a later audit of the same model and data recomputes nothing, even into a new database.
        task_runner: ``threads`` on this machine, or ``dask``.
        dask_address: Scheduler address of an existing Dask cluster; None starts a local one.
        dask_workers: Worker processes of that local cluster.
    """

    batch_size: int = Field(default=32, ge=1, le=4096, description="examples per task")
    token_budget: int = Field(default=8192, ge=64, description="most tokens per forward pass of perturbed inputs")
    gradient_token_budget: int = Field(default=2048, ge=64, description="most tokens per forward and backward pass")
    concurrency: int = Field(default=1, ge=1, le=64, description="batches computed at once")
    threads: int | None = Field(
        default=None, ge=1, description="torch threads", json_schema_extra={"unset": "torch default"}
    )
    batch_retries: int = Field(
        default=1, ge=0, le=10, description="tries again of a failing batch before its examples are recorded as failed"
    )
    batch_timeout: float | None = Field(
        default=None, gt=0, description="seconds a batch may take", json_schema_extra={"unset": "no limit"}
    )
    cache_batches: bool = Field(
        default=True, description="do not cache batch results", json_schema_extra={"flag": "--no-cache"}
    )
    task_runner: Literal["threads", "dask"] = Field(default="threads", description="threads (this machine) or dask")
    dask_address: str | None = Field(default=None, description="an existing Dask scheduler")
    dask_workers: int = Field(default=2, ge=1, le=256, description="workers of a local Dask cluster")


class OutputSettings(_Frozen, frozen=True):
    """Where results go.

    Attributes:
        db: The DuckDB file that holds every run.
        out_dir: Folder for the HTML and PDF report.
        pdf: Also render the PDF (WeasyPrint).
    """

    db: Path = Field(default=Path("audit-output/audit.duckdb"), description="DuckDB file")
    out_dir: Path = Field(
        default=Path("audit-output"), description="report folder", json_schema_extra={"flag": "--out"}
    )
    pdf: bool = Field(default=True, description="render only the HTML report", json_schema_extra={"flag": "--no-pdf"})


class AuditConfig(_Frozen, frozen=True):
    """The whole configuration of one audit.

    Attributes:
        gate: Checks ``KIND:METHOD`` the run must pass (``tasks.verdict.gate``; checked by
            ``tasks.verdict.resolve.resolve``).
    """

    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    methods: MethodOptions = Field(default_factory=MethodOptions)
    interventions: InterventionOptions = Field(default_factory=InterventionOptions)
    verdict: VerdictOptions = Field(default_factory=VerdictOptions)
    gate: tuple[str, ...] = Field(
        default=(),
        description="gate checks KIND:METHOD (faithful, not-unfaithful, beats-random, agrees; METHOD, any or all); "
        "a failing check exits with status 4",
        json_schema_extra={"flag": "--require"},
    )
    sanity: SanityOptions = Field(default_factory=SanityOptions)
    seeds: SeedOptions = Field(default_factory=SeedOptions)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)

    @model_validator(mode="after")
    def _top_k_fits(self) -> AuditConfig:
        if self.methods.agreement_top_k >= self.data.max_length:
            raise ValueError("agreement_top_k must be smaller than max_length")
        return self

    def identity(self) -> dict[str, Any]:
        """The parts of the configuration that decide the numbers (JSON-ready).

        ``data.target_precision`` is left out: it decides the numbers only through the ``limit`` it sets when
        the run is planned, so ``--target-precision`` and the ``--limit`` it chose are the same run.
        """
        return {
            "model": self.model.model_dump(mode="json"),
            "data": self.data.model_dump(mode="json", exclude={"target_precision"}),
            "methods": self.methods.model_dump(mode="json"),
            "interventions": self.interventions.model_dump(mode="json"),
        }


def stable_hash(payload: Any, length: int = 16) -> str:
    """Hex SHA-256 of a JSON-serialisable payload with sorted keys (stable across processes)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]
