"""The registry of interventions on the attention: one entry per intervention, read by every stage.

Storage keys, report labels and the methodology appendix read ``INTERVENTIONS``; each intervention is
defined in its own module (``permutation``, ``uniform``, ``erasure``, ``adversarial``, ``head_masking``)
on the shared mechanism of ``tasks.interventions.mechanism``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tasks.config import InterventionOptions
from tasks.explain.passes import BatchContext
from tasks.interventions.adversarial import adversarial
from tasks.interventions.erasure import top_vs_random_erasure
from tasks.interventions.head_masking import head_masking
from tasks.interventions.permutation import permutation
from tasks.interventions.uniform import uniform
from tasks.records import InterventionValue

Intervention = Callable[[BatchContext, InterventionOptions], list[InterventionValue]]


@dataclass(frozen=True)
class InterventionSpec:
    """A registered intervention.

    Attributes:
        name: Stable snake_case id (DuckDB key, report label).
        compute: The intervention.
        title: Display name.
        definition: One line for the methodology appendix.
        reading: What a large or small effect says about attention as an explanation.
        citation: The paper.
        default: Run when the configuration names no interventions.
    """

    name: str
    compute: Intervention
    title: str
    definition: str
    reading: str
    citation: str
    default: bool = True


INTERVENTIONS: dict[str, InterventionSpec] = {
    spec.name: spec
    for spec in (
        InterventionSpec(
            name="permutation",
            compute=permutation,
            title="Permuted attention",
            definition="permute row c of every head of the layer over the content keys; n draws; median TVD, flip rate",
            reading="if scrambling which token gets which weight barely moves the output, the weights do not "
            "single out the tokens the decision rests on",
            citation="Jain & Wallace 2019",
        ),
        InterventionSpec(
            name="uniform",
            compute=uniform,
            title="Uniform attention",
            definition="replace a layer's attention (or every layer's) by uniform weights over the non-padding "
            "keys; TVD, flip, accuracy",
            reading="if uniform attention predicts as well, the learned attention distribution is not needed "
            "for the decision",
            citation="Wiegreffe & Pinter 2019",
        ),
        InterventionSpec(
            name="top_vs_random_erasure",
            compute=top_vs_random_erasure,
            title="Erasing the top key versus a random key",
            definition="zero the attention of row c on the most-attended content key (mean over heads) and "
            "renormalise, versus a random other content key; TVD and flips of both",
            reading="attention ranks importance faithfully when erasing its top key changes the output more "
            "than erasing a random key",
            citation="Serrano & Smith 2019",
        ),
        InterventionSpec(
            name="adversarial",
            compute=adversarial,
            title="Adversarial attention",
            definition="maximise JSD(α, α') of row c (every head) subject to TVD(p(α'), p(α)) ≤ ε with Adam; "
            "largest feasible JSD",
            reading="a large JSD with an unchanged output means very different attention explains the same "
            "prediction, so this attention is not the explanation",
            citation="Jain & Wallace 2019",
        ),
        InterventionSpec(
            name="head_masking",
            compute=head_masking,
            title="Head masking",
            definition="set one head's attention to zero (the head contributes nothing); TVD and flip per head",
            reading="heads whose removal changes the output matter to the decision; their attention is the "
            "one worth explaining",
            citation="Michel et al. 2019",
        ),
    )
}


def default_interventions() -> tuple[str, ...]:
    """The interventions a run performs when it names none."""
    return tuple(name for name, spec in INTERVENTIONS.items() if spec.default)


def resolve_interventions(names: tuple[str, ...] | None) -> tuple[str, ...]:
    """The interventions a run performs: ``names``, or the default ones when None (``()`` is none).

    Raises:
        ValueError: A name is not a registered intervention, or is listed twice.
    """
    if names is None:
        return default_interventions()
    unknown = [name for name in names if name not in INTERVENTIONS]
    if unknown:
        raise ValueError(f"unknown intervention(s) {', '.join(unknown)}; known: {', '.join(INTERVENTIONS)}, or none")
    if len(set(names)) != len(names):
        raise ValueError("an intervention is listed twice")
    return tuple(names)


def run_interventions(
    context: BatchContext, options: InterventionOptions, names: Sequence[str] | None = None
) -> list[InterventionValue]:
    """Run the named interventions (default: the configured ones) on one batch."""
    context.bundle.adapter.require("interventions on the attention")
    return [value for name in (names or options.names) for value in INTERVENTIONS[name].compute(context, options)]
