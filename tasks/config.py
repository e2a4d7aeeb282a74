"""The one typed, validated configuration of an audit; stored with every run.

The configuration has seven parts. Four of them decide the per-example numbers (``model``, ``data``,
``methods``, ``interventions``) and, with the model and data fingerprints, make up the run's identity:
re-running the same identity reuses finished examples. ``verdict`` turns the stored numbers into
verdicts at the end of every run; ``execution`` and ``output`` decide only how and where the work runs.
Changing a threshold, the batch size or the output folder therefore resumes the same run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

RemovalOperator = Literal["delete", "mask", "pad"]
Units = Literal["token", "word"]
IntegrationRule = Literal["gausslegendre", "riemann_right"]
Device = Literal["cpu", "cuda", "auto"]
Precision = Literal["float32", "float16", "bfloat16"]

DEFAULT_K_FRACTIONS = (0.01, 0.05, 0.10, 0.20, 0.50)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelSpec(_Frozen):
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

    name_or_path: str = "movie-snippets"
    revision: str | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False
    device: Device = "cpu"
    precision: Precision = "float32"


class DataSpec(_Frozen):
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
        max_length: Texts longer than this many tokens (specials included) are truncated; the
            truncation is recorded per example.
    """

    dataset: str = "movie-snippets"
    split: str = "test"
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str | None = "label"
    id_column: str | None = None
    rationale_column: str | None = None
    limit: int | None = Field(default=None, gt=0)
    sample_seed: int = 0
    max_length: int = Field(default=128, ge=4, le=100_000)


class MethodOptions(_Frozen):
    """Which explanations to compute and how (definitions in docs/methodology.md).

    Attributes:
        methods: Method ids to compute, from ``tasks.explain.registry.METHODS``.
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
        seed: Seed of everything random in the methods (the random baseline).
    """

    methods: tuple[str, ...] = Field(default=(), validate_default=True)
    ig_steps: int = Field(default=50, ge=1, le=10_000)
    ig_rule: IntegrationRule = "gausslegendre"
    removal: RemovalOperator = "delete"
    k_fractions: tuple[float, ...] = DEFAULT_K_FRACTIONS
    random_draws: int = Field(default=3, ge=1, le=100)
    agreement_top_k: int = Field(default=5, ge=1)
    flow_max_tokens: int = Field(default=96, ge=2)
    units: Units = "token"
    explanations: str | None = None
    seed: int = 0

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: tuple[str, ...]) -> tuple[str, ...]:
        from tasks.explain.registry import METHODS, default_methods

        if not methods:
            return default_methods()
        unknown = [name for name in methods if name not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)}; known methods: {', '.join(METHODS)}")
        if len(set(methods)) != len(methods):
            raise ValueError("a method is listed twice")
        return tuple(methods)

    @field_validator("k_fractions")
    @classmethod
    def _valid_fractions(cls, fractions: tuple[float, ...]) -> tuple[float, ...]:
        if not fractions or any(not 0.0 < k <= 1.0 for k in fractions):
            raise ValueError("rationale fractions must be in (0, 1], e.g. 0.01,0.05,0.1,0.2,0.5")
        return tuple(sorted(set(fractions)))


