"""The naive pass-count bound counts integrated gradients' steps as the step schedule ran them."""

from __future__ import annotations

from tasks.config import AuditConfig
from tasks.evaluate.costs import naive_passes
from tasks.verdict.resolve import resolve

NO_INTERVENTIONS = {"interventions": ["none"]}


def test_integrated_gradients_count_every_size_of_the_schedule_up_to_the_one_kept():
    config = resolve(AuditConfig.model_validate({"interventions": NO_INTERVENTIONS}))
    assert config.methods.ig_steps == (16, 32, 64)
    _, first = naive_passes(config, content_tokens=5, layers=6, heads=12, ig_steps=16)
    _, second = naive_passes(config, content_tokens=5, layers=6, heads=12, ig_steps=32)
    _, last = naive_passes(config, content_tokens=5, layers=6, heads=12, ig_steps=64)
    _, unknown = naive_passes(config, content_tokens=5, layers=6, heads=12)
    assert first == unknown == 1 + 16  # the model pass, then the first size
    assert second == 1 + 16 + 32  # Gauss-Legendre nodes are not nested: each size is run afresh
    assert last == 1 + 16 + 32 + 64


def test_a_fixed_m_counts_its_m_steps():
    config = resolve(AuditConfig.model_validate({"methods": {"ig_steps": 50}, "interventions": NO_INTERVENTIONS}))
    assert naive_passes(config, content_tokens=5, layers=6, heads=12, ig_steps=50)[1] == 1 + 50
