"""The record types every stage shares: encoded examples, token scores and metric values.

Data flows one way: ``EncodedExample`` (what the model reads) -> ``TokenScores`` (what a method says
about each token) -> ``MetricValue`` (what a metric says about one or two ``TokenScores``) ->
``BatchResult`` (what one batch hands to storage). All are frozen; arrays are never mutated after
construction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

Progress = Callable[[int, int, str], None]
"""Told after each step of a long computation: ``(steps done, steps in all, what the step did)``."""


def no_progress(done: int, total: int, what: str) -> None:
    """A ``Progress`` that reports nothing."""


class MethodFamily(StrEnum):
    """What role a method plays in the audit."""

    ATTENTION = "attention"
    """An explanation under test, read from the attention weights."""
    REFERENCE = "reference"
    """A gradient- or perturbation-based attribution that attention is checked against."""
    BASELINE = "baseline"
    """A control that any real explanation must beat (the random ranking)."""
    EXTERNAL = "external"
    """An explanation computed elsewhere (SHAP, LIME, a vendor's explainer) and imported: judged like
    attention, against the same references, with the same metrics and verdict."""


UNDER_TEST = frozenset({MethodFamily.ATTENTION, MethodFamily.EXTERNAL})
"""The families whose faithfulness the audit judges."""


@dataclass(frozen=True, eq=False)
class EncodedExample:
    """One corpus example as the model reads it, with enough to map scores back to the text.

    Attributes:
        example_id: Stable id from the corpus (a string, whatever the source type was).
        text: The original text (before truncation).
        label: Gold label as a model class index, or None when the corpus has no labels.
        input_ids: Token ids, special tokens included, shape ``[T]``.
        token_type_ids: Segment ids, shape ``[T]`` (zeros for single-text inputs).
        tokens: The tokenizer's token strings, length ``T``.
        offsets: Character span of each token in ``text``, shape ``[T, 2]``; ``(0, 0)`` for specials.
        special_mask: True at special tokens (``[CLS]``, ``[SEP]``, ...), shape ``[T]``.
        n_original_tokens: Token count before truncation (specials included).
        metadata: Extra corpus columns kept for slicing (e.g. the human rating's spread).
        rationale: Tokens inside the human rationale, shape ``[T]``; None when the example has none.
        imported: Explanations computed elsewhere, by name, one score per token (``tasks.explain.imported``).
        text_pair: The second text of a text pair (NLI, paraphrase), or None for single texts.
        segments: Which text each token belongs to, 0 (``text``) or 1 (``text_pair``), shape ``[T]``;
            ``offsets`` are character spans in that text. None for single texts (all 0).
    """

    example_id: str
    text: str
    label: int | None
    input_ids: np.ndarray
    token_type_ids: np.ndarray
    tokens: tuple[str, ...]
    offsets: np.ndarray
    special_mask: np.ndarray
    n_original_tokens: int
    metadata: Mapping[str, object] = field(default_factory=dict)
    rationale: np.ndarray | None = None
    imported: Mapping[str, np.ndarray] = field(default_factory=dict)
    text_pair: str | None = None
    segments: np.ndarray | None = None

    @property
    def length(self) -> int:
        """Number of tokens ``T`` fed to the model."""
        return int(self.input_ids.shape[0])

    @property
    def truncated(self) -> bool:
        """Whether the text lost tokens to ``max_length``."""
        return self.n_original_tokens > self.length

    @property
    def content_mask(self) -> np.ndarray:
        """True at content tokens: every token but the special ones (there is no padding here)."""
        return ~self.special_mask


@dataclass(frozen=True, eq=False)
class Prediction:
    """The model's output on the unperturbed example.

    Attributes:
        example_id: The example's id.
        probabilities: Softmax over classes, shape ``[C]``.
        logits: Raw logits, shape ``[C]``.
        predicted: ``argmax`` class index ``ŷ``; every method explains this class.
    """

    example_id: str
    probabilities: np.ndarray
    logits: np.ndarray

    @property
    def predicted(self) -> int:
        """The predicted class ``ŷ = argmax p(x)``."""
        return int(np.argmax(self.probabilities))

    @property
    def confidence(self) -> float:
        """``p_ŷ(x)``, the probability of the predicted class."""
        return float(np.max(self.probabilities))


@dataclass(frozen=True, eq=False)
class TokenScores:
    """What one explanation method says about every token of one example.

    Every method returns these, one per example, so that metrics, storage and the report treat all
    methods alike.

    Attributes:
        example_id: The example's id.
        method: The method's stable snake_case id (the registry key, DuckDB key and report label).
        scores: One score per token, special tokens included, shape ``[T]``. Higher means more
            important for the predicted class; signed methods may be negative (evidence against).
        content_mask: True at the tokens that rankings and metrics use, shape ``[T]``.
        draw: Index of the random draw for stochastic methods (the random baseline); 0 otherwise.
        diagnostics: Per-example numbers about the method itself, e.g. integrated gradients'
            completeness error. Keys are stable snake_case names.
    """

    example_id: str
    method: str
    scores: np.ndarray
    content_mask: np.ndarray
    draw: int = 0
    diagnostics: Mapping[str, float] = field(default_factory=dict)

    @property
    def content_scores(self) -> np.ndarray:
        """Scores of the content tokens, in position order."""
        return self.scores[self.content_mask]


@dataclass(frozen=True)
class MetricValue:
    """One number a metric gives for one example.

    Attributes:
        example_id: The example's id.
        method: The method whose scores were measured.
        metric: The metric's stable id (see ``tasks.evaluate.faithfulness.METRICS``).
        value: The number; NaN where the metric is undefined (documented per metric).
        draw: The method's draw (random baseline); 0 otherwise.
        reference: For pairwise metrics (agreement), the method compared against; else None.
        k: For metrics at a rationale size, the fraction of content tokens; else None.
    """

    example_id: str
    method: str
    metric: str
    value: float
    draw: int = 0
    reference: str | None = None
    k: float | None = None


@dataclass(frozen=True)
class InterventionValue:
    """One number an intervention on the attention gives for one example.

    Attributes:
        example_id: The example's id.
        intervention: The intervention's stable id (see ``tasks.interventions.registry.INTERVENTIONS``).
        statistic: What was measured, e.g. ``median_tvd``, ``flip_rate``, ``jsd``.
        value: The number (NaN where undefined, e.g. erasure of an input with one content token).
        layer: The layer intervened on (0 = first); None when every layer was changed at once.
        head: The head intervened on; None when every head of the layer was changed.
    """

    example_id: str
    intervention: str
    statistic: str
    value: float
    layer: int | None = None
    head: int | None = None


@dataclass(frozen=True)
class HeadAgreement:
    """How one attention head's classification row ranks tokens against one reference, for one example.

    Attributes:
        example_id: The example's id.
        layer: The head's layer (0 = first).
        head: The head's index within the layer.
        reference: The reference method compared with.
        statistic: ``kendall_tau``.
        value: The number (NaN when undefined).
    """

    example_id: str
    layer: int
    head: int
    reference: str
    statistic: str
    value: float


@dataclass(frozen=True, eq=False)
class BatchResult:
    """Everything one batch of examples produced: the unit that storage writes atomically."""

    examples: tuple[EncodedExample, ...]
    predictions: tuple[Prediction, ...]
    scores: tuple[TokenScores, ...]
    metrics: tuple[MetricValue, ...]
    costs: tuple[StageCost, ...] = ()
    interventions: tuple[InterventionValue, ...] = ()
    head_agreement: tuple[HeadAgreement, ...] = ()


@dataclass(frozen=True)
class StageCost:
    """What one stage of one batch cost: wall time and model work.

    Attributes:
        stage: ``model_pass``, a method id, or a metric group (``faithfulness``, ``agreement``).
        examples: Examples in the batch.
        seconds: Wall-clock seconds.
        forward_rows: Sequences run forward.
        forward_tokens: Tokens run forward (no padding counted).
        backward_rows: Sequences run backward.
        backward_tokens: Tokens run backward.
    """

    stage: str
    examples: int
    seconds: float
    forward_rows: int
    forward_tokens: int
    backward_rows: int
    backward_tokens: int


@dataclass(frozen=True)
class NotApplicable:
    """Work the configuration asks for that this model cannot support; the rest of the run goes on.

    Attributes:
        kind: ``method`` or ``intervention``.
        name: The method's or intervention's registry name.
        reason: Why, in words a reader of the report understands.
    """

    kind: str
    name: str
    reason: str


@dataclass(frozen=True)
class SeedDistance:
    """How far another fine-tuning (seed) of the model lies from the audited one on one example.

    Attributes:
        example_id: The example's id.
        seed_model: The other fine-tuning's folder.
        layer: The layer whose classification row is compared (the adversarial intervention's layer).
        statistic: ``attention_jsd`` or ``attention_tvd`` (between the classification rows, mean over
            heads), ``output_tvd`` (between the output distributions) or ``prediction_kept`` (1 when
            both predict the same class).
        value: The number.
    """

    example_id: str
    seed_model: str
    layer: int
    statistic: str
    value: float


@dataclass(frozen=True)
class SeedAgreement:
    """Kendall τ between one method's explanation on the audited model and on another seed, for one example.

    Attributes:
        example_id: The example's id.
        seed_model: The other fine-tuning's folder.
        method: The method's registry name.
        kendall_tau: τ-b over the content units (NaN where undefined).
    """

    example_id: str
    seed_model: str
    method: str
    kendall_tau: float
