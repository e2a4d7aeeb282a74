"""How the numbers are judged: the verdict, the sanity check and the seed baseline."""

from __future__ import annotations

from pydantic import Field, field_validator

from tasks.config.base import (
    FrozenModel,
)


class VerdictOptions(FrozenModel, frozen=True):
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


class SanityOptions(FrozenModel, frozen=True):
    """The model-randomisation sanity check (``tasks.evaluate.sanity``; Adebayo et al. 2018).

    Not part of the run's identity: the check runs once per run and these settings; changing them reruns
    the check alone.

    Attributes:
        enabled: Run the check.
        tokens: The sample is sized by tokens, since the check's cost grows with them: examples are taken
            in seeded hash order until their tokens (special tokens included) reach this many. The default,
            512, takes about the 16 examples of the former default on single sentences (20 movie snippets)
            and bounds a corpus of long texts (2 articles of 256 tokens).
        sample_size: At most this many examples (None: only the token budget bounds the sample).
        seed: Seed of the sample and of the re-initialisation.
        similarity_max: Mean absolute-value Spearman ρ with the original at full randomisation above
            which an explanation fails (it barely changed), below which it passes.
    """

    enabled: bool = Field(
        default=True, description="skip the model-randomisation sanity check", json_schema_extra={"flag": "--no-sanity"}
    )
    tokens: int = Field(
        default=512,
        ge=1,
        description="tokens of the examples recomputed at each stage of the sanity check (seeded order)",
        json_schema_extra={"flag": "--sanity-tokens"},
    )
    sample_size: int | None = Field(
        default=None,
        ge=2,
        le=10_000,
        description="at most this many examples in the sanity check",
        json_schema_extra={"flag": "--sanity-sample", "unset": "as many as --sanity-tokens takes"},
    )
    seed: int = 0
    similarity_max: float = Field(default=0.5, ge=0.0, le=1.0)


class SeedOptions(FrozenModel, frozen=True):
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