class InterventionOptions(_Frozen):
    """Which interventions on the attention to run and how (definitions in docs/methodology.md).

    Attributes:
        interventions: Intervention ids to run, from ``tasks.interventions.registry.INTERVENTIONS``; empty runs
            the default set.
        layers: Layers intervened on by ``permutation``, ``top_vs_random_erasure`` and ``adversarial``
            (0 = first; negative counts from the top: -1 is the last layer).
        permutation_draws: Random permutations per example and layer.
        erasure_draws: Random keys erased per example and layer, to compare with the top key.
        adversarial_epsilon: Largest allowed change of the output (TVD) for adversarial attention.
        adversarial_steps: Optimisation steps of adversarial attention.
        adversarial_learning_rate: Adam step size on the attention logits.
        seed: Seed of the permutations, random keys and adversarial initialisation.
    """

    interventions: tuple[str, ...] = Field(default=(), validate_default=True)
    layers: tuple[int, ...] = (-1,)
    permutation_draws: int = Field(default=100, ge=1, le=10_000)
    erasure_draws: int = Field(default=10, ge=1, le=1_000)
    adversarial_epsilon: float = Field(default=0.01, gt=0.0, le=1.0)
    adversarial_steps: int = Field(default=100, ge=1, le=10_000)
    adversarial_learning_rate: float = Field(default=0.1, gt=0.0)
    seed: int = 0

    @field_validator("interventions")
    @classmethod
    def _known_interventions(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        from tasks.interventions.registry import INTERVENTIONS, default_interventions

        if not names:
            return default_interventions()
        if names == ("none",):
            return ()
        unknown = [name for name in names if name not in INTERVENTIONS]
        if unknown:
            raise ValueError(
                f"unknown intervention(s) {', '.join(unknown)}; known: {', '.join(INTERVENTIONS)}, or none"
            )
        if len(set(names)) != len(names):
            raise ValueError("an intervention is listed twice")
        return tuple(names)

    @field_serializer("interventions")
    def _none_stays_none(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """``()`` is written ``("none",)``: read back, an empty list would mean the default interventions."""
        return names or ("none",)

    @field_validator("layers")
    @classmethod
    def _some_layers(cls, layers: tuple[int, ...]) -> tuple[int, ...]:
        if not layers or len(set(layers)) != len(layers):
            raise ValueError("name at least one layer, each once (e.g. -1 for the last layer)")
        return layers


class VerdictOptions(_Frozen):
    """How per-example evidence becomes a verdict, and how examples are sliced (``tasks.verdict``).

    Verdicts are recomputed from the stored per-example numbers at the end of every run, so changing
    these settings never recomputes a method.

    Attributes:
        references: Reference methods that attention's agreement is measured against.
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

    references: tuple[str, ...] = ("leave_one_out", "integrated_gradients")
    agreement_min: float = Field(default=0.2, ge=-1.0, le=1.0)
    equivalence_margin: float = Field(default=0.02, ge=0.0, le=1.0)
    sensitivity_min: float = Field(default=0.05, ge=0.0, le=1.0)
    importance_min: float = Field(default=0.01, ge=0.0, le=1.0)
    consistency_min: float = Field(default=0.2, ge=-1.0, le=1.0)
    min_examples: int = Field(default=20, ge=2)
    confidence_bins: tuple[float, ...] = (0.6, 0.8, 0.95)
    length_bins: tuple[int, ...] = (10, 20, 40)

    @field_validator("references")
    @classmethod
    def _known_references(cls, references: tuple[str, ...]) -> tuple[str, ...]:
        from tasks.explain.registry import METHODS
        from tasks.records import MethodFamily

        known = [name for name, spec in METHODS.items() if spec.family == MethodFamily.REFERENCE]
        unknown = [name for name in references if name not in known]
        if not references or unknown:
            raise ValueError(f"verdict references must be reference methods ({', '.join(known)}); got {references}")
        return references

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


class SanityOptions(_Frozen):
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

    enabled: bool = True
    sample_size: int = Field(default=16, ge=2, le=10_000)
    seed: int = 0
    similarity_max: float = Field(default=0.5, ge=0.0, le=1.0)


class ExecutionSettings(_Frozen):
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

    batch_size: int = Field(default=32, ge=1, le=4096)
    token_budget: int = Field(default=8192, ge=64)
    gradient_token_budget: int = Field(default=2048, ge=64)
    concurrency: int = Field(default=1, ge=1, le=64)
    threads: int | None = Field(default=None, ge=1)
    batch_retries: int = Field(default=1, ge=0, le=10)
    batch_timeout: float | None = Field(default=None, gt=0)
    cache_batches: bool = True
    task_runner: Literal["threads", "dask"] = "threads"
    dask_address: str | None = None
    dask_workers: int = Field(default=2, ge=1, le=256)


class OutputSettings(_Frozen):
    """Where results go.

    Attributes:
        db: The DuckDB file that holds every run.
        out_dir: Folder for the HTML and PDF report.
        pdf: Also render the PDF (WeasyPrint).
    """

    db: Path = Path("audit-output/audit.duckdb")
    out_dir: Path = Path("audit-output")
    pdf: bool = True


class AuditConfig(_Frozen):
    """The whole configuration of one audit."""

    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    methods: MethodOptions = Field(default_factory=MethodOptions)
    interventions: InterventionOptions = Field(default_factory=InterventionOptions)
    verdict: VerdictOptions = Field(default_factory=VerdictOptions)
    gate: tuple[str, ...] = ()
    sanity: SanityOptions = Field(default_factory=SanityOptions)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)

    @field_validator("gate")
    @classmethod
    def _gate_checks(cls, checks: tuple[str, ...]) -> tuple[str, ...]:
        from tasks.verdict.gate import parse_check

        for check in checks:
            parse_check(check)
        return checks

    @model_validator(mode="after")
    def _top_k_fits(self) -> AuditConfig:
        if self.methods.agreement_top_k >= self.data.max_length:
            raise ValueError("agreement_top_k must be smaller than max_length")
        return self

    def identity(self) -> dict[str, Any]:
        """The parts of the configuration that decide the numbers (JSON-ready)."""
        return {
            "model": self.model.model_dump(mode="json"),
            "data": self.data.model_dump(mode="json"),
            "methods": self.methods.model_dump(mode="json"),
            "interventions": self.interventions.model_dump(mode="json"),
        }


def stable_hash(payload: Any, length: int = 16) -> str:
    """Hex SHA-256 of a JSON-serialisable payload with sorted keys (stable across processes)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


# --- the command line -------------------------------------------------------------------------


class Flag(BaseModel):
    """One ``attention-audit run`` option and the configuration field it sets.

    Attributes:
        flag: The option, e.g. ``--max-length``.
        field: Dotted path into ``AuditConfig``, e.g. ``data.max_length``.
        kind: How the value is parsed: ``str``, ``int``, ``float``, ``path``, ``list`` (comma-separated
            strings), ``floats`` / ``ints`` (comma-separated numbers), ``true`` / ``false`` (a switch that sets
            the field to that value), ``none`` (a switch that sets the field to None).
        help: One line for ``--help``.
        choices: Allowed values, if any.
    """

    model_config = ConfigDict(frozen=True)

    flag: str
    field: str
    kind: Literal["str", "int", "float", "path", "list", "floats", "ints", "true", "false", "none"]
    help: str
    choices: tuple[str, ...] | None = None


FLAGS: tuple[Flag, ...] = (
    Flag(
        flag="--model",
        field="model.name_or_path",
        kind="str",
        help="preset name, local folder (save_pretrained) or Hugging Face hub id [movie-snippets]",
    ),
    Flag(flag="--revision", field="model.revision", kind="str", help="hub revision: branch, tag or commit"),
    Flag(
        flag="--trust-remote-code",
        field="model.trust_remote_code",
        kind="true",
        help="run the model repository's own code (off by default)",
    ),
    Flag(
        flag="--allow-pickle",
        field="model.allow_pickle",
        kind="true",
        help="accept pickle-based .bin weights when there are no safetensors (off by default)",
    ),
    Flag(
        flag="--device",
        field="model.device",
        kind="str",
        help="cpu, cuda or auto [cpu]",
        choices=("cpu", "cuda", "auto"),
    ),
    Flag(
        flag="--precision",
        field="model.precision",
        kind="str",
        help="weights' type: float32, or float16 / bfloat16 on a GPU [float32]",
        choices=("float32", "float16", "bfloat16"),
    ),
    Flag(
        flag="--dataset",
        field="data.dataset",
        kind="str",
        help="built-in corpus (movie-snippets), local CSV/JSONL/Parquet file or folder, or hub id",
    ),
    Flag(flag="--split", field="data.split", kind="str", help="split to audit [test]"),
    Flag(flag="--text-column", field="data.text_column", kind="str", help="column with the text [text]"),
    Flag(
        flag="--text-pair-column",
        field="data.text_pair_column",
        kind="str",
        help="column with the second text of a pair (NLI, paraphrase); both texts are explained [none]",
    ),
    Flag(
        flag="--label-column",
        field="data.label_column",
        kind="str",
        help="column with the gold label [label]",
    ),
    Flag(flag="--no-labels", field="data.label_column", kind="none", help="the corpus has no gold labels"),
    Flag(
        flag="--id-column",
        field="data.id_column",
        kind="str",
        help="column with a unique example id [row number]",
    ),
    Flag(
        flag="--rationale-column",
        field="data.rationale_column",
        kind="str",
        help="column with human rationales (spans, word indices or words) for plausibility",
    ),
    Flag(flag="--limit", field="data.limit", kind="int", help="audit at most N examples (seeded random sample)"),
    Flag(flag="--sample-seed", field="data.sample_seed", kind="int", help="seed of the --limit sample [0]"),
    Flag(
        flag="--max-length",
        field="data.max_length",
        kind="int",
        help="truncate texts to this many tokens, specials included [128]",
    ),
    Flag(flag="--methods", field="methods.methods", kind="list", help="comma-separated method ids [all]"),
    Flag(flag="--ig-steps", field="methods.ig_steps", kind="int", help="integrated-gradients steps m [50]"),
    Flag(
        flag="--ig-rule",
        field="methods.ig_rule",
        kind="str",
        help="integration rule [gausslegendre]",
        choices=("gausslegendre", "riemann_right"),
    ),
    Flag(
        flag="--removal",
        field="methods.removal",
        kind="str",
        help="how tokens are removed [delete]",
        choices=("delete", "mask", "pad"),
    ),
    Flag(
        flag="--units",
        field="methods.units",
        kind="str",
        help="what metrics rank: tokens, or words scored by the sum of their sub-tokens [token]",
        choices=("token", "word"),
    ),
    Flag(
        flag="--k",
        field="methods.k_fractions",
        kind="floats",
        help="rationale sizes as fractions [0.01,0.05,0.1,0.2,0.5]",
    ),
    Flag(flag="--random-draws", field="methods.random_draws", kind="int", help="random-baseline rankings [3]"),
    Flag(flag="--top-k", field="methods.agreement_top_k", kind="int", help="k of the top-k overlap [5]"),
    Flag(flag="--seed", field="methods.seed", kind="int", help="seed of the random baseline [0]"),
    Flag(
        flag="--flow-max-tokens",
        field="methods.flow_max_tokens",
        kind="int",
        help="compute attention flow only for inputs of at most N tokens [96]",
    ),
    Flag(
        flag="--explanations",
        field="methods.explanations",
        kind="str",
        help="Parquet or JSONL file of explanations computed elsewhere, audited like attention",
    ),
    Flag(
        flag="--interventions",
        field="interventions.interventions",
        kind="list",
        help="comma-separated intervention ids, or none [all]",
    ),
    Flag(
        flag="--intervention-layers",
        field="interventions.layers",
        kind="ints",
        help="layers for permutation, erasure and adversarial attention; -1 is the last [-1]",
    ),
    Flag(
        flag="--permutation-draws",
        field="interventions.permutation_draws",
        kind="int",
        help="random permutations per example [100]",
    ),
    Flag(flag="--erasure-draws", field="interventions.erasure_draws", kind="int", help="random keys erased [10]"),
    Flag(
        flag="--adversarial-epsilon",
        field="interventions.adversarial_epsilon",
        kind="float",
        help="largest output change (TVD) allowed for adversarial attention [0.01]",
    ),
    Flag(
        flag="--adversarial-steps",
        field="interventions.adversarial_steps",
        kind="int",
        help="optimisation steps of adversarial attention [100]",
    ),
    Flag(
        flag="--verdict-references",
        field="verdict.references",
        kind="list",
        help="references attention's agreement is judged against [leave_one_out,integrated_gradients]",
    ),
    Flag(
        flag="--agreement-min",
        field="verdict.agreement_min",
        kind="float",
        help="Kendall τ with the references that supports faithfulness [0.2]",
    ),
    Flag(
        flag="--equivalence-margin",
        field="verdict.equivalence_margin",
        kind="float",
        help="AOPC gain over random below which an explanation is no better than random [0.02]",
    ),
    Flag(
        flag="--sensitivity-min",
        field="verdict.sensitivity_min",
        kind="float",
        help="median TVD under permuted attention below which the output ignores attention [0.05]",
    ),
    Flag(flag="--min-examples", field="verdict.min_examples", kind="int", help="smallest judged slice [20]"),
    Flag(
        flag="--confidence-bins",
        field="verdict.confidence_bins",
        kind="floats",
        help="inner edges of the confidence slices [0.6,0.8,0.95]",
    ),
    Flag(
        flag="--length-bins",
        field="verdict.length_bins",
        kind="ints",
        help="inner edges of the length slices [10,20,40]",
    ),
    Flag(
        flag="--require",
        field="gate",
        kind="list",
        help="gate checks KIND:METHOD (faithful, not-unfaithful, beats-random, agrees; METHOD, any or all); "
        "a failing check exits with status 4",
    ),
    Flag(flag="--no-sanity", field="sanity.enabled", kind="false", help="skip the model-randomisation sanity check"),
    Flag(
        flag="--sanity-sample",
        field="sanity.sample_size",
        kind="int",
        help="examples recomputed at each stage of the sanity check [16]",
    ),
    Flag(flag="--batch-size", field="execution.batch_size", kind="int", help="examples per task [32]"),
    Flag(
        flag="--token-budget",
        field="execution.token_budget",
        kind="int",
        help="most tokens per forward pass of perturbed inputs [8192]",
    ),
    Flag(
        flag="--gradient-token-budget",
        field="execution.gradient_token_budget",
        kind="int",
        help="most tokens per forward and backward pass [2048]",
    ),
    Flag(flag="--concurrency", field="execution.concurrency", kind="int", help="batches computed at once [1]"),
    Flag(flag="--threads", field="execution.threads", kind="int", help="torch threads [torch default]"),
    Flag(
        flag="--task-runner",
        field="execution.task_runner",
        kind="str",
        help="threads (this machine) or dask [threads]",
        choices=("threads", "dask"),
    ),
    Flag(flag="--dask-address", field="execution.dask_address", kind="str", help="an existing Dask scheduler"),
    Flag(flag="--dask-workers", field="execution.dask_workers", kind="int", help="workers of a local Dask cluster [2]"),
    Flag(flag="--no-cache", field="execution.cache_batches", kind="false", help="do not cache batch results"),
    Flag(
        flag="--batch-timeout",
        field="execution.batch_timeout",
        kind="float",
        help="seconds a batch may take [no limit]",
    ),
    Flag(
        flag="--batch-retries",
        field="execution.batch_retries",
        kind="int",
        help="tries again of a failing batch before its examples are recorded as failed [1]",
    ),
    Flag(flag="--db", field="output.db", kind="path", help="DuckDB file [audit-output/audit.duckdb]"),
    Flag(flag="--out", field="output.out_dir", kind="path", help="report folder [audit-output]"),
    Flag(flag="--no-pdf", field="output.pdf", kind="false", help="render only the HTML report"),
)


def _get(config: BaseModel, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def command_line(config: AuditConfig) -> str:
    """The ``attention-audit run`` command that reproduces ``config`` (options at their default omitted)."""
    import shlex

    default = AuditConfig()
    words = ["attention-audit", "run"]
    for flag in FLAGS:
        value, base = _get(config, flag.field), _get(default, flag.field)
        if value == base:
            continue
        if flag.kind in ("true", "false", "none"):
            switched = {"true": True, "false": False, "none": None}[flag.kind]
            if value == switched:
                words.append(flag.flag)
            continue
        if flag.kind in ("list", "floats", "ints"):
            text = ",".join(repr(v) if isinstance(v, float) else str(v) for v in value) or "none"  # repr: exact
        elif value is not None:
            text = str(value)
        else:
            continue
        words += [f"{flag.flag}={text}"] if text.startswith("-") else [flag.flag, text]  # "-x" is no option
    return " ".join(shlex.quote(word) for word in words)
