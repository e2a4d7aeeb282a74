"""The registry of explanation methods: one signature, one record, one line each.

Every method is a function ``(context: BatchContext, options: MethodOptions) -> list[TokenScores]``
that returns one record per example (per draw for stochastic methods). A ``MethodSpec`` says what
role the method plays (``attention`` under test, ``reference``, ``baseline``), whether its scores are
signed, which shared passes it needs, and how the report describes it. Adding a method means one
module and one entry here; metrics, storage and the report pick it up from the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tasks.config import MethodOptions
from tasks.explain import attention, baseline, decomposition, flow, gradients, perturbation
from tasks.explain.passes import BatchContext
from tasks.model.adapters.base import ModelAdapter
from tasks.records import MethodFamily, TokenScores

Method = Callable[[BatchContext, MethodOptions], list[TokenScores]]


@dataclass(frozen=True)
class MethodSpec:
    """A registered explanation method.

    Attributes:
        name: Stable snake_case id: the registry key, DuckDB key and report label.
        family: ``attention`` (under test), ``reference`` or ``baseline``.
        compute: The method.
        signed: Scores can be negative (evidence against ``ŷ``). Signed scores rank by value for
            faithfulness and by magnitude for agreement with attention (Jain & Wallace).
        needs_gradients: Uses the batch's backward pass of ``z_ŷ``.
        needs_attention_grads: Uses ``∂z_ŷ/∂A`` from that pass.
        title: Short display name.
        formula: One-line definition for the report's methodology.
        citation: The paper.
        default: Computed when the run names no methods.
        not_applicable_to: Why the method does not apply to a model family (``""`` where it does);
            None: it applies to every family. The run records it as not applicable with the reason.
    """

    name: str
    family: MethodFamily
    compute: Method
    signed: bool
    title: str
    formula: str
    citation: str
    needs_gradients: bool = False
    needs_attention_grads: bool = False
    default: bool = True
    not_applicable_to: Callable[[ModelAdapter], str] | None = None


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            name="attention_last",
            family=MethodFamily.ATTENTION,
            compute=attention.attention_last,
            signed=False,
            title="Last-layer attention",
            formula="mean_h A[L,h][c,:]",
            citation="Jain & Wallace 2019",
        ),
        MethodSpec(
            name="attention_mean",
            family=MethodFamily.ATTENTION,
            compute=attention.attention_mean,
            signed=False,
            title="Mean attention",
            formula="mean_{l,h} A[l,h][c,:]",
            citation="Jain & Wallace 2019",
        ),
        MethodSpec(
            name="rollout",
            family=MethodFamily.ATTENTION,
            compute=attention.rollout,
            signed=False,
            title="Attention rollout",
            formula="R = Â[L]···Â[1], Â[l] = 0.5·mean_h A[l,h] + 0.5·I (rows renormalised); score R[c,:]",
            citation="Abnar & Zuidema 2020",
        ),
        MethodSpec(
            name="flow",
            family=MethodFamily.ATTENTION,
            compute=flow.flow,
            signed=False,
            title="Attention flow",
            formula="max-flow from (0, j) to (L, c) in the layered graph with capacities Â[l][i,j]",
            citation="Abnar & Zuidema 2020",
        ),
        MethodSpec(
            name="attention_grad",
            family=MethodFamily.ATTENTION,
            compute=attention.attention_grad,
            signed=False,
            needs_gradients=True,
            needs_attention_grads=True,
            title="Gradient-weighted attention",
            formula="R = I; R ← R + mean_h (∇_A z_ŷ ⊙ A[l,h])⁺ · R for each layer; score R[c,:]",
            citation="Chefer et al. 2021",
        ),
        MethodSpec(
            name="attention_norm",
            family=MethodFamily.ATTENTION,
            compute=attention.attention_norm,
            signed=False,
            title="Norm-based attention",
            formula="‖Σ_h A[L,h][c,j] · f_h(x_j)‖₂, f_h(x) = (x W_V^h + b_V^h) W_O^h",
            citation="Kobayashi et al. 2020",
        ),
        MethodSpec(
            name="alti",
            family=MethodFamily.ATTENTION,
            compute=decomposition.alti,
            signed=False,
            title="ALTI",
            formula=(
                "c_ij = max(0, ‖y_i‖₁ − ‖y_i − T_i(x_j)‖₁), y_i = Σ_j T_i(x_j) + b̃_i = LN1 output; "
                "rows normalised; R = C[L]···C[1]; score R[c,:]"
            ),
            citation="Ferrando et al. 2022",
            default=False,
            not_applicable_to=decomposition.unsupported,
        ),
        MethodSpec(
            name="globenc",
            family=MethodFamily.ATTENTION,
            compute=decomposition.globenc,
            signed=False,
            title="GlobEnc",
            formula=(
                "‖γ₂ ⊙ (T_i(x_j) − μ) / σ₂,i‖₂ through LN1 and LN2 (residuals included, FFN left out); "
                "rows normalised; R = N[L]···N[1]; score R[c,:]"
            ),
            citation="Modarressi et al. 2022",
            default=False,
            not_applicable_to=decomposition.unsupported,
        ),
        MethodSpec(
            name="saliency",
            family=MethodFamily.REFERENCE,
            compute=gradients.saliency,
            signed=False,
            needs_gradients=True,
            title="Saliency",
            formula="‖∂z_ŷ/∂e_j‖₂",
            citation="Simonyan et al. 2014",
        ),
        MethodSpec(
            name="grad_x_input",
            family=MethodFamily.REFERENCE,
            compute=gradients.grad_x_input,
            signed=True,
            needs_gradients=True,
            title="Gradient × input",
            formula="Σ_d (∂z_ŷ/∂e_j)_d · e_{j,d}",
            citation="Shrikumar et al. 2017",
        ),
        MethodSpec(
            name="integrated_gradients",
            family=MethodFamily.REFERENCE,
            compute=gradients.integrated_gradients,
            signed=True,
            needs_gradients=True,
            title="Integrated gradients",
            formula="Σ_d (e_j − e'_j)_d · ∫₀¹ ∂z_ŷ(e' + α(e − e'))/∂e_{j,d} dα, e' = [PAD] at content tokens",
            citation="Sundararajan et al. 2017",
        ),
        MethodSpec(
            name="leave_one_out",
            family=MethodFamily.REFERENCE,
            compute=perturbation.leave_one_out,
            signed=True,
            title="Leave-one-out",
            formula="p_ŷ(x) − p_ŷ(x ∖ j)",
            citation="Jain & Wallace 2019",
        ),
        MethodSpec(
            name="random",
            family=MethodFamily.BASELINE,
            compute=baseline.random_ranking,
            signed=False,
            title="Random ranking",
            formula="independent Uniform(0,1) per content token, seeded by (seed, draw, example id)",
            citation="DeYoung et al. 2020",
        ),
    )
}


def default_methods() -> tuple[str, ...]:
    """The methods a run computes when it names none."""
    return tuple(name for name, spec in METHODS.items() if spec.default)


def resolve_methods(names: tuple[str, ...]) -> tuple[str, ...]:
    """The methods a run computes: ``names``, or the default methods when none are named.

    Raises:
        ValueError: A name is not a registered method, or is listed twice.
    """
    if not names:
        return default_methods()
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; known methods: {', '.join(METHODS)}")
    if len(set(names)) != len(names):
        raise ValueError("a method is listed twice")
    return tuple(names)


def check_references(references: tuple[str, ...]) -> tuple[str, ...]:
    """``references`` unchanged when they are reference methods (at least one), the verdict's yardsticks.

    Raises:
        ValueError: None are named, or one is not a reference method.
    """
    known = methods_of(MethodFamily.REFERENCE)
    unknown = [name for name in references if name not in known]
    if not references or unknown:
        raise ValueError(f"verdict references must be reference methods ({', '.join(known)}); got {references}")
    return references


def methods_of(family: MethodFamily, names: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Registered method ids of one family, optionally restricted to ``names`` (in registry order)."""
    return tuple(name for name, spec in METHODS.items() if spec.family == family and (names is None or name in names))


def spec_of(name: str) -> MethodSpec:
    """The registered method, or an imported explanation's spec (family ``external``, signed scores)."""
    if name in METHODS:
        return METHODS[name]
    return MethodSpec(
        name=name,
        family=MethodFamily.EXTERNAL,
        compute=_imported,
        signed=True,
        title=name,
        formula="per-token scores imported from a file",
        citation="external",
        default=False,
    )


def _imported(context: BatchContext, options: MethodOptions) -> list[TokenScores]:
    """Imported explanations arrive with the examples (``EncodedExample.imported``), not from a computation."""
    raise TypeError("imported explanations are read from the examples, not computed")
