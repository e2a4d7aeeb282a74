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
from enum import StrEnum

from tasks.config import MethodOptions
from tasks.explain import attention, baseline, decomposition, decompx, flow, gradients, perturbation, value_zeroing
from tasks.explain.passes import BatchContext
from tasks.model.adapters.base import ModelAdapter
from tasks.records import MethodFamily, TokenScores

Method = Callable[[BatchContext, MethodOptions], list[TokenScores]]


class AttentionView(StrEnum):
    """What an explanation under test reads of the attention: it decides which evidence bears on it.

    The interventions on the attention (erasing the top key, permuting the weights) test whether the
    model's output depends on the attention *weights* (Wiegreffe & Pinter 2019). That bears on an
    explanation that is the weights (Jain & Wallace 2019), but faithfulness is a property of the
    explanation, not of the mechanism it is read from (Jacovi & Goldberg 2020): a decomposition that
    scales the weights by the norms of what they mix can be faithful while the weights alone are not
    (Kobayashi et al. 2020; Modarressi et al. 2022). docs/methodology.md, "Verdict rules".
    """

    WEIGHTS = "weights"
    """The scores are the attention probabilities, combined or reweighted, and nothing else of the
    computation: an intervention showing that the output ignores the weights says that they explain
    nothing, so the interventions take part in the verdict."""
    DECOMPOSITION = "decomposition"
    """The scores decompose what attention mixes (value vectors, and in later methods residuals, layer
    norms, feed-forward layers, the head): the interventions on the weights are shown beside the verdict
    but do not decide it."""


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
        view: For an explanation under test, whether it reads the attention weights alone or decomposes
            the computation (``AttentionView``); None for references, the baseline and imported
            explanations, which the interventions keep deciding as before (what an imported explanation
            reads is unknown).
        view_reason: Why ``view`` is what it is, in one clause (the report and ``attention-audit methods``
            print it).
        unsupported: Why the method is not defined for a model family (its adapter), or ``""`` where it is;
            the run records a non-empty reason as not applicable and computes the rest.
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
    view: AttentionView | None = None
    view_reason: str = ""
    unsupported: Callable[[ModelAdapter], str] | None = None


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
            view=AttentionView.WEIGHTS,
            view_reason="its scores are the last layer's attention weights, averaged over heads",
        ),
        MethodSpec(
            name="attention_mean",
            family=MethodFamily.ATTENTION,
            compute=attention.attention_mean,
            signed=False,
            title="Mean attention",
            formula="mean_{l,h} A[l,h][c,:]",
            citation="Jain & Wallace 2019",
            view=AttentionView.WEIGHTS,
            view_reason="its scores are the attention weights averaged over layers and heads",
        ),
        MethodSpec(
            name="rollout",
            family=MethodFamily.ATTENTION,
            compute=attention.rollout,
            signed=False,
            title="Attention rollout",
            formula="R = Â[L]···Â[1], Â[l] = 0.5·mean_h A[l,h] + 0.5·I (rows renormalised); score R[c,:]",
            citation="Abnar & Zuidema 2020",
            view=AttentionView.WEIGHTS,
            view_reason=(
                "it multiplies the attention weights across layers, with the residual as a fixed 0.5·I, "
                "and reads nothing else"
            ),
        ),
        MethodSpec(
            name="flow",
            family=MethodFamily.ATTENTION,
            compute=flow.flow,
            signed=False,
            title="Attention flow",
            formula="max-flow from (0, j) to (L, c) in the layered graph with capacities Â[l][i,j]",
            citation="Abnar & Zuidema 2020",
            view=AttentionView.WEIGHTS,
            view_reason="it is a max-flow over capacities that are the attention weights (with the fixed residual)",
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
            view=AttentionView.WEIGHTS,
            view_reason=(
                "it credits tokens only through the attention weights, each scaled by the gradient of the "
                "logit with respect to it; where the weights do not move the output it has nothing else to read"
            ),
        ),
        MethodSpec(
            name="attention_norm",
            family=MethodFamily.ATTENTION,
            compute=attention.attention_norm,
            signed=False,
            title="Norm-based attention",
            formula="‖Σ_h A[L,h][c,j] · f_h(x_j)‖₂, f_h(x) = (x W_V^h + b_V^h) W_O^h",
            citation="Kobayashi et al. 2020",
            view=AttentionView.DECOMPOSITION,
            view_reason=(
                "it weighs each attention weight by the norm of the transformed value vector it mixes "
                "(Kobayashi et al. 2020), so a large weight on a small vector scores low"
            ),
        ),
        MethodSpec(
            name="decompx",
            family=MethodFamily.ATTENTION,
            compute=decompx.decompx,
            signed=True,
            title="DecompX",
            formula="z_ŷ^(k): token k's part of the logit, x_i = Σ_k x_i^(k) carried through attention, norms, "
            "feed-forward (activation linearised) and head; biases shared by |x^(k)·b|",
            citation="Modarressi et al. 2023",
            unsupported=decompx.unsupported,
            view=AttentionView.DECOMPOSITION,
            view_reason=(
                "it carries each token's part of every hidden state through attention, norms, feed-forward and "
                "head (Modarressi et al. 2023), so its scores add up to the logit"
            ),
        ),
        MethodSpec(
            name="value_zeroing",
            family=MethodFamily.ATTENTION,
            compute=value_zeroing.value_zeroing,
            signed=False,
            title="Value Zeroing",
            formula="R = Ĉ[L]···Ĉ[1], C[l][i,j] = 1 − cos(h̃[l]_i(v_j := 0), h[l]_i) (rows normalised); score R[c,:]",
            citation="Mohebbi et al. 2023",
            unsupported=value_zeroing.unsupported,
            view=AttentionView.DECOMPOSITION,
            view_reason=(
                "it measures how much each token's value vector changes every layer's output, residuals, norms "
                "and feed-forward included (Mohebbi et al. 2023), not how much weight it receives"
            ),
        ),
        MethodSpec(
            name="alti",
            family=MethodFamily.ATTENTION,
            compute=decomposition.alti,
            signed=False,
            title="ALTI",
            formula=(
                "c_ij = max(0, ‖y_i‖₁ − ‖y_i − T_i(x_j)‖₁), y_i = Σ_j T_i(x_j) + b̃_i = LN1 output (post-LN) "
                "or x_i + Attn(LN(x))_i (pre-norm); rows normalised; R = C[L]···C[1]; score R[c,:]"
            ),
            citation="Ferrando et al. 2022; decoders: Ferrando et al. 2023",
            unsupported=decomposition.unsupported_alti,
            view=AttentionView.DECOMPOSITION,
            view_reason=(
                "it splits each layer's attention-block output by source token, values, residual and layer norm "
                "included (Ferrando et al. 2022, 2023), not only the weights"
            ),
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
            unsupported=decomposition.unsupported_globenc,
            view=AttentionView.DECOMPOSITION,
            view_reason=(
                "it carries each source token's part of the attention-block output through both layer norms, "
                "residuals included (Modarressi et al. 2022)"
            ),
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


FAMILY_HEADINGS = {
    MethodFamily.ATTENTION: "attention and attention-derived (under test)",
    MethodFamily.REFERENCE: "references (what the explanations under test are checked against)",
    MethodFamily.BASELINE: "baseline (what every explanation must beat)",
}
"""How the report and ``attention-audit methods`` name each family of registered methods."""


def describe_methods() -> list[str]:
    """``attention-audit methods``: the registered methods grouped by family, each with its paper.

    Per method one line ``id  title (paper)`` with ``[default]`` when a run without ``--methods`` computes
    it, then its formula; an explanation under test adds what it reads (``AttentionView``) and why.
    """
    width = max(len(name) for name in METHODS) + 2
    lines: list[str] = []
    for family, heading in FAMILY_HEADINGS.items():
        specs = [spec for spec in METHODS.values() if spec.family == family]
        if not specs:
            continue
        lines.append(f"{heading}:" if not lines else f"\n{heading}:")
        for spec in specs:
            flag = "  [default]" if spec.default else ""
            lines.append(f"  {spec.name:{width}}{spec.title} ({spec.citation}){flag}")
            lines.append(f"  {'':{width}}{spec.formula}")
            if spec.view is not None:
                lines.append(f"  {'':{width}}reads {_VIEW_WORDS[spec.view]}: {spec.view_reason}")
    return lines


_VIEW_WORDS = {
    AttentionView.WEIGHTS: "the attention weights alone",
    AttentionView.DECOMPOSITION: "a decomposition of what attention mixes",
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
