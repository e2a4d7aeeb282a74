"""What is computed: the explanation methods (``MethodOptions``) and the interventions (``InterventionOptions``)."""

from __future__ import annotations

from pydantic import Field, field_serializer, field_validator, model_validator

from tasks.config.base import (
    DEFAULT_K_FRACTIONS,
    PATTERSON_SIZES,
    FrozenModel,
    IntegrationRule,
    RemovalOperator,
    Units,
)


class MethodOptions(FrozenModel, frozen=True):
    """Which explanations to compute and how (definitions in docs/methodology.md).

    Attributes:
        methods: Method ids to compute, from ``tasks.explain.registry.METHODS``; empty means the default
            methods, filled in by ``tasks.verdict.resolve.resolve``.
        ig_steps: Integration steps of integrated gradients, as a schedule ``m_1 < m_2 < ...``: every example
            is integrated with ``m_1`` steps, and only those whose completeness check fails go on to the next
            size (``tasks.explain.gradients.integrated_gradients``). One size is a fixed ``m``. A bare
            integer (a configuration stored before schedules) reads as that one size. Default 10, 21, 43, 87.
        ig_rule: ``patterson`` (default): the nested Gauss–Kronrod–Patterson rules of QUADPACK, whose sizes
            are 10, 21, 43 and 87 and each reuse the smaller ones' nodes; ``gausslegendre`` nodes and weights
            (as Captum; any ``m``) or the right Riemann sum (``tasks.explain.quadrature``).
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
        units: What leave-one-out removes and every metric ranks: ``token`` (default), ``word`` (a
            whitespace-separated word) or ``sentence``, each scored by the sum of its sub-token scores
            (``tasks.data.units``). Token scores are stored either way.
        seed: Seed of everything random in the methods (the random baseline) and of the sample the second
            removal operator recomputes.
        removal_check: The second removal operator the faithfulness evidence is recomputed with (Hooker et
            al. 2019: removed inputs leave the training distribution, so the numbers may depend on how
            tokens are removed); None means ``mask``, or ``delete`` when ``removal`` is ``mask`` or ``pad``.
            ``mask`` falls back to ``pad`` for a tokenizer without a mask token.
        removal_check_sample: Examples the second operator recomputes, in seeded hash order (all when the
            run has fewer); 0 turns the check off.
        soft_faithfulness: Compute soft comprehensiveness and sufficiency (Zhao & Aletras 2023), two model
            passes per explanation and example. No verdict reads them; the report shows them as further
            evidence and says when a run left them out.
    """

    methods: tuple[str, ...] = Field(
        default=(), description="comma-separated method ids", json_schema_extra={"unset": "all"}
    )
    ig_steps: tuple[int, ...] = Field(
        default=(10, 21, 43, 87),
        description="integrated-gradients steps m, or increasing sizes tried in turn on the examples whose "
        "completeness fails",
    )
    ig_rule: IntegrationRule = Field(
        default="patterson",
        description="integration rule: nested patterson (sizes 10, 21, 43, 87), gausslegendre or riemann_right",
    )
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
        default="token",
        description="what leave-one-out removes and metrics rank: tokens, or words or sentences scored by the sum "
        "of their tokens",
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
    soft_faithfulness: bool = Field(
        default=True,
        description="leave out soft comprehensiveness and sufficiency (two model passes per explanation and example)",
        json_schema_extra={"flag": "--no-soft-faithfulness"},
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

    @model_validator(mode="after")
    def _steps_of_the_rule(self) -> MethodOptions:
        other = [m for m in self.ig_steps if m not in PATTERSON_SIZES]
        if self.ig_rule == "patterson" and other:
            sizes = ",".join(map(str, PATTERSON_SIZES))
            raise ValueError(
                f"the patterson integration rule has {sizes} nodes, not {','.join(map(str, other))}: choose "
                f"--ig-steps among {sizes}, or any m with --ig-rule gausslegendre (e.g. --ig-steps 50 "
                "--ig-rule gausslegendre)"
            )
        return self

    @field_validator("ig_steps", mode="before")
    @classmethod
    def _one_size_is_a_schedule(cls, steps: object) -> object:
        """A bare ``m`` (``--ig-steps 50``, or a configuration stored before schedules) is the schedule ``(m,)``."""
        return (steps,) if isinstance(steps, int) else steps

    @field_validator("ig_steps")
    @classmethod
    def _increasing_steps(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps or any(not 1 <= m <= 10_000 for m in steps):
            raise ValueError("integrated-gradients steps must be between 1 and 10000, e.g. 10,21,43,87, or 50")
        if any(later <= earlier for earlier, later in zip(steps, steps[1:], strict=False)):
            raise ValueError(
                f"integrated-gradients step sizes are tried in turn, so they must increase: got "
                f"{','.join(map(str, steps))}; write them in increasing order, e.g. 10,21,43,87"
            )
        return steps

    @field_serializer("ig_steps")
    def _one_size_stays_an_integer(self, steps: tuple[int, ...]) -> int | tuple[int, ...]:
        """A fixed ``m`` is written as the integer, as before schedules, so such a run keeps its identity."""
        return steps[0] if len(steps) == 1 else steps

    @field_validator("k_fractions")
    @classmethod
    def _valid_fractions(cls, fractions: tuple[float, ...]) -> tuple[float, ...]:
        if not fractions or any(not 0.0 < k <= 1.0 for k in fractions):
            raise ValueError("rationale fractions must be in (0, 1], e.g. 0.01,0.05,0.1,0.2,0.5")
        return tuple(sorted(set(fractions)))


class InterventionOptions(FrozenModel, frozen=True):
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
