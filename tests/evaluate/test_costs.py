"""The naive pass count: what each method and intervention would cost done naively, per example."""

from __future__ import annotations

from tasks.config import AuditConfig
from tasks.evaluate.costs import naive_passes
from tasks.verdict.resolve import resolve

NO_INTERVENTIONS = {"interventions": ["none"]}


def test_the_nested_default_counts_only_the_size_kept():
    config = resolve(AuditConfig.model_validate({"interventions": NO_INTERVENTIONS}))
    assert (config.methods.ig_steps, config.methods.ig_rule) == ((10, 21, 43, 87), "patterson")
    _, first = naive_passes(config, tokens=7, content_tokens=5, layers=6, heads=12, ig_steps=10)
    _, second = naive_passes(config, tokens=7, content_tokens=5, layers=6, heads=12, ig_steps=21)
    _, last = naive_passes(config, tokens=7, content_tokens=5, layers=6, heads=12, ig_steps=87)
    _, unknown = naive_passes(config, tokens=7, content_tokens=5, layers=6, heads=12)
    assert first == unknown == 1 + 10  # the model pass, then the first size
    assert second == 1 + 21  # the 21-point rule reuses the 10 Gauss nodes and adds 11
    assert last == 1 + 87


def test_a_gauss_legendre_schedule_counts_every_size_up_to_the_one_kept():
    methods = {"ig_steps": [16, 32, 64], "ig_rule": "gausslegendre"}
    config = resolve(AuditConfig.model_validate({"methods": methods, "interventions": NO_INTERVENTIONS}))
    _, second = naive_passes(config, tokens=7, content_tokens=5, layers=6, heads=12, ig_steps=32)
    _, last = naive_passes(config, tokens=7, content_tokens=5, layers=6, heads=12, ig_steps=64)
    assert second == 1 + 16 + 32  # Gauss-Legendre nodes are not nested: each size is run afresh
    assert last == 1 + 16 + 32 + 64


def test_a_fixed_m_counts_its_m_steps():
    methods = {"ig_steps": 50, "ig_rule": "gausslegendre"}
    config = resolve(AuditConfig.model_validate({"methods": methods, "interventions": NO_INTERVENTIONS}))
    assert naive_passes(config, tokens=7, content_tokens=5, layers=6, heads=12, ig_steps=50)[1] == 1 + 50


LAYERS, HEADS = 6, 12


def config_of(*methods: str) -> AuditConfig:
    """A resolved configuration computing ``methods`` at two rationale sizes, with no intervention."""
    return resolve(
        AuditConfig.model_validate(
            {
                "methods": {"methods": list(methods), "k_fractions": [0.1, 0.5]},
                "interventions": {"interventions": ["none"]},
                "verdict": {"references": ["leave_one_out"]},
            }
        )
    )


def test_value_zeroing_counts_one_pass_per_layer_and_token_special_tokens_included():
    # 7 tokens, 5 of them content: L·T = 6·7 = 42 zeroing passes; leave-one-out 5; two records x 2 sizes x 2 metrics
    forward, backward = naive_passes(config_of("value_zeroing", "leave_one_out"), 7, 5, LAYERS, HEADS)
    assert (forward, backward) == (42 + 5 + 2 * 2 * 2, 1)


def test_alti_globenc_and_decompx_read_the_model_pass_and_add_only_their_removal_metrics():
    alone = naive_passes(config_of("leave_one_out"), 7, 5, LAYERS, HEADS)
    with_them = naive_passes(config_of("alti", "globenc", "decompx", "leave_one_out"), 7, 5, LAYERS, HEADS)
    assert alone == (5 + 1 * 2 * 2, 1)
    assert with_them == (alone[0] + 3 * 2 * 2, 1)  # comprehensiveness and sufficiency at two sizes each


def test_the_default_audit_counts_all_four_attention_derived_explanations():
    default = resolve(AuditConfig())
    assert {"alti", "globenc", "value_zeroing", "decompx"} <= set(default.methods.methods)
    without = resolve(
        AuditConfig.model_validate(
            {"methods": {"methods": [m for m in default.methods.methods if m != "value_zeroing"]}}
        )
    )
    records = len(default.methods.k_fractions) * 2
    forward, _ = naive_passes(default, 30, 28, LAYERS, HEADS)
    forward_without, _ = naive_passes(without, 30, 28, LAYERS, HEADS)
    assert forward - forward_without == LAYERS * 30 + records
